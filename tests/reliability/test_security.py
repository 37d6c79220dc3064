"""Security: nothing from outside runs code when read, credentials never leak, public
buckets are read anonymously.

- a scan of the source tree: no unpickling outside sdl/safety/safe_pickle.py, every torch.load with
  weights_only=True, np.load never with allow_pickle=True, yaml only with safe loaders, no
  extractall (archives go through sdl.data.fetch.core.safe_extract);
- credentials in the environment and in params (a URL with user:password, a token in a
  query, an api_key) appear in no log line, no MLflow param or tag of a training run, no
  eval.json, model folder or run artifact;
- unsigned S3 requests carry no Authorization header even with credentials in the
  environment.

(The restricted unpickler and the archive checks themselves are tested in
tests/data/test_embedded.py, tests/data/test_fetch.py and tests/data/test_open_images.py.)
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest

from sdl.data.fetch.errors import FetchError
from sdl.data.fetch.http import fetch_url
from sdl.data.fetch.jobs import FetchJob, fetch_many
from sdl.data.fetch.s3 import fetch_s3, s3_client
from sdl.mlops import tracking
from sdl.safety.redaction import MASK, is_secret_key, redact, redact_mapping
from sdl.safety.safe_pickle import UnsafePickleError, safe_loads
from tests.helpers.replicas import free_port
from tests.helpers.stages import (
    REPO_ROOT,
    copy_built,
    option,
    run_stage,
    stage_argv,
    store_uri,
    variant,
)

SOURCE_DIRS = ("sdl", "stages", "pipelines")


def _source_files() -> list[tuple[str, ast.Module]]:
    files = []
    for folder in SOURCE_DIRS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            files.append((path.relative_to(REPO_ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))))
    return files


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


# Calls that run code from the data they read, and where each is allowed (and why).
UNPICKLING = {"pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "dill.load", "dill.loads",
              "cloudpickle.load", "cloudpickle.loads", "joblib.load", "pd.read_pickle", "pandas.read_pickle",
              "shelve.open", "marshal.load", "marshal.loads", "yaml.unsafe_load", "yaml.full_load"}
ALLOWED = {
    ("sdl/safety/safe_pickle.py", "pickle.Unpickler"): "the restricted unpickler (numpy arrays and plain containers only)",
    ("sdl/mlops/pyfunc.py", "mlflow.pyfunc.load_model"): (
        "`sdl tag` (load_pyfunc): a model of the project's own registry, logged as code, not a pickle (see SECURITY.md)"
    ),
}


def test_nothing_from_outside_is_unpickled_or_loaded_with_code_execution() -> None:
    problems = []
    for relative, tree in _source_files():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):  # subclassing the unpickler
                for base in node.bases:
                    if _dotted(base) in UNPICKLING and (relative, _dotted(base)) not in ALLOWED:
                        problems.append(f"{relative}:{node.lineno} class {node.name}({_dotted(base)})")
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            where = f"{relative}:{node.lineno} {ast.unparse(node)[:90]}"
            if name in UNPICKLING and (relative, name) not in ALLOWED:
                problems.append(f"{where}: unpickles")
            elif name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
                problems.append(f"{where}: torch.load without weights_only=True")
            elif name in ("np.load", "numpy.load") and _is_true(_keyword(node, "allow_pickle")):
                problems.append(f"{where}: np.load with allow_pickle=True")
            elif name == "yaml.load":
                loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
                if loader is None or not ("SafeLoader" in _dotted(loader) or _dotted(loader) == "_Yaml12Loader"):
                    problems.append(f"{where}: yaml.load without a safe loader")
            elif name.endswith(".extractall") or name in ("eval", "exec"):
                problems.append(f"{where}: extractall/eval/exec")
            elif name.endswith("pyfunc.load_model") and (relative, "mlflow.pyfunc.load_model") not in ALLOWED:
                problems.append(f"{where}: loads a pickled pyfunc model")
    assert not problems, "\n".join(problems)


def test_the_yaml12_loader_is_a_safe_loader() -> None:
    import yaml

    from sdl.config.typed import _Yaml12Loader

    assert issubclass(_Yaml12Loader, yaml.SafeLoader)


# --------------------------------------------------------------------------- redaction

SECRET = "s3cr3t-Pa55word-SENTINEL"
TOKEN = "tok-SENTINEL-0123456789"


def test_redact_masks_urls_queries_keys_and_secret_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "AWS-SECRET-SENTINEL-xyz")
    assert redact(f"http://user:{SECRET}@127.0.0.1:5000/api") == "http://***@127.0.0.1:5000/api"
    assert redact(f"s3://AKIA:{SECRET}@bucket/key and https://h/x?a=1&token={TOKEN}&b=2") == (
        "s3://***@bucket/key and https://h/x?a=1&token=***&b=2")
    assert redact("https://h/o?X-Amz-Signature=abcdef&X-Amz-Credential=AKIA%2F1&x=1") == (
        "https://h/o?X-Amz-Signature=***&X-Amz-Credential=***&x=1")
    assert redact("failed with key AWS-SECRET-SENTINEL-xyz") == "failed with key ***"
    assert redact("http://host/path/no-secret?page=2") == "http://host/path/no-secret?page=2"
    assert redact(3) == 3
    for key in ("password", "api_key", "apiKey", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_TOKEN", "X-Amz-Signature",
                "aws_access_key_id", "auth"):
        assert is_secret_key(key), key
    for key in ("key", "unsigned", "bucket", "tokenizer_name", "best_metric", "signal", "keywords", "PWD", "OLDPWD"):
        assert not is_secret_key(key), key
    monkeypatch.setenv("PWD", "/some/project")  # the shell's working directory is not a password
    assert redact("sqlite:////some/project/mlflow/mlflow.db") == "sqlite:////some/project/mlflow/mlflow.db"
    params = {"source": {"kind": "text", "url": f"https://u:{SECRET}@m/x", "api_key": "k" * 10, "token": None},
              "options": {"bucket": "b", "key": "images/1.jpg", "unsigned": True}, "list": [f"ftp://a:{SECRET}@h/"]}
    masked = redact_mapping(params)
    assert masked["source"] == {"kind": "text", "url": "https://***@m/x", "api_key": MASK, "token": None}
    assert masked["options"] == params["options"] and masked["list"] == ["ftp://***@h/"]
    assert SECRET not in json.dumps(masked)


def test_fetch_errors_and_logs_never_show_url_credentials(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://user:{SECRET}@127.0.0.1:{free_port()}/data/x.bin"  # nothing listens there
    with pytest.raises(FetchError) as caught:
        fetch_url(url, tmp_path / "x.bin", retries=0, timeout=2)
    assert SECRET not in str(caught.value) and "127.0.0.1" in str(caught.value)
    with caplog.at_level(logging.DEBUG):
        report = fetch_many([FetchJob(name="x", dest=tmp_path / "y.bin", url=url)], workers=1, progress=False,
                            retries=0, timeout=2)
    assert report.failed == 1 and SECRET not in json.dumps(report.as_dict())
    assert SECRET not in caplog.text


def test_run_file_and_registered_source_config_have_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sdl.mlops.model_logging import source_config

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"https://ci:{TOKEN}@mlflow.example.org")
    tracking.write_run_file(tmp_path, "abc", "embedded")
    text = (tmp_path / tracking.RUN_FILE).read_text()
    assert TOKEN not in text and "https://***@mlflow.example.org" in text
    config = source_config({"kind": "fasttext", "url": f"https://u:{SECRET}@mirror/cc.bin.gz", "path": "x.bin"})
    assert SECRET not in json.dumps(config)


# --------------------------------------------------------------------------- a training run with secrets around

ENV_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIASENTINEL00000000",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-SENTINEL-bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLE-SESSION-SENTINEL",
    "MLFLOW_TRACKING_TOKEN": "mlflow-token-SENTINEL-42",
    "HF_TOKEN": "hf_SENTINELtokenvalue0000",
}
PARAM_SECRETS = {"url-password": "UrlPassword-SENTINEL-7", "query-token": "QueryToken-SENTINEL-8",
                 "api-key": "ApiKey-SENTINEL-9"}


@pytest.fixture(scope="module")
def secret_run(built: Path, tmp_path_factory: pytest.TempPathFactory, tiny_params: dict[str, Any]) -> dict[str, Any]:
    """train + evaluate with credentials in the environment and in params.yaml; everything
    they logged and wrote."""
    source = {
        "kind": tiny_params["embed"]["embedded"]["source"]["kind"],
        "url": f"https://reader:{PARAM_SECRETS['url-password']}@mirror.example.org/glove.txt.gz"
               f"?token={PARAM_SECRETS['query-token']}",
        "api_key": PARAM_SECRETS["api-key"],
    }
    root = copy_built(built, tmp_path_factory.mktemp("secrets") / "work", variant(tiny_params, "embed.embedded.source", source))
    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(output), contextlib.redirect_stdout(output):
        for name, value in ENV_SECRETS.items():
            patch.setenv(name, value)
        for stage in ("train", "evaluate"):
            assert run_stage(stage, root) == 0, stage
        logging.getLogger().handlers.clear()  # setup_logging bound a handler to the captured stream
    return {"root": root, "log": output.getvalue()}


def _all_secrets() -> list[str]:
    return [*ENV_SECRETS.values(), *PARAM_SECRETS.values()]


def test_no_secret_in_the_logs(secret_run: dict[str, Any]) -> None:
    log = secret_run["log"]
    assert "MLflow run" in log  # the stages really logged here
    leaked = [s for s in _all_secrets() if s in log]
    assert not leaked, leaked


def test_no_secret_in_the_mlflow_run(secret_run: dict[str, Any]) -> None:
    import mlflow

    root = secret_run["root"]
    _, argv = stage_argv("train")
    run_id = tracking.read_run_id(root / option(argv, "model"))
    client = mlflow.MlflowClient(tracking_uri=store_uri(root))
    run = client.get_run(run_id)
    logged = json.dumps({"params": run.data.params, "tags": run.data.tags, "metrics": sorted(run.data.metrics)})
    leaked = [s for s in _all_secrets() if s in logged]
    assert not leaked, leaked
    # the params are logged, masked (not dropped)
    assert run.data.params["embed.source.api_key"] == MASK
    assert run.data.params["embed.source.url"].startswith("https://***@mirror.example.org/glove.txt.gz?token=***")
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    for file in artifacts.rglob("*"):
        if file.is_file() and file.stat().st_size < 5_000_000:
            content = file.read_bytes()
            assert not [s for s in _all_secrets() if s.encode() in content], file


def test_no_secret_in_eval_json_metrics_or_the_model_folder(secret_run: dict[str, Any]) -> None:
    root = secret_run["root"]
    _, train = stage_argv("train")
    _, evaluate = stage_argv("evaluate")
    files = [root / option(evaluate, "metrics"), root / option(train, "metrics"), root / option(train, "history")]
    files += [p for p in (root / option(train, "model")).rglob("*") if p.is_file()]
    files += [p for p in (root / option(evaluate, "plots")).rglob("*") if p.is_file()]
    assert (root / option(evaluate, "metrics")).is_file()
    for file in files:
        content = file.read_bytes()
        assert not [s for s in _all_secrets() if s.encode() in content], file


# --------------------------------------------------------------------------- public buckets, unsigned


def test_public_buckets_are_read_unsigned(moto_s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV_SECRETS.items():  # credentials around, as on a developer's machine
        monkeypatch.setenv(name, value)
    bucket = f"sdl-{uuid.uuid4().hex[:10]}"
    moto_s3.create_bucket(bucket)
    moto_s3.put(bucket, "train/a.jpg", b"public bytes" * 100)
    seen: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        seen.append({k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
                    | {"url": request.url})

    timeout = 23.25  # a client of its own (clients are cached per endpoint, signing and timeout)
    client = s3_client(moto_s3.endpoint_url, True, timeout)
    client.meta.events.register("before-send.s3", record)
    try:
        fetch_s3(bucket, "train/a.jpg", tmp_path / "a.jpg", endpoint_url=moto_s3.endpoint_url, timeout=timeout,
                 check_remote_size=True)
    finally:
        client.meta.events.unregister("before-send.s3", record)
    assert (tmp_path / "a.jpg").read_bytes() == b"public bytes" * 100
    assert len(seen) == 2  # HEAD (size) and GET
    for headers in seen:
        assert "authorization" not in headers and "x-amz-security-token" not in headers
        assert "X-Amz-Credential" not in headers["url"] and "Signature" not in headers["url"]
        assert not [s for s in ENV_SECRETS.values() if s in json.dumps(headers)]

    signed: list[dict[str, Any]] = []  # the control: a signing client does send credentials
    control = s3_client(moto_s3.endpoint_url, False, timeout + 0.5)
    control.meta.events.register("before-send.s3", lambda request, **_: signed.append(dict(request.headers.items())))
    control.head_object(Bucket=bucket, Key="train/a.jpg")
    assert "Authorization" in signed[0]


def test_pickles_refused_unless_plain_data() -> None:
    class Exploit:
        def __reduce__(self):  # what a hostile pickle does: call os.system on load
            return (os.system, ("echo pwned",))

    with pytest.raises(UnsafePickleError, match="system"):
        safe_loads(pickle.dumps(Exploit()))
    assert safe_loads(pickle.dumps({"train": {0, 1}, "test": [2]}, protocol=2)) == {"train": {0, 1}, "test": [2]}
