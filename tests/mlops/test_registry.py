"""The model registry: registration, the promotion gate, champion actions, failure handling,
against the default sqlite store and (slow) a real ``mlflow server``.

The inputs are built once per session (``build_project``, also used by test_serving.py and
test_cli.py): the stages download .. evaluate on the tiny embedded config (~20 s).
The gate is checked against metrics computed independently here (torch + scikit-learn).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdl.mlops import gate, registry, tracking
from tests.helpers.registry_project import (
    Project,
    lock_held_by_another_process,
    mlflow_server,
    register,
    stop_server,
    variant_model,
)
from tests.helpers.replicas import free_port
from tests.helpers.stages import D


def test_a_failing_alias_leaves_no_half_registered_version(
    project: Project, logged: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "sdl-alias-failure"
    first = registry.register_logged_model(logged["trained"], name, project.run_id)
    client_class = type(tracking.configured_mlflow().MlflowClient())
    real = client_class.set_registered_model_alias

    def failing(self: Any, model: str, alias: str, version: str) -> None:
        if alias == "challenger" and version != str(first):
            raise RuntimeError("store went away")
        real(self, model, alias, version)

    monkeypatch.setattr(client_class, "set_registered_model_alias", failing)
    with pytest.raises(registry.RegistrationError, match="deleted"):
        registry.register_logged_model(logged["trained"], name, project.run_id)
    assert [int(v.version) for v in tracking.iter_registered_versions(name)] == [first]
    assert registry.current_alias_version(name, "challenger") == first  # the previous challenger

    # when the version cannot even be deleted, it is marked and holds no alias
    def no_delete(self: Any, model: str, version: str) -> None:
        raise RuntimeError("cannot delete either")

    monkeypatch.setattr(client_class, "delete_model_version", no_delete)
    with pytest.raises(registry.RegistrationError, match="failed"):
        registry.register_logged_model(logged["trained"], name, project.run_id)
    monkeypatch.undo()
    listed = {v.version: v for v in registry.list_versions(name)}
    assert listed[first + 2].status == "failed" and listed[first + 2].aliases == []
    assert registry.current_alias_version(name, "challenger") == first
    with pytest.raises(registry.RegistrationError, match="half registered"):
        registry.promote(name, first + 2, "must not work")


def test_a_failing_log_model_registers_nothing(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    name = "sdl-log-failure"

    def failing(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(mlflow.pyfunc, "log_model", failing)
    with pytest.raises(OSError, match="disk full"):
        register(project, name)
    monkeypatch.undo()
    assert list(tracking.iter_registered_versions(name)) == []
    assert mlflow.get_run(project.run_id).info.status == "FINISHED"  # the training run is not failed


def test_promote_and_rollback_are_recorded(project: Project, logged: dict[str, str]) -> None:
    name = "sdl-actions"
    v1, v2, v3 = (registry.register_logged_model(logged["trained"], name, project.run_id) for _ in range(3))
    registry.promote(name, v1, "first", action="first")
    assert registry.promote(name, v3, "v3 looks better on the holdout") == v1
    registry.promote(name, v2, "try v2")
    assert registry.promote(name, v2, "again") == v2  # no change, not recorded
    assert registry.champion_stack(name) == [v1, v3, v2]
    assert registry.rollback(name) == (v2, v3)
    assert registry.current_alias_version(name, "champion") == v3
    assert registry.rollback(name, "back to the start") == (v3, v1)
    with pytest.raises(registry.RegistrationError, match="no previous champion"):
        registry.rollback(name)
    history = registry.champion_history(name)
    assert [(h["action"], h["previous"], h["version"]) for h in history] == [
        ("first", None, v1), ("promote", v1, v3), ("promote", v3, v2), ("rollback", v2, v3), ("rollback", v3, v1),
    ]
    assert history[-1]["reason"] == "back to the start"
    client = tracking.configured_mlflow().MlflowClient()
    assert client.get_model_version(name, str(v1)).tags["champion.action"] == "rollback"
    assert "rollback of version 1" in client.get_model_version(name, str(v3)).tags["champion.until"]
    # an incomplete version can never be promoted
    client.set_model_version_tag(name, str(v2), "sdl.registration", "incomplete")
    with pytest.raises(registry.RegistrationError, match="half registered"):
        registry.promote(name, v2, "no")
    listed = {v.version: v for v in registry.list_versions(name)}
    assert listed[v2].status == "incomplete" and listed[v1].aliases == ["champion"]
    assert listed[v1].metrics["gzsl.map"] > 0  # the evaluation metrics of the version's run


def test_register_stage_runs_the_gate_and_writes_its_decision(project: Project, tmp_path: Path) -> None:
    """The stage on the trained model (first version: champion), again on the same model (no
    new version: a run is registered once), then on a weaker model (a challenger that loses)."""
    from stages import register as register_stage

    params = yaml.safe_load((project.root / "params.yaml").read_text())
    params["register"]["embedded"].update(model_name="sdl-stage", primary_metric="gzsl.map", min_margin=0.0)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    out = tmp_path / "registered.json"

    def argv(model: str) -> list[str]:
        return ["--dataset", "embedded", "--params", str(path), "--model", model, "--manifest", f"{D}/manifest.parquet",
                "--split", f"{D}/split", "--vocabulary", f"{D}/vocabulary.parquet",
                "--metrics", "metrics/embedded/eval.json", "--out", str(out)]

    assert register_stage.main(argv("models/embedded")) == 0
    first = json.loads(out.read_text())
    assert (first["name"], first["version"], first["aliases"]) == ("sdl-stage", 1, ["challenger", "champion"])
    assert first["run_id"] == project.run_id and first["gate"]["promoted"] is True
    assert register_stage.main(argv("models/embedded")) == 0
    again = json.loads(out.read_text())
    assert again["version"] == 1 and again["gate"] == first["gate"]
    assert [v.version for v in registry.list_versions("sdl-stage")] == [1]

    weak = variant_model(project, "weak")
    assert register_stage.main(argv(str(weak.relative_to(project.root)))) == 0
    second = json.loads(out.read_text())
    assert second["version"] == 2 and second["aliases"] == ["challenger"]
    gate = second["gate"]
    assert gate["promoted"] is False and gate["champion_version"] == 1 and gate["delta"] < 0
    assert "does not beat" in gate["reason"] and gate["images"] == len(project.paths)
    version = tracking.configured_mlflow().MlflowClient().get_model_version("sdl-stage", "2")
    assert version.tags["gate.decision"] == "kept_champion" and version.tags["sdl.registration"] == "complete"
    assert version.tags["vocabulary_hash"] == gate["vocabulary_hash"]


def test_an_experiment_registers_and_gates_but_moves_champion_only_when_allowed(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside `dvc exp run` (DVC_EXP_NAME set) the stage registers and gates, records the
    verdict and keeps champion; once promotion is allowed (out of the experiment, promote:
    auto) the held-back version is gated again and promoted."""
    from stages import register as register_stage

    params = yaml.safe_load((project.root / "params.yaml").read_text())
    params["register"]["embedded"].update(model_name="sdl-exp-stage", promote="auto")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    out = tmp_path / "registered.json"
    argv = ["--dataset", "embedded", "--params", str(path), "--model", "models/embedded", "--manifest",
            f"{D}/manifest.parquet", "--split", f"{D}/split", "--vocabulary", f"{D}/vocabulary.parquet",
            "--metrics", "metrics/embedded/eval.json", "--out", str(out)]
    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "b" * 40)
    assert register_stage.main(argv) == 0
    held = json.loads(out.read_text())
    assert held["version"] == 1 and held["aliases"] == ["challenger"]
    assert held["gate"]["won"] is True and held["gate"]["promoted"] is False
    assert "DVC experiment 'exp-a'" in held["gate"]["reason"]
    client = tracking.configured_mlflow().MlflowClient()
    version = client.get_model_version("sdl-exp-stage", "1")
    assert version.tags["gate.decision"] == "won_not_promoted" and version.tags["dvc.experiment"] == "exp-a"
    assert registry.current_alias_version("sdl-exp-stage", "champion") is None
    assert register_stage.main(argv) == 0  # still in the experiment: nothing changes
    assert registry.current_alias_version("sdl-exp-stage", "champion") is None
    monkeypatch.delenv("DVC_EXP_NAME")
    assert register_stage.main(argv) == 0  # a plain `dvc repro` of the applied experiment
    promoted = json.loads(out.read_text())
    assert promoted["version"] == 1 and promoted["gate"]["promoted"] is True
    assert registry.current_alias_version("sdl-exp-stage", "champion") == 1
    assert [v.version for v in registry.list_versions("sdl-exp-stage")] == [1]


