"""Fixtures of the evaluation tests: the published references, read once."""

from __future__ import annotations

import pytest

from sdl.eval import references as refs
from tests.helpers.results import REFERENCES


@pytest.fixture(scope="module")
def references() -> refs.References:
    return refs.load_references(REFERENCES)
