"""Repeatability: two CPU runs of the train stage at one commit, on one machine, in separate
processes, give bit-identical weights, history and validation metrics (the committed
metrics are what a `make repro` on this machine gives)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd

from tests.helpers.stages import copy_built, option, stage_argv, stage_command, subprocess_env


def _train(root: Path) -> dict[str, bytes]:
    result = subprocess.run(stage_command("train"), cwd=root, env=subprocess_env(root), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    _, argv = stage_argv("train")
    model = root / option(argv, "model")
    return {"weights": (model / "model.safetensors").read_bytes(), "history": (root / option(argv, "history")).read_bytes()}


def test_two_cpu_runs_give_bit_identical_weights(built: Path, tmp_path: Path) -> None:
    first = _train(copy_built(built, tmp_path / "first"))
    second = _train(copy_built(built, tmp_path / "second"))
    assert first["weights"] == second["weights"]
    history = [pd.read_csv(pd.io.common.BytesIO(run["history"])) for run in (first, second)]
    metrics = [c for c in history[0].columns if c.startswith("val.") or c in ("train_loss", "lr")]
    pd.testing.assert_frame_equal(history[0][metrics], history[1][metrics], check_exact=True)