def test_champion_changes_wait_for_the_champion_lock(project: Project, logged: dict[str, str], tmp_path: Path) -> None:
    """While another process changes the champion, promote / rollback / the gate refuse after
    their wait and change nothing; the register stage then gates the version it left ungated."""
    from stages import register as register_stage

    name = "sdl-locked"
    v1, v2 = (registry.register_logged_model(logged["trained"], name, project.run_id) for _ in range(2))
    registry.promote(name, v1, "first", action="first")
    registry.promote(name, v2, "second")
    history = registry.champion_history(name)
    lock = registry.champion_lock_path(name)
    assert lock.parent == project.root / "mlflow" / "locks"  # beside the sqlite store
    with lock_held_by_another_process(lock, "a promotion in another process"):
        busy = "another champion change of sdl-locked holds .*a promotion in another process"
        with pytest.raises(registry.ChampionBusy, match=busy):
            registry.promote(name, v1, "must wait", wait_seconds=0.3)
        with pytest.raises(registry.ChampionBusy, match=busy):
            registry.rollback(name, wait_seconds=0.3)
        with pytest.raises(registry.ChampionBusy, match=busy):
            gate.run_gate(name, v1, project.gate_data(), wait_seconds=0.3)
        assert registry.current_alias_version(name, "champion") == v2
        assert registry.champion_history(name) == history
        assert "gate.decision" not in tracking.configured_mlflow().MlflowClient().get_model_version(name, str(v1)).tags
    assert registry.rollback(name, wait_seconds=0.3) == (v2, v1)  # released with its holder

    # The register stage: the gate cannot get the lock, so the version stays an ungated challenger ...
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    params["register"]["embedded"].update(model_name="sdl-stage-locked", lock_wait_seconds=0.3)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    out = tmp_path / "registered.json"
    argv = ["--dataset", "embedded", "--params", str(path), "--model", "models/embedded",
            "--manifest", f"{D}/manifest.parquet", "--split", f"{D}/split", "--vocabulary", f"{D}/vocabulary.parquet",
            "--metrics", "metrics/embedded/eval.json", "--out", str(out)]
    with lock_held_by_another_process(registry.champion_lock_path("sdl-stage-locked"), "a rollback"):
        with pytest.raises(registry.ChampionBusy, match="a rollback"):
            register_stage.main(argv)
    [version] = registry.list_versions("sdl-stage-locked")
    assert version.aliases == ["challenger"] and "gate.decision" not in version.tags and not out.exists()
    # ... and the next run gates that version instead of skipping it or registering another.
    assert register_stage.main(argv) == 0
    written = json.loads(out.read_text())
    assert written["version"] == version.version and written["gate"]["promoted"] is True
    assert [v.version for v in registry.list_versions("sdl-stage-locked")] == [version.version]
    assert registry.current_alias_version("sdl-stage-locked", "champion") == version.version


