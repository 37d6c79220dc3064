"""The trained network as a LoggedModel, found again in any store: the one ``run.json`` names,
or (after ``dvc pull`` into a clone whose store never saw the run) logged anew from the folder
in a run of its own, once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdl.mlops import logged_models, tracking
from tests.helpers.registry_project import Project
from tests.helpers.stages import pin_store


def _vocabulary(project: Project) -> logged_models.LoggedVocabulary:
    return logged_models.vocabulary_of(project.tags.all_tags, project.vectors, project.tags.unseen)


def test_the_model_of_run_json_in_its_own_store(project: Project) -> None:
    record = json.loads((project.model_dir / "run.json").read_text())
    tracked = logged_models.resolve(project.model_dir, "embedded", _vocabulary(project))
    assert (tracked.run_id, tracked.model_id, tracked.imported) == (record["run_id"], record["model_id"], False)
    model = tracking.client().get_logged_model(tracked.model_id)
    assert model.tags[logged_models.MODEL_DIGEST_TAG] == logged_models.model_digest(project.model_dir)


def test_a_store_without_the_run_gets_the_model_once(project: Project, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    record = json.loads((project.model_dir / "run.json").read_text())
    pin_store(monkeypatch, tmp_path)  # another clone's empty store
    first = logged_models.resolve(project.model_dir, "embedded", _vocabulary(project))
    assert first.imported and first.run_id != record["run_id"] and first.model_id != record["model_id"]
    client = tracking.client()
    run = client.get_run(first.run_id)
    assert run.data.tags[logged_models.ORIGINAL_RUN_TAG] == record["run_id"]
    assert run.data.tags[logged_models.ORIGINAL_MODEL_TAG] == record["model_id"]
    assert run.data.tags["data_version"] == json.loads((project.model_dir / "tags.json").read_text())["data_version"]
    files = {f.path for f in client.list_logged_model_artifacts(first.model_id)}
    assert {"model.safetensors", "model.json", "vocabulary.parquet"} <= files
    again = logged_models.resolve(project.model_dir, "embedded", _vocabulary(project))
    assert (again.run_id, again.model_id) == (first.run_id, first.model_id)  # found by digest: no second copy
    runs = client.search_runs([tracking.ensure_experiment("embedded")])
    assert len(runs) == 1
