"""Every user mistake or outside failure ends with a non-zero exit and one or two lines of the
command's own that name the key, file or source and say what to do; a traceback only with
``--verbose`` / ``SDL_VERBOSE``. Tried as a user would: the stages as DVC runs them (in
subprocesses), ``dvc repro``, and downloads whose every image fails."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.paper import paper_params
from tests.helpers.replicas import MotoS3, ReplicaHTTPServer, write_nus_wide_replica, write_open_images_replica
from tests.helpers.repo import copy_repository, pipeline_env, run_dvc
from tests.helpers.stages import copy_built, make_workdir, stage_command, subprocess_env, variant


def _run(stage: str, root: Path, dataset: str = "embedded", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(stage_command(stage, dataset), cwd=root, env=subprocess_env(root, **env), capture_output=True,
                          text=True, timeout=600)


def _ends_cleanly(result: subprocess.CompletedProcess[str], prog: str, *named: str) -> str:
    """The command failed with a line of its own, naming what it must, and no traceback."""
    assert result.returncode not in (0, 1), result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = [line for line in result.stderr.strip().splitlines() if line.strip()][-1]
    ours = [line for line in result.stderr.splitlines() if line.startswith(f"{prog}: error:")]
    assert ours, result.stderr[-2000:]
    message = "\n".join(result.stderr.split(f"{prog}: error:", 1)[1].strip().splitlines()[:2])
    assert len(result.stderr.split(f"{prog}: error:", 1)[1].strip().splitlines()) <= 2, result.stderr[-2000:]
    for text in named:
        assert text in message, (text, message)
    assert last.startswith(f"{prog}: error:") or last in message
    return message


def test_an_invalid_params_value(tmp_path: Path, tiny_params: dict[str, Any]) -> None:
    root = make_workdir(tmp_path / "work", variant(tiny_params, "evaluate.embedded.ks", [1, 5]))
    result = _run("train", root)
    assert result.returncode == 3  # invalid params: nothing ran, trying again cannot help
    _ends_cleanly(result, "train", "evaluate.embedded.ks", "k = 5 is larger than the 3 unseen tags")
    verbose = _run("train", root, SDL_VERBOSE="1")
    assert verbose.returncode == 3 and "Traceback" in verbose.stderr and "ParamsError" in verbose.stderr


def test_a_split_too_small(built: Path, tmp_path: Path, tiny_params: dict[str, Any]) -> None:
    root = copy_built(built, tmp_path / "work", variant(tiny_params, "split.embedded.images.val_fraction", 0.001))
    _ends_cleanly(_run("split", root), "split", "the val split is empty", "val_fraction 0.001",
                  "split.<dataset>.images")


def test_a_missing_input_file(tmp_path: Path, tiny_params: dict[str, Any]) -> None:
    root = make_workdir(tmp_path / "work", tiny_params)  # no earlier stage ran
    _ends_cleanly(_run("validate", root), "validate", "data/embedded/manifest.parquet")


def test_dvc_repro_adds_its_error_line_to_ours(tmp_path: Path, tiny_params: dict[str, Any]) -> None:
    root = copy_repository(tmp_path / "repo", variant(tiny_params, "train.embedded.num_rows", "seven"))
    result = run_dvc(root, "repro", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "download: error: train.embedded.num_rows: expected an integer, got 'seven'" in output
    assert "ERROR: failed to reproduce 'download@embedded'" in output


@pytest.fixture
def dead_sources(tmp_path: Path, moto_s3: MotoS3) -> dict[str, Any]:
    """NUS-WIDE lists whose every Flickr URL is dead, and Open Images in a bucket that refuses
    anonymous reads (403)."""
    served = tmp_path / "served"
    server = ReplicaHTTPServer(served)
    nus = write_nus_wide_replica(served / "nus", f"{server.base_url}/nus")
    for image in (served / "nus" / "flickr").rglob("*.jpg"):
        image.unlink()  # today most NUS-WIDE URLs answer 404
    oi = write_open_images_replica(served / "oi")
    moto_s3.create_bucket("private-open-images")  # no public-read policy: unsigned reads get 403
    for key, data in oi.images.items():
        moto_s3.client.put_object(Bucket="private-open-images", Key=key, Body=data)
    yield {"server": server, "nus": nus, "oi": oi, "s3": moto_s3}
    server.close()


@pytest.mark.parametrize(("dataset", "source"), [("nus_wide", "nus_wide"), ("open_images", "open_images")])
def test_a_download_in_which_every_image_fails(dataset: str, source: str, dead_sources: dict[str, Any], tmp_path: Path,
                                               repo_params: dict[str, Any]) -> None:
    oi = dead_sources["oi"]
    params = paper_params(repo_params, dead_sources["server"].base_url, dead_sources["s3"].endpoint_url,
                          "private-open-images", len(oi.seen), len(oi.unseen), datasets=(dataset,))
    root = make_workdir(tmp_path / "work", params)
    env = {k: v for k, v in subprocess_env(root).items() if not k.startswith("AWS_")}
    result = subprocess.run(stage_command("download", dataset), cwd=root, env=env, capture_output=True, text=True,
                            timeout=600)
    message = _ends_cleanly(result, "download", f"{source}: obtained 0 of", "min_images_fraction",
                            "options.image_dir")
    assert ("HTTP 404" in message) if dataset == "nus_wide" else ("S3 AccessDenied" in message or "403" in message)
    assert not (root / "data" / dataset / "manifest.parquet").exists()  # nothing half written
    report = root / "data" / dataset / "raw" / f"{dataset}_report.json"
    assert json.loads(report.read_text())["images"] == 0  # the counts are kept for the user


@pytest.mark.parametrize("command", [
    ["-m", "pipelines.retrain", "--dataset", "imagenet"],
    ["-m", "pipelines.rebuild", "--dataset", "imagenet"],
])
def test_a_flow_for_a_dataset_params_do_not_list(command: list[str], tmp_path: Path, tiny_params: dict[str, Any]) -> None:
    """Refused before Prefect starts anything, naming the dataset and where datasets are listed."""
    import sys

    root = copy_repository(tmp_path / "repo", tiny_params)
    result = subprocess.run([sys.executable, *command], cwd=root, env=pipeline_env(root), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "--dataset imagenet: not one of the datasets in params.yaml ['embedded']" in result.stderr.splitlines()[-1]
    assert "Starting temporary server" not in result.stdout + result.stderr


@pytest.mark.parametrize(("argv", "named"), [
    (["models", "promote", "--dataset", "embedded", "--version", "99"], "no version 99"),
    (["tag", "missing.png", "--model", "models:/sdl-nosuch@champion"], "cannot load model models:/sdl-nosuch@champion"),
    (["serve", "--vocabulary", "no/such.parquet"], "no/such.parquet: no such vocabulary file"),
])
def test_sdl_with_bad_input(argv: list[str], named: str, built: Path, tmp_path: Path) -> None:
    import sys

    root = copy_built(built, tmp_path / "work")
    (root / "mlflow" / "mlflow.db").touch()  # an (empty) project store, as after `make repro`
    result = subprocess.run([str(Path(sys.executable).with_name("sdl")), *argv], cwd=root, env=subprocess_env(root),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert named in result.stderr and result.stderr.strip().splitlines()[-1].startswith("sdl: error:"), result.stderr
