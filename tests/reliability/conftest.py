"""Fixtures of the reliability tests (bad inputs, faults, security).

- ``built`` (session): the tiny embedded dataset taken through download .. embed, in process,
  once; tests copy it (``tests.helpers.stages.copy_built``) before changing anything.
- ``moto_s3`` (session): a moto S3 server on 127.0.0.1 (tests/helpers/replicas.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.stages import THROUGH_EMBED, make_workdir, run_stage


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_params: dict[str, Any]) -> Path:
    """The tiny embedded dataset through download .. embed (in process, once per session)."""
    root = make_workdir(tmp_path_factory.mktemp("reliability_built"), tiny_params)
    for stage in THROUGH_EMBED:
        assert run_stage(stage, root) == 0, stage
    return root

