"""End to end: the two model families compete for one registered model. In a temp copy of the
repository (shrunken embedded params): `dvc repro` trains SDL, the first champion of
`sdl-embedded`; then `dvc exp run -S train.embedded.model=epsilon` trains Epsilon through the
same stages, evaluates it, registers it as the challenger and gates it against the SDL champion
on the same test images; `sdl tag` and the pyfunc (in a fresh process, without the project on
the path) then tag images with the Epsilon version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.helpers.repo import copy_repository, pipeline_env, run_dvc

pytestmark = pytest.mark.slow
NAME = "sdl-embedded"


@pytest.fixture(scope="module")
def competed(tmp_path_factory: pytest.TempPathFactory, tiny_params: dict[str, Any]) -> tuple[Path, str, dict]:
    root = copy_repository(tmp_path_factory.mktemp("repo"), tiny_params)
    run_dvc(root, "repro")
    sdl_registered = json.loads((root / "metrics/embedded/registered.json").read_text())
    result = run_dvc(root, "exp", "run", "-S", "train.embedded.model=epsilon")
    return root, result.stdout, sdl_registered


def _mlflow(root: Path):  # type: ignore[no-untyped-def]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow/mlflow.db")
    return mlflow.MlflowClient()


def test_the_epsilon_run_is_trained_evaluated_and_gated_against_the_sdl_champion(competed) -> None:
    root, output, first = competed
    assert first["version"] == 1 and "champion" in first["aliases"]
    ran = [s for s in ("download", "split", "embed", "train", "evaluate", "register") if f"Running stage '{s}@embedded'" in output]
    assert ran == ["train", "evaluate", "register"], output
    model = json.loads((root / "models/embedded/model.json").read_text())
    assert model["family"] == "epsilon" and model["model"]["options"]["token_dim"] == 128
    metrics = json.loads((root / "metrics/embedded/eval.json").read_text())
    assert 0.0 <= metrics["zsl"]["map"] <= 100.0 and 0.0 <= metrics["gzsl"]["f1@2"] <= 100.0
    registered = json.loads((root / "metrics/embedded/registered.json").read_text())
    gate = registered["gate"]
    assert registered["version"] == 2 and gate["challenger_version"] == 2 and gate["champion_version"] == 1
    assert gate["champion_value"] is not None and gate["images"] > 0
    # the gate's own scoring of the challenger is the evaluate stage's (same test images, vocabulary)
    assert gate["challenger_value"] == pytest.approx(metrics["gzsl"]["map"], abs=1e-6)
    assert gate["promoted"] == (gate["challenger_value"] > gate["champion_value"])  # min_margin 0
    assert ("champion" in registered["aliases"]) == gate["promoted"]
    client = _mlflow(root)
    families = {v: client.get_model_version(NAME, str(v)).tags.get("model_family") for v in (1, 2)}
    assert families == {1: "sdl", 2: "epsilon"}


def test_sdl_tag_and_the_pyfunc_serve_the_epsilon_version(competed, tmp_path: Path) -> None:
    root, _, _ = competed
    image = str(next((root / "data/embedded/raw/images").glob("*.png")))
    tag = subprocess.run(
        [sys.executable, "-m", "sdl.cli", "tag", image, "--model", f"models:/{NAME}/2", "--top-k", "3", "--json"],
        cwd=root, env=pipeline_env(root), capture_output=True, text=True,
    )
    assert tag.returncode == 0, tag.stderr
    ranked = json.loads(tag.stdout)["results"][0]["tags"]
    assert len(ranked) == 3 and all(isinstance(t["score"], float) for t in ranked)
    served_tags = set(pd.read_parquet(root / "data/embedded/vocabulary.parquet")["tag"])
    assert {t["tag"] for t in ranked} <= served_tags
    script = (
        "import mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri('sqlite:///{root}/mlflow/mlflow.db')\n"
        f"m = mlflow.pyfunc.load_model('models:/{NAME}/2')\n"
        f"out = m.predict(pd.DataFrame({{'image': [open({image!r}, 'rb').read()]}}), params={{'top_k': 3}})\n"
        "print(list(out.loc[0, 'tags']))\n"
    )
    env = pipeline_env(root)
    env.pop("PYTHONPATH")  # the logged model carries its code
    served = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert served.returncode == 0, served.stderr
    assert served.stdout.strip() == str([t["tag"] for t in ranked])  # the CLI and the pyfunc agree
