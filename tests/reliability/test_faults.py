"""Faults: a full disk or an unwritable folder, S3 and HTTP failures, processes killed with
SIGKILL mid-stage, the MLflow store going away during `register`, two pipeline runs at once.

The kill tests run the real stage commands (``python -m stages.<name>``, arguments from
dvc.yaml) as subprocesses in a temp folder, kill them with SIGKILL at a detected point, run
them again and compare with an uninterrupted run. HTTP faults of the downloads are covered
in tests/data/test_fetch.py; the S3 side is here (moto cannot inject faults: a botocore
event hook answers the first requests as a failing S3 would).
"""

from __future__ import annotations

import ast
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from sdl.data.fetch.errors import FetchError
from sdl.data.fetch.s3 import fetch_s3
from sdl.safety.atomic import (
    atomic_dir,
    atomic_write_bytes,
    atomic_write_text,
    write_json,
    write_parquet,
)
from tests.helpers.replicas import MotoS3, ReplicaHTTPServer, free_port
from tests.helpers.stages import (
    REPO_ROOT,
    VENV_BIN,
    MlflowServer,
    copy_built,
    kill_group,
    option,
    run_stage,
    stage_argv,
    stage_command,
    subprocess_env,
    variant,
    wait_for,
    write_params,
)

# --------------------------------------------------------------------------- disk full, unwritable


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


WRITERS: dict[str, Callable[[Path], None]] = {
    "bytes": lambda path: atomic_write_bytes(path, b"new" * 1000),
    "text": lambda path: atomic_write_text(path, "new\n" * 1000),
    "json": lambda path: write_json(path, {"new": list(range(100))}),
    "parquet": lambda path: write_parquet(path, pa.table({"new": list(range(100))})),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_full_disk_at_fsync_leaves_the_old_file_and_names_the_target(
    writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / f"out.{writer}"
    target.write_bytes(b"old complete content")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as caught:
        WRITERS[writer](target)
    assert caught.value.errno == errno.ENOSPC and str(target) in str(caught.value)
    assert target.read_bytes() == b"old complete content"  # never half-written
    assert _leftovers(tmp_path) == []  # no temporary file left behind


class _FullDisk(io.RawIOBase):
    """A file whose writes fail with ENOSPC after ``room`` bytes."""

    def __init__(self, handle: Any, room: int) -> None:
        self.handle, self.room = handle, room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if len(data) > self.room:
            self.handle.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def fileno(self) -> int:
        return self.handle.fileno()

    def close(self) -> None:
        self.handle.close()
        super().close()


def test_a_full_disk_mid_write_leaves_no_partial_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    write_json(target, {"version": 1})
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode, **kw: _FullDisk(real_fdopen(fd, "wb", buffering=0), 100))
    with pytest.raises(OSError) as caught:
        write_json(target, {"version": 2, "payload": "x" * 10_000})
    assert caught.value.errno == errno.ENOSPC and target.name in str(caught.value)
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"version": 1}
    assert _leftovers(tmp_path) == []


def test_an_unwritable_output_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "metrics"
    blocker.write_text("a file where the stage expects a folder")  # chmod does not stop root
    target = blocker / "embedded" / "eval.json"
    with pytest.raises(OSError) as caught:
        write_json(target, {"a": 1})
    assert str(blocker) in str(caught.value)
    assert blocker.read_text().startswith("a file")
    with pytest.raises(OSError):
        with atomic_dir(blocker / "model") as staging:
            (staging / "x").write_text("never")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "out.json").write_text("{}")
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="ro"):
            write_json(folder / "out.json", {"a": 1})
        assert (folder / "out.json").read_text() == "{}"
    finally:
        folder.chmod(0o755)


def test_atomic_dir_keeps_the_old_folder_until_the_new_one_is_complete(tmp_path: Path) -> None:
    model = tmp_path / "models" / "embedded"
    with atomic_dir(model) as staging:
        (staging / "model.safetensors").write_bytes(b"v1")
        (staging / "tags.json").write_text("{}")
    with pytest.raises(OSError, match="disk full"):
        with atomic_dir(model) as staging:
            (staging / "model.safetensors").write_bytes(b"v2")
            raise OSError(errno.ENOSPC, "disk full")  # e.g. while copying the second file
    assert sorted(os.listdir(model)) == ["model.safetensors", "tags.json"]
    assert (model / "model.safetensors").read_bytes() == b"v1"
    assert os.listdir(model.parent) == ["embedded"]  # no staging folder left
    with atomic_dir(model) as staging:
        (staging / "model.safetensors").write_bytes(b"v2")
    assert os.listdir(model) == ["model.safetensors"] and os.listdir(model.parent) == ["embedded"]


