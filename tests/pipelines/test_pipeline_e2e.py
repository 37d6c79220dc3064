"""End to end: `dvc repro` and the Prefect flow on a shrunken embedded config, in a temp copy
of the repository (its own git repo, DVC cache, MLflow store and Prefect home)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.repo import clone_built, copy_repository, pipeline_env, run_dvc

pytestmark = pytest.mark.slow
STAGES = ("download", "validate", "split", "embed", "train", "evaluate", "register")


@pytest.fixture(scope="module")
def built_repo(tmp_path_factory: pytest.TempPathFactory, tiny_params: dict[str, Any]) -> tuple[Path, str]:
    root = copy_repository(tmp_path_factory.mktemp("repo"), tiny_params)
    result = run_dvc(root, "repro")
    return root, result.stdout


def ran(output: str, stage: str) -> bool:
    return f"Running stage '{stage}@embedded'" in output


def test_dvc_repro_builds_every_stage(built_repo: tuple[Path, str]) -> None:
    root, output = built_repo
    assert all(ran(output, s) for s in STAGES), output
    metrics = json.loads((root / "metrics/embedded/eval.json").read_text())
    assert {"zsl", "gzsl", "chance"} <= set(metrics)
    for key in ("map", "precision@2", "recall@2", "f1@2"):
        assert 0.0 <= metrics["zsl"][key] <= 100.0
    registered = json.loads((root / "metrics/embedded/registered.json").read_text())
    assert registered["name"] == "sdl-embedded" and registered["aliases"] == ["challenger", "champion"]
    # DVC reports the metrics it tracks: the summary of what matters
    shown = json.loads(run_dvc(root, "metrics", "show", "--json").stdout)
    summary = shown[""]["data"]["metrics/embedded/summary.json"]["data"]
    assert summary["zsl"]["map"] == metrics["zsl"]["map"] and set(summary["gzsl"]) == {"map", "f1@1", "f1@2"}
    assert (root / "data/embedded/data_docs/index.html").is_file()  # the GX Checkpoint's Data Docs


def test_registered_champion_loads_in_a_fresh_process(built_repo: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = built_repo
    image = next((root / "data/embedded/raw/images").glob("*.png"))
    script = (
        "import mlflow, pandas as pd, sys\n"
        f"mlflow.set_tracking_uri('sqlite:///{root}/mlflow/mlflow.db')\n"
        "m = mlflow.pyfunc.load_model('models:/sdl-embedded@champion')\n"
        f"out = m.predict(pd.DataFrame({{'image': [open({str(image)!r}, 'rb').read()]}}), params={{'top_k': 2}})\n"
        "print(out.loc[0, 'tags'])\n"
    )
    env = pipeline_env(root)
    env.pop("PYTHONPATH")  # the model must work without the training code on the path
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("[")


def test_second_repro_runs_nothing_quickly(built_repo: tuple[Path, str]) -> None:
    root, _ = built_repo
    started = time.perf_counter()
    output = run_dvc(root, "repro").stdout
    assert "Data and pipelines are up to date." in output
    assert not any(ran(output, s) for s in STAGES)
    assert time.perf_counter() - started < 30


def test_changing_epochs_reruns_only_train_evaluate_register(built_repo: tuple[Path, str], tmp_path: Path) -> None:
    root = clone_built(built_repo[0], tmp_path / "repo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["embedded"]["epochs"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = run_dvc(root, "repro").stdout
    assert [s for s in STAGES if ran(output, s)] == ["train", "evaluate", "register"], output
    registered = json.loads((root / "metrics/embedded/registered.json").read_text())
    # the gate decides: champion moves to version 2 only if it won on the same test data
    assert registered["version"] == 2 and ("champion" in registered["aliases"]) == registered["gate"]["promoted"]


def test_prefect_flow_runs_the_dag_through_dvc(built_repo: tuple[Path, str], tmp_path: Path) -> None:
    root = clone_built(built_repo[0], tmp_path / "repo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["embedded"]["ks"] = [1]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.rebuild", "--dataset", "embedded"],
        cwd=root, env=pipeline_env(root), capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = dict(
        line.strip().split(": ", 1) for line in result.stdout.splitlines() if line.strip().split(":")[0] in STAGES
    )
    assert summary == {
        "download": "up to date", "validate": "up to date", "split": "up to date", "embed": "up to date",
        "train": "up to date", "evaluate": "ran", "register": "ran",
    }
    log = result.stdout + result.stderr
    assert "Task run 'evaluate-embedded'" in log and "Finished in state Completed" in log
    assert "f1@2" not in json.loads((root / "metrics/embedded/eval.json").read_text())["zsl"]


def test_dvc_s3_remote_push_then_pull_into_a_fresh_clone(built_repo: tuple[Path, str], tmp_path: Path) -> None:
    from tests.helpers.replicas import MotoS3

    root, _ = built_repo
    s3 = MotoS3()
    try:
        s3.create_bucket("sdl-dvc-remote")
        env = {**pipeline_env(root), **MotoS3.CREDENTIALS}
        dvc = [str(Path(sys.executable).parent / "dvc")]

        def run(cwd: Path, *args: str) -> str:
            result = subprocess.run([*dvc, *args], cwd=cwd, env=env, capture_output=True, text=True)
            assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
            return result.stdout

        run(root, "remote", "add", "-f", "-d", "s3", "s3://sdl-dvc-remote/cache")
        run(root, "remote", "modify", "s3", "endpointurl", s3.endpoint_url)
        git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
        subprocess.run([*git, "add", "-A"], cwd=root, check=True)
        subprocess.run([*git, "commit", "-qm", "pipeline outputs and S3 remote"], cwd=root, check=True)
        run(root, "push")
        stored = s3.client.list_objects_v2(Bucket="sdl-dvc-remote").get("KeyCount", 0)
        assert stored > 100  # the images, manifest, model, ...

        clone = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
        assert not (clone / "data/embedded/manifest.parquet").exists()
        run(clone, "pull")
        for path in ("data/embedded/manifest.parquet", "data/embedded/wordvecs.parquet", "models/embedded/model.safetensors"):
            assert (clone / path).read_bytes() == (root / path).read_bytes(), path
        assert "Data and pipelines are up to date" in run(clone, "status")
    finally:
        s3.stop()
