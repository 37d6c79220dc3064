"""Registering SDL models in the MLflow model registry (aliases, not legacy stages)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdl import tracking
from sdl.serving import VOCABULARY_FILE, SDLTagger, write_vocabulary

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Registered:
    """A registered version and the aliases it holds."""

    name: str
    version: int
    aliases: list[str]
    run_id: str


def _requirements() -> list[str]:
    import importlib.metadata as md

    names = ["torch", "timm", "safetensors", "numpy", "pandas", "pyarrow", "pillow"]
    return [f"{n}=={md.version(n).split('+')[0]}" for n in names]


def log_tagger(
    run_id: str,
    model_dir: str | Path,
    tags: Sequence[str],
    vectors: np.ndarray,
    unseen: Sequence[str],
    example_image: str | Path | None = None,
    registered_name: str | None = None,
    version_tags: Mapping[str, str] | None = None,
) -> int | None:
    """Log the pyfunc tagger into ``run_id`` and, with ``registered_name``, register a new
    version; return its number. Registration happens only after the model is fully logged,
    so a failure leaves no version behind."""
    mlflow = tracking._mlflow()
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    import sdl

    with tempfile.TemporaryDirectory() as scratch:
        vocabulary_path = Path(scratch) / VOCABULARY_FILE
        write_vocabulary(vocabulary_path, tags, vectors, unseen)
        signature = ModelSignature(
            inputs=Schema([ColSpec("string", "image")]),
            params=ParamSchema([ParamSpec("top_k", "long", 5), ParamSpec("tags", "string", [], shape=(-1,))]),
        )
        example = None
        if example_image is not None:
            import pandas as pd

            example = pd.DataFrame({"image": [str(example_image)]})
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="tagger",
                python_model=SDLTagger(),
                artifacts={"model": str(model_dir), "vocabulary": str(vocabulary_path)},
                code_paths=[str(Path(sdl.__file__).parent)],
                pip_requirements=_requirements(),
                signature=signature,
                input_example=example,
            )
    if registered_name is None:
        return None
    version = mlflow.register_model(info.model_uri, registered_name, tags=dict(version_tags or {}))
    return int(version.version)


def current_alias_version(name: str, alias: str) -> int | None:
    """The version holding ``alias``, or None."""
    client = tracking._mlflow().MlflowClient()
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except Exception:  # MlflowException when the alias or the model does not exist
        return None


def set_alias(name: str, alias: str, version: int) -> None:
    """Point ``alias`` of model ``name`` at ``version``."""
    tracking._mlflow().MlflowClient().set_registered_model_alias(name, alias, str(version))


def register_run_model(
    run_id: str,
    name: str,
    model_dir: str | Path,
    tags: Sequence[str],
    vectors: np.ndarray,
    unseen: Sequence[str],
    example_image: str | Path | None = None,
    version_tags: Mapping[str, str] | None = None,
) -> Registered:
    """Register the run's model as a new version of ``name``; make it champion if none is."""
    version = log_tagger(run_id, model_dir, tags, vectors, unseen, example_image, name, version_tags)
    assert version is not None
    aliases = []
    if current_alias_version(name, CHAMPION) is None:
        set_alias(name, CHAMPION, version)
        aliases.append(CHAMPION)
        log.info("registered %s version %d as %s (there was none)", name, version, CHAMPION)
    else:
        log.info("registered %s version %d", name, version)
    return Registered(name=name, version=version, aliases=aliases, run_id=run_id)