# Functions that write files without sdl.safety.atomic, each checked by hand: why it is safe.
ATOMIC_BY_HAND = {
    ("sdl/safety/atomic.py", "*"): "the atomic writers themselves",
    ("sdl/training/checkpoints.py", "save_checkpoint"): "torch.save to a .partial sibling, fsync, os.replace",
    ("sdl/models/registry.py", "save_model"): "safetensors to a .partial sibling, os.replace",
    ("sdl/data/fetch/http.py", "_http_once"): "streams into <dest>.partial; renamed only once verified",
    ("sdl/data/fetch/s3.py", "_s3_once"): "streams into <dest>.partial; renamed only once verified",
    ("sdl/data/fetch/verify.py", "_finish"): "fsync of the verified .partial before os.replace",
    ("sdl/data/fetch/archives.py", "_extract_tar"): "symlinks of checked archive entries (files go through atomic_write_stream)",
    ("sdl/data/fetch/locations.py", "link_or_copy"): "a hard link to a temporary name, then os.replace",
    ("sdl/data/kinds/coco.py", "_annotation_files"): "Sources.extract: the safe extractor, files through atomic_write_stream",
    ("sdl/data/kinds/coco.py", "_gather"): "Sources.extract: the safe extractor, files through atomic_write_stream",
    ("sdl/data/kinds/nus_wide.py", "_resolver"): "Sources.extract: the safe extractor, files through atomic_write_stream",
    ("sdl/data/kinds/nus_wide.py", "_url_file"): "Sources.extract: the safe extractor, files through atomic_write_stream",
    ("sdl/training/token_cache.py", "cached_tokens"): "tokens into <split>.npy.partial, os.replace once complete",
    ("sdl/training/token_cache.py", "_build"): "fills the .partial memmap; cached_tokens renames it when complete",
    ("sdl/mlops/training_run.py", "train_tracked"): "copies the best model into an sdl.safety.atomic.atomic_dir staging folder",
    ("sdl/safety/locks.py", "file_lock"): "a lock file: only its holder note is written, and nothing reads it as an output",
}
_WRITE_METHODS = {"to_csv", "to_parquet", "to_json", "to_pickle", "savefig", "write_text", "write_bytes",
                  "write_table", "save_file", "save", "savez", "savez_compressed", "copytree", "copyfile",
                  "copy", "copy2", "copyfileobj", "symlink", "link", "dump", "extractall", "extract"}
_ATOMIC_MARKERS = {"atomic_open", "atomic_write_bytes", "atomic_write_text", "write_json", "write_parquet",
                   "atomic_dir", "replace", "BytesIO"}


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _writes(call: ast.Call) -> bool:
    name = _called_name(call)
    if name == "open":
        mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
        if mode is not None and not isinstance(mode, ast.Constant):
            return True  # a mode chosen at run time: counted as a write
        return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and bool(set(mode.value) & set("wax+"))
    if name in ("to_csv", "to_json", "to_parquet"):  # without a path they return the text
        return bool(call.args) or any(k.arg in ("path", "path_or_buf") for k in call.keywords)
    owner = call.func.value.id if isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name) else None
    if name in ("copy", "copy2", "copyfile", "copytree", "copyfileobj"):
        return owner == "shutil"  # not DataFrame.copy()
    if name == "dump":
        return owner in ("json", "pickle", "yaml", "torch", "joblib")
    return name in _WRITE_METHODS


