"""DVC experiments and the ecosystem around `dvc repro`, for real, in a temp copy of the
repository: `dvc exp run --temp` and `dvc queue start` log into the project's MLflow store
(not a throwaway one in .dvc/tmp/exps), tagged with the experiment and its baseline, and never
move `champion` unless asked; `dvc exp show` lists the metrics that matter; `dvc plots show`
and `dvc plots diff` render the evaluation plots with their templates; after `dvc pull` into
another clone, whose store has never seen the training run, evaluate and register still work."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.repo import copy_repository, run_dvc

pytestmark = pytest.mark.slow
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_params: dict[str, Any]) -> Path:
    root = copy_repository(tmp_path_factory.mktemp("experiments") / "repo", tiny_params)
    run_dvc(root, "repro")
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "pipeline outputs"], cwd=root, check=True)
    return root


def head(root: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def store(root: Path) -> Any:
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{root}/mlflow/mlflow.db")


def experiment_runs(root: Path, name: str) -> list[Any]:
    client = store(root)
    experiment = client.get_experiment_by_name("sdl-embedded")
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`dvc.experiment` = '{name}'")


def champion(root: Path) -> int:
    return int(store(root).get_model_version_by_alias("sdl-embedded", "champion").version)


def versions_of(root: Path, name: str) -> list[Any]:
    return [v for v in store(root).search_model_versions("name = 'sdl-embedded'")
            if (v.tags or {}).get("dvc.experiment") == name]


def test_a_temp_experiment_logs_into_the_projects_store_and_keeps_the_champion(repo: Path) -> None:
    baseline, before = head(repo), champion(repo)
    run_dvc(repo, "exp", "run", "--temp", "-n", "lr-high", "-S", "train.embedded.lr=0.002")
    runs = experiment_runs(repo, "lr-high")
    names = {r.info.run_name for r in runs}
    assert "embedded-train" in names, names
    train = next(r for r in runs if r.info.run_name == "embedded-train")
    assert train.data.tags["dvc.baseline_rev"] == baseline
    assert train.data.tags["mlflow.source.git.commit"] == baseline
    assert train.data.tags["mlflow.project.entryPoint"] == "train@embedded"
    assert train.data.params["train.lr"] == "0.002"
    [version] = versions_of(repo, "lr-high")
    assert version.run_id == train.info.run_id
    assert version.tags["gate.decision"] in ("won_not_promoted", "kept_champion")
    assert champion(repo) == before  # an experiment does not move champion by default
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))  # no throwaway store left behind

    shown = json.loads(run_dvc(repo, "exp", "show", "--json").stdout)
    experiments = [e for row in shown for e in (row.get("experiments") or [])]
    [row] = [e for e in experiments if e.get("name") == "lr-high"]
    metrics = row["revs"][0]["data"]["metrics"]
    summary = metrics["metrics/embedded/summary.json"]["data"]
    assert set(summary) == {"zsl", "gzsl"} and set(summary["gzsl"]) == {"map", "f1@1", "f1@2"}
    assert "metrics/embedded/eval.json" not in metrics  # the full record is an output, not a DVC metric


def wait_for_queue(root: Path, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = run_dvc(root, "queue", "status").stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(3)


def test_a_queued_experiment_runs_through_dvc_queue_and_promotes_when_asked(repo: Path) -> None:
    """Queued (run by a `dvc queue` worker in .dvc/tmp/exps), with register.promote=true: its
    runs reach the project's store and the gate may move champion, as it decides."""
    before = champion(repo)
    run_dvc(repo, "exp", "run", "--queue", "-n", "seed-two", "-S", "train.embedded.seed=2",
            "-S", "register.embedded.promote=true")
    run_dvc(repo, "queue", "start", "-j", "1")
    status = wait_for_queue(repo)
    assert "Success" in status, status
    [version] = versions_of(repo, "seed-two")
    [train] = [r for r in experiment_runs(repo, "seed-two") if r.info.run_name == "embedded-train"]
    assert version.run_id == train.info.run_id and train.data.params["train.seed"] == "2"
    decision = version.tags["gate.decision"]
    assert decision in ("promoted", "kept_champion")  # never "won_not_promoted": promotion was asked for
    assert champion(repo) == (int(version.version) if decision == "promoted" else before)
    names = {e.get("name") for row in json.loads(run_dvc(repo, "exp", "show", "--json").stdout)
             for e in (row.get("experiments") or [])}
    assert {"lr-high", "seed-two"} <= names


def test_dvc_exp_apply_brings_an_experiments_params_back(repo: Path) -> None:
    run_dvc(repo, "exp", "apply", "lr-high")
    assert "lr: 0.002" in (repo / "params.yaml").read_text()
    subprocess.run(["git", "checkout", "--", "."], cwd=repo, check=True)
    run_dvc(repo, "checkout", "--force")


def test_dvc_plots_render_the_evaluation_with_their_templates(repo: Path) -> None:
    shown = json.loads(run_dvc(repo, "plots", "show", "--json").stdout)["data"]
    per_tag = shown["metrics/embedded/per_tag_ap.csv"][0]["content"]
    curves = shown["metrics/embedded/pr_at_k.csv"][0]["content"]
    assert per_tag["facet"]["row"]["field"] == "setting" and per_tag["spec"]["encoding"]["x"]["field"] == "ap"
    assert {r["tag"] for r in per_tag["data"]["values"]} >= {"cat", "sheep", "zebra"}
    assert curves["transform"][0]["fold"] == ["precision", "recall", "f1"]
    assert {str(r["k"]) for r in curves["data"]["values"]} >= {"1", "2", "3"}
    assert shown["metrics/embedded/train_history.csv"][0]["content"]["title"]["text"] == "Validation GZSL mAP per epoch"
    assert "metrics/embedded/plots/pr_at_k.png" in shown
    out = repo.parent / "plots-diff"
    run_dvc(repo, "plots", "diff", "HEAD", "lr-high", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "per_tag_ap.csv" in html and "pr_at_k.csv" in html


def test_after_dvc_pull_into_another_clone_evaluate_and_register_log_to_a_run_of_their_own(
    repo: Path, tmp_path: Path
) -> None:
    run_dvc(repo, "push")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    (clone / ".dvc" / "config").write_text((repo / ".dvc" / "config").read_text().replace(
        "../.dvc-storage", str(repo / ".dvc-storage")))
    run_dvc(clone, "pull")
    original = json.loads((clone / "models/embedded/run.json").read_text())
    with open(clone / "vocabularies/embedded.txt", "a", encoding="utf-8") as handle:
        handle.write("lion\n")
    output = run_dvc(clone, "repro").stdout
    assert "Running stage 'evaluate@embedded'" in output and "Running stage 'train@embedded'" not in output
    client = store(clone)
    experiment = client.get_experiment_by_name("sdl-embedded")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "embedded-model" and run.info.run_id != original["run_id"]
    assert run.data.tags["sdl.original_run_id"] == original["run_id"]
    assert run.data.metrics["gzsl.map"] == pytest.approx(
        json.loads((clone / "metrics/embedded/eval.json").read_text())["gzsl"]["map"])
    registered = json.loads((clone / "metrics/embedded/registered.json").read_text())
    assert registered["run_id"] == run.info.run_id and "champion" in registered["aliases"]
