"""Where a run comes from (MLflow's source tags), DVC's experiment context, and the promotion
policy of experiments; the project's store found from DVC's repository root."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sdl.mlops import run_context, tracking


def test_outside_an_experiment_the_gate_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert run_context.promotion_allowed("auto") == (True, "the gate decides")
    assert run_context.promotion_allowed(True)[0] is True
    assert run_context.promotion_allowed(False)[0] is False
    assert run_context.experiment_tags() == {}


def test_an_experiment_promotes_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "fuzzy-lamb")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    allowed, why = run_context.promotion_allowed("auto")
    assert not allowed and "fuzzy-lamb" in why and "register.<dataset>.promote=true" in why
    assert run_context.promotion_allowed(True)[0] is True
    assert run_context.promotion_allowed(False)[0] is False
    assert run_context.experiment_tags() == {"dvc.experiment": "fuzzy-lamb", "dvc.baseline_rev": "a" * 40}


def test_source_tags_are_mlflows_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "f.txt").write_text("a")
    subprocess.run([*git, "add", "f.txt"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True,
                          check=True).stdout.strip()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STAGE", "train@embedded")
    tags = run_context.source_tags("stages.train")
    assert tags == {
        "mlflow.source.git.commit": head, "mlflow.source.git.dirty": "false", "mlflow.source.name": "stages/train.py",
        "mlflow.source.type": "LOCAL", "mlflow.project.entryPoint": "train@embedded",
    }
    (tmp_path / "f.txt").write_text("b")
    assert run_context.source_tags("stages.train")["mlflow.source.git.dirty"] == "true"
    assert run_context.commit_of({"git_commit": "old"}) == "old"  # versions registered before
    assert run_context.commit_of(tags) == head


def test_the_default_store_is_the_dvc_repositorys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A queued or --temp experiment runs in a copy under .dvc/tmp/exps; DVC_ROOT names the
    original repository, whose store the runs must reach."""
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.default_store_uri() == f"sqlite:///{copy}/mlflow/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert tracking.default_store_uri() == f"sqlite:///{tmp_path}/repo/mlflow/mlflow.db"
    assert tracking.uses_local_store() and tracking.project_root() == tmp_path / "repo"