def test_every_output_is_written_atomically() -> None:
    """No function of sdl/ or stages/ writes a file except through sdl.safety.atomic's atomic writers,
    a temporary sibling renamed with os.replace, or an in-memory buffer (checked by hand above)."""
    offenders = []
    for path in sorted([*REPO_ROOT.glob("sdl/**/*.py"), *REPO_ROOT.glob("stages/*.py")]):
        relative = path.relative_to(REPO_ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            calls = [n for n in ast.walk(function) if isinstance(n, ast.Call)]
            names = {_called_name(c) for c in calls} | {n.attr for n in ast.walk(function) if isinstance(n, ast.Attribute)}
            for call in calls:
                if not _writes(call) or names & _ATOMIC_MARKERS:
                    continue
                if (relative, "*") in ATOMIC_BY_HAND or (relative, function.name) in ATOMIC_BY_HAND:
                    continue
                offenders.append(f"{relative}:{call.lineno} {function.name}: {ast.unparse(call)[:80]}")
    assert not offenders, "non-atomic writes:\n" + "\n".join(offenders)


# --------------------------------------------------------------------------- S3 faults


class _Raw:
    """The raw stream of a fake S3 response."""

    def __init__(self, body: bytes) -> None:
        self.buffer = io.BytesIO(body)

    def read(self, amt: int | None = None, **_: Any) -> bytes:
        return self.buffer.read(amt)

    def stream(self, amt: int = 65536, **_: Any) -> Iterator[bytes]:
        while chunk := self.buffer.read(amt):
            yield chunk

    def close(self) -> None:
        pass


def _error_response(request: Any, status: int, code: str) -> Any:
    from botocore.awsrequest import AWSResponse

    body = f"<Error><Code>{code}</Code><Message>injected {code}</Message></Error>".encode()
    return AWSResponse(request.url, status, {"Content-Type": "application/xml", "Content-Length": str(len(body))}, _Raw(body))


class S3Faults:
    """The outside world failing: the first GetObject requests get ``faults`` in order
    (``(status, code)``, ``"drop"`` for a reset connection, or ``("short", n)`` for a 200 whose
    body stops after n bytes of ``data`` while Content-Length promises all of it)."""

    def __init__(self, client: Any, faults: list[Any], data: bytes = b"") -> None:
        self.client, self.faults, self.data = client, list(faults), data
        self.requests: list[dict[str, str]] = []

    def __call__(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import ConnectionClosedError

        self.requests.append(dict(request.headers.items()))
        if not self.faults:
            return None  # the real (moto) server answers
        fault = self.faults.pop(0)
        if fault == "drop":
            raise ConnectionClosedError(endpoint_url=request.url)
        if fault[0] == "short":
            headers = {"Content-Length": str(len(self.data)), "ETag": '"x"', "Content-Type": "binary/octet-stream"}
            return AWSResponse(request.url, 200, headers, _Raw(self.data[: fault[1]]))
        return _error_response(request, *fault)

    def __enter__(self) -> S3Faults:
        self.client.meta.events.register_first("before-send.s3.GetObject", self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client.meta.events.unregister("before-send.s3.GetObject", self)


@pytest.fixture
def bucket(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> tuple[str, bytes]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    name = f"sdl-{uuid.uuid4().hex[:10]}"
    moto_s3.create_bucket(name)
    data = np.random.default_rng(1).bytes(200_000)
    moto_s3.put(name, "train/img.jpg", data)
    return name, data


def _client(endpoint: str, timeout: float) -> Any:
    from sdl.data.fetch.s3 import s3_client

    return s3_client(endpoint, True, timeout)  # a timeout of its own: a client of its own


FAST = {"backoff": 0.01}


@pytest.mark.parametrize("faults", [
    [(503, "SlowDown"), (503, "SlowDown")],  # throttling
    [(500, "InternalError"), (503, "ServiceUnavailable"), (429, "TooManyRequests")],
    ["drop", "drop"],  # connection reset
    [("short", 70_000)],  # truncated body: resumed with a Range request
], ids=["throttled", "5xx", "connection-drop", "truncated-body"])
def test_s3_faults_are_retried_then_the_file_is_complete(
    moto_s3: MotoS3, bucket: tuple[str, bytes], tmp_path: Path, faults: list[Any]
) -> None:
    name, data = bucket
    timeout = 11.0 + len(faults) + 0.1 * len(str(faults))
    with S3Faults(_client(moto_s3.endpoint_url, timeout), faults, data) as injected:
        dest = fetch_s3(name, "train/img.jpg", tmp_path / "img.jpg", endpoint_url=moto_s3.endpoint_url,
                        timeout=timeout, retries=4, **FAST)
    assert dest.read_bytes() == data and not dest.with_name("img.jpg.partial").exists()
    assert len(injected.requests) == len(faults) + 1  # each fault retried once, then success
    if faults[0][0] == "short":
        assert injected.requests[-1].get("Range") in (f"bytes={faults[0][1]}-", f"bytes={faults[0][1]}-".encode())


def test_s3_persistent_failure_names_the_object_and_keeps_nothing(
    moto_s3: MotoS3, bucket: tuple[str, bytes], tmp_path: Path
) -> None:
    name, _ = bucket
    timeout = 19.5
    with S3Faults(_client(moto_s3.endpoint_url, timeout), [(503, "SlowDown")] * 10) as injected:
        with pytest.raises(FetchError) as caught:
            fetch_s3(name, "train/img.jpg", tmp_path / "img.jpg", endpoint_url=moto_s3.endpoint_url,
                     timeout=timeout, retries=2, **FAST)
    message = str(caught.value)
    assert f"s3://{name}/train/img.jpg" in message and "3 attempts" in message and "SlowDown" in message
    assert len(injected.requests) == 3 and not (tmp_path / "img.jpg").exists()


# --------------------------------------------------------------------------- kill -9, then again


def _start(command: list[str], root: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(command, cwd=root, env=subprocess_env(root, **env), stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _run(command: list[str], root: Path, log: Path, timeout: float = 300, **env: str) -> int:
    process = _start(command, root, log, **env)
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            kill_group(process)


def _slow_images(server: ReplicaHTTPServer, delay: float) -> None:
    """Make the replica answer image requests after ``delay`` s (time to kill mid-download)."""
    from tests.helpers.replicas import _Handler

    class Slow(_Handler):
        def do_GET(self) -> None:
            if self.path.lstrip("/").startswith("flickr/"):
                time.sleep(delay)
            super().do_GET()

    server._server.RequestHandlerClass = Slow


@pytest.mark.slow
def test_download_killed_mid_way_resumes_without_fetching_a_finished_file_twice(
    tmp_path: Path, tiny_params: dict[str, Any]
) -> None:
    from tests.helpers.replicas import write_nus_wide_replica

    served = tmp_path / "served"
    server = ReplicaHTTPServer(served)
    try:
        write_nus_wide_replica(served, server.base_url)  # 30 images: 25 alive, 3 dead URLs, 1 "null"
        _slow_images(server, 0.15)
        params = variant(tiny_params, "download.nus_wide", {
            "kind": "nus_wide", "cache_short_side": 0,
            "options": {"lists": server.url("lists"), "workers": 2, "retries": 1, "backoff": 0.01, "timeout": 10.0},
        })
        root = tmp_path / "work"
        root.mkdir()
        write_params(root, params)
        command = stage_command("download", dataset="nus_wide")
        _, argv = stage_argv("download", "nus_wide")
        images = root / option(argv, "raw") / "images"

        def finished() -> list[Path]:
            return sorted(images.rglob("*.jpg")) if images.is_dir() else []

        process = _start(command, root, tmp_path / "first.log")
        try:
            wait_for(lambda: len(finished()) >= 4, timeout=180, process=process)
        finally:
            kill_group(process)  # SIGKILL mid-download
        done_at_kill = [p.relative_to(images).as_posix() for p in finished()]
        assert 4 <= len(done_at_kill) < 25, "killed too late to test a resume"
        assert not (root / option(argv, "manifest")).exists()

        assert _run(command, root, tmp_path / "second.log") == 0, (tmp_path / "second.log").read_text()[-3000:]
        hits = dict(server.hits)
        for key in done_at_kill:
            assert hits[f"flickr/{key}"] == 1, key  # finished before the kill: never fetched again
        lists = {path: n for path, n in hits.items() if path.startswith("lists/")}
        assert lists and set(lists.values()) == {1}  # the lists too
        report = json.loads((root / option(argv, "report")).read_text())["download"]
        assert report["skipped"] == len(done_at_kill) and report["fetched"] == 25 - len(done_at_kill)
        assert report["images"] == 25 and report["failed"] == 3
        assert not list(images.rglob("*.partial")) and len(finished()) == 25
    finally:
        server.close()


_PAUSE_BEFORE_REPLACE = """
import os, runpy, sys, time
name, marker = sys.argv[1], sys.argv[2]
real = os.replace
def replace(src, dst, *args, **kwargs):
    if os.path.basename(os.fspath(dst)) == name:  # the new file is written, not yet in place
        open(marker, "w").close()
        time.sleep(600)
    return real(src, dst, *args, **kwargs)
os.replace = replace
sys.argv = [sys.argv[3], *sys.argv[4:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_embed_killed_while_updating_its_cache_leaves_the_old_cache(built: Path, tmp_path: Path) -> None:
    from sdl.text.cache import read_cache

    root = copy_built(built, tmp_path / "work")
    module, argv = stage_argv("embed")
    cache = root / (option(argv, "cache") or option(argv, "out"))
    vocabulary = option(argv, "vocabulary")
    if vocabulary is None:
        pytest.skip("the embed stage has no vocabulary file to grow")
    old = cache.read_bytes()
    outputs = {name: (root / option(argv, name)).read_bytes() for name in ("out", "serving") if option(argv, name)}
    with open(root / vocabulary, "a", encoding="utf-8") as handle:
        handle.write("\nkangaroo\n")  # a new tag: the cache is rewritten with its vector

    marker = tmp_path / "paused"
    command = [sys.executable, "-c", _PAUSE_BEFORE_REPLACE, cache.name, str(marker), module, *argv, "--params", "params.yaml"]
    process = _start(command, root, tmp_path / "killed.log")
    try:
        wait_for(marker.exists, timeout=180, process=process)
    finally:
        kill_group(process)  # SIGKILL with the new cache written but not renamed
    assert cache.read_bytes() == old  # the old cache, intact
    read_cache(cache, ["cat", "zebra"])  # and readable
    for name, data in outputs.items():
        assert (root / option(argv, name)).read_bytes() == data, name
    strays = [p.name for p in cache.parent.iterdir() if p.name.startswith(f".{cache.name}.")]
    assert all(s.endswith(".tmp") for s in strays)  # only a hidden temporary, never a half output

    assert _run(stage_command("embed"), root, tmp_path / "again.log") == 0, (tmp_path / "again.log").read_text()[-3000:]
    assert read_cache(cache, ["kangaroo", "cat"]).shape[0] == 2


def _tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


@pytest.mark.slow
def test_train_killed_after_a_checkpoint_resumes_to_the_same_weights(
    built: Path, tmp_path: Path, tiny_params: dict[str, Any]
) -> None:
    import torch

    params = variant(tiny_params, "train.embedded.epochs", 2)
    params["train"]["embedded"].update({"max_steps_per_epoch": 4, "checkpoint_every_steps": 1, "seed": 3})
    _, argv = stage_argv("train")
    command = stage_command("train")
    straight = copy_built(built, tmp_path / "straight", params)
    assert _run(command, straight, tmp_path / "straight.log") == 0, (tmp_path / "straight.log").read_text()[-3000:]

    resumed = copy_built(built, tmp_path / "resumed", params)
    checkpoint = resumed / option(argv, "state") / "checkpoint.pt"
    process = _start(command, resumed, tmp_path / "killed.log")
    try:
        wait_for(checkpoint.exists, timeout=300, process=process, step=0.01)
    finally:
        kill_group(process)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) < (2, 0), "killed after training had finished"
    assert not (resumed / option(argv, "model")).exists()  # no model from the killed run

    log = tmp_path / "resumed.log"
    assert _run(command, resumed, log) == 0, log.read_text()[-3000:]
    assert "resuming from" in log.read_text()
    for name in ("model.safetensors",):
        a, b = _tensors(straight / option(argv, "model") / name), _tensors(resumed / option(argv, "model") / name)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), name
    final_a = torch.load(straight / option(argv, "state") / "checkpoint.pt", map_location="cpu", weights_only=True)
    final_b = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert (final_a["epoch"], final_b["epoch"]) == (2, 2)
    for key, tensor in final_a["model"].items():
        assert torch.equal(tensor, final_b["model"][key]), key  # the last weights, not only the best
    assert len(final_a["history"]) == len(final_b["history"]) == 2
    for row_a, row_b in zip(final_a["history"], final_b["history"], strict=True):
        validation = sorted(k for k in row_a if k.startswith("val."))
        assert validation and [row_a[k] for k in validation] == [row_b[k] for k in validation]
    # (train_loss of the interrupted epoch is not compared: sdl.training.loop averages it over the
    # steps run since the resume only; see the report of this test suite)


# --------------------------------------------------------------------------- the MLflow store goes away


@pytest.mark.slow
def test_register_with_the_tracking_server_down_fails_clearly_then_registers_once(
    built: Path, tmp_path: Path
) -> None:
    """`register` against a tracking server that is down: a non-zero exit naming the server and
    no version; with the server back, the next run registers exactly one complete version."""
    from sdl.mlops import tracking

    root = copy_built(built, tmp_path / "work")
    for stage in ("train", "evaluate"):  # the model and eval.json, with the local store
        assert run_stage(stage, root) == 0, stage
    _, argv = stage_argv("register")
    model_dir, out = root / option(argv, "model"), root / option(argv, "out")
    server = MlflowServer(tmp_path / "server", free_port())
    url = server.start()
    try:
        with pytest.MonkeyPatch.context() as patch:  # the model's run, on the server
            patch.setenv("MLFLOW_TRACKING_URI", url)
            patch.setenv("MLFLOW_REGISTRY_URI", url)
            run_id = tracking.start_run("embedded", "train", {"dataset": "embedded"}, {})
            tracking.set_run_status(run_id)
            tracking.write_run_file(model_dir, run_id, "embedded")
    finally:
        server.stop()

    env = {"MLFLOW_TRACKING_URI": url, "MLFLOW_REGISTRY_URI": url}  # MLflow's own retry settings
    log = tmp_path / "down.log"
    started = time.monotonic()
    status = _run(stage_command("register"), root, log, timeout=300, **env)
    text = log.read_text()
    assert status != 0, text[-3000:]
    assert time.monotonic() - started < 60  # fails at once, not after minutes of retries
    last = text.strip().splitlines()[-1]
    assert f"127.0.0.1:{server.port}" in last and "unavailable" in last and "nothing was" in last, last
    assert not out.exists()  # nothing recorded as registered

    server.start()
    try:
        log = tmp_path / "back.log"
        assert _run(stage_command("register"), root, log, timeout=300, **env) == 0, log.read_text()[-3000:]
        registered = json.loads(out.read_text())
        assert registered["version"] == 1 and "champion" in registered["aliases"]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", url)
            patch.setenv("MLFLOW_REGISTRY_URI", url)
            versions = list(tracking.iter_registered_versions(registered["name"]))
        assert [int(v.version) for v in versions] == [1]  # exactly one, and complete
        assert versions[0].tags.get("sdl.registration") == "complete" and versions[0].run_id == run_id
    finally:
        server.stop()


def test_an_unreachable_tracking_server_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from sdl.mlops import tracking

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    uri = f"http://ci:hunter2-SENTINEL@127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(tracking.TrackingUnavailable) as caught:
        tracking.check_reachable(uri, attempts=2, timeout=2)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert f"http://***@127.0.0.1:{port}" in message and "SENTINEL" not in message and "nothing was" in message
    with socket.socket() as listening:  # something answers: no error
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        tracking.check_reachable(f"http://127.0.0.1:{listening.getsockname()[1]}", attempts=1)
    tracking.check_reachable("sqlite:///nowhere/mlflow.db")  # only servers are checked


# --------------------------------------------------------------------------- two pipelines at once


@pytest.mark.slow
def test_a_second_dvc_repro_on_the_same_repo_fails_fast_with_a_clear_message(
    tmp_path: Path, tiny_params: dict[str, Any]
) -> None:
    from tests.helpers.repo import copy_repository, pipeline_env

    root = copy_repository(tmp_path / "repo", tiny_params)
    env = {**pipeline_env(root), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "first.log"
    with open(log, "wb") as handle:
        first = subprocess.Popen([str(VENV_BIN / "dvc"), "repro"], cwd=root, env=env, stdout=handle,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "Running stage" in log.read_text(), timeout=120, process=first, step=0.1)
        started = time.monotonic()
        second = subprocess.run([str(VENV_BIN / "dvc"), "repro"], cwd=root, env=env, capture_output=True,
                                text=True, timeout=120)
        elapsed = time.monotonic() - started
        assert first.poll() is None, "the first run ended before the second started"
    finally:
        kill_group(first, signal.SIGTERM)
    output = second.stdout + second.stderr
    assert second.returncode != 0 and elapsed < 60, output
    # DVC refuses: the repo lock, or the stage's outputs locked by the first run (named by PID)
    assert "Unable to acquire lock" in output or (f"(PID {first.pid})" in output and "is busy" in output), output
    assert "Running stage" not in output  # the second run ran nothing
