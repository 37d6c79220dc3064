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


def _requirements() -> list[str]:
    import importlib.metadata as md

    names = ["torch", "timm", "safetensors", "numpy", "pandas", "pyarrow", "pillow"]
    return [f"{n}=={md.version(n).split('+')[0]}" for n in names]


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
) -> str:
    """Log the pyfunc tagger (weights + config, vocabulary, the ``sdl`` code, signature and a
    self-contained input example: a small base64 PNG) into ``run_id``; return its model URI."""
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
                pip_requirements=_requirements(),
                signature=_signature(),
                input_example=example,
                # the request limits are logged so that a loader may override them (MLflow only
                # lets load_model / MLFLOW_PYFUNC_INFERENCE_CONFIG change keys the model has)
                model_config={**DEFAULT_LIMITS, **source_config(wordvec_source, wordvec_source_name)},
                metadata={"vocabulary_size": len(tags), "unseen_tags": len(unseen),
                          "wordvec_source": source_config(wordvec_source).get(SOURCE_CONFIG)},
            )
        finally:
            mlflow.end_run()  # FINISHED: a failed log_model does not fail the training run
    return str(info.model_uri)