@pytest.mark.slow
def test_registry_flow_against_a_tracking_server(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Register, gate and load through a real server; then the server stops between the
    registration and the alias: the version is left marked, never aliased, never promotable."""
    import pandas as pd

    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    port = free_port()
    name = "sdl-embedded"
    with mlflow_server(tmp_path / "server", port) as (url, process):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
        run_id = tracking.start_run("embedded", "server-train", {"dataset": "embedded"}, {})
        model_dir = tmp_path / "model"
        shutil.copytree(project.model_dir, model_dir)
        tracking.write_run_file(model_dir, run_id, "embedded")
        first = register(project, name, model_dir)
        decision = gate.run_gate(name, first, project.gate_data())
        assert decision.promoted and registry.version_aliases(name, first) == ["challenger", "champion"]
        tagger = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        out = tagger.predict(pd.DataFrame({"image": [project.paths[0].read_bytes()]}), params={"top_k": 2})
        assert len(out.loc[0, "tags"]) == 2
        assert (tmp_path / "server" / "artifacts").is_dir()  # artifacts went through the server

        client_class = type(mlflow.MlflowClient())
        real = client_class.set_registered_model_alias

        def stop_then_set(self: Any, model: str, alias: str, version: str) -> None:
            stop_server(process)  # the store goes away midway
            real(self, model, alias, version)

        monkeypatch.setattr(client_class, "set_registered_model_alias", stop_then_set)
        with pytest.raises(registry.RegistrationError):
            register(project, name, model_dir)
        monkeypatch.undo()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    with mlflow_server(tmp_path / "server", port) as (url, _):
        versions = {v.version: v for v in registry.list_versions(name)}
        assert set(versions) == {first, first + 1}
        left = versions[first + 1]
        assert left.status in ("incomplete", "failed") and left.aliases == []
        assert registry.current_alias_version(name, "challenger") == first
        with pytest.raises(registry.RegistrationError, match="half registered"):
            registry.promote(name, first + 1, "must not work")
        assert registry.current_alias_version(name, "champion") == first
