"""The registered model: an MLflow pyfunc that tags images with any vocabulary.

Artifacts: the SDL weights and config (``sdl.models.save_model``) and the vocabulary it was
registered with (Parquet: tag, vector, unseen). ``predict`` takes images (paths, bytes,
base64 strings or HWC uint8 arrays) and returns, per image, the top-k tags and their scores.
A caller may pass another vocabulary (tags and vectors) in ``params``: SDL ranks tags it has
never seen through their word vectors, so new tags need no retraining.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sdl.io import write_parquet

VOCABULARY_FILE = "vocabulary.parquet"

try:  # the class must subclass PythonModel when MLflow is there; sdl itself does not need it
    from mlflow.pyfunc import PythonModel as _PythonModel
except ImportError:  # pragma: no cover
    _PythonModel = object  # type: ignore[assignment,misc]


def write_vocabulary(path: str | Path, tags: Sequence[str], vectors: np.ndarray, unseen: Sequence[str]) -> None:
    """Save the vocabulary a model is registered with (tag, vector, unseen flag)."""
    unseen_set = set(unseen)
    table = pa.table(
        {
            "tag": pa.array(list(tags), pa.string()),
            "vector": pa.array([list(map(float, v)) for v in np.asarray(vectors, np.float32)], pa.list_(pa.float32())),
            "unseen": pa.array([t in unseen_set for t in tags], pa.bool_()),
        }
    )
    write_parquet(path, table)


def read_vocabulary(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Tags, vectors (C, d) float32 and the unseen mask of a saved vocabulary."""
    frame = pd.read_parquet(path)
    vectors = np.asarray(np.stack(frame["vector"].to_numpy()), dtype=np.float32)
    return frame["tag"].tolist(), vectors, frame["unseen"].to_numpy(dtype=bool)


def decode_image_input(value: Any):  # type: ignore[no-untyped-def]
    """A PIL RGB image from a path, bytes, a base64 string or an HWC uint8 array."""
    from PIL import Image

    from sdl.data.images import ImageDecodeError, load_rgb

    if isinstance(value, np.ndarray):
        array = value if value.ndim == 3 else np.repeat(value[..., None], 3, axis=2)
        return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")
    if isinstance(value, bytes | bytearray):
        return load_rgb(bytes(value))
    if isinstance(value, str):
        if os.path.exists(value):
            return load_rgb(value)
        try:
            return load_rgb(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise ImageDecodeError(f"{value[:80]!r}: neither an existing file nor base64 image bytes") from None
    raise ImageDecodeError(f"unsupported image input of type {type(value).__name__}")


class SDLTagger(_PythonModel):  # type: ignore[misc,valid-type]
    """pyfunc: images -> top-k tags and scores, over the registered or a given vocabulary."""

    def load_context(self, context: Any) -> None:
        import torch

        from sdl.models import load_model

        torch.set_grad_enabled(False)
        self.model = load_model(context.artifacts["model"])
        self.tags, self.vectors, self.unseen = read_vocabulary(context.artifacts["vocabulary"])

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # (MLflow reads hints)
        import torch

        from sdl.data.dataset import to_tensor
        from sdl.scoring import score_tags

        params = params or {}
        top_k = int(params.get("top_k", 5))
        tags, vectors, unseen = self.tags, self.vectors, self.unseen
        if params.get("tags"):
            tags = list(params["tags"])
            if params.get("vectors") is None:
                missing = sorted(set(tags) - set(self.tags))
                if missing:
                    raise ValueError(f"tags without a word vector: {missing}; pass 'vectors' for them")
                index = {t: i for i, t in enumerate(self.tags)}
                vectors = self.vectors[[index[t] for t in tags]]
                unseen = self.unseen[[index[t] for t in tags]]
            else:
                vectors = np.asarray(params["vectors"], dtype=np.float32)
                if vectors.shape != (len(tags), self.vectors.shape[1]):
                    raise ValueError(f"vectors must be ({len(tags)}, {self.vectors.shape[1]}), got {vectors.shape}")
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
                    raise ValueError("vectors must be finite and non-zero")
                vectors = vectors / norms
                known = set(np.asarray(self.tags)[~self.unseen])
                unseen = np.array([t not in known for t in tags])
        top_k = max(1, min(top_k, len(tags)))
        images = _images_from_input(model_input)
        config = self.model.config
        batch = torch.stack(
            [to_tensor(img.resize((config.image_size, config.image_size)), config.mean, config.std) for img in images]
        )
        scores = score_tags(self.model(batch), torch.as_tensor(vectors), config.reduction).numpy()
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        tag_array = np.asarray(tags, dtype=object)
        return pd.DataFrame(
            {
                "tags": [tag_array[row].tolist() for row in order],
                "scores": [scores[i, row].astype(float).tolist() for i, row in enumerate(order)],
                "unseen": [np.asarray(unseen)[row].astype(bool).tolist() for row in order],
            }
        )


def _images_from_input(model_input: Any) -> list[Any]:
    if isinstance(model_input, pd.DataFrame):
        column = "image" if "image" in model_input.columns else model_input.columns[0]
        values = model_input[column].tolist()
    elif isinstance(model_input, np.ndarray) and model_input.dtype != object and model_input.ndim in (3, 4):
        values = [model_input] if model_input.ndim == 3 else list(model_input)
    elif isinstance(model_input, list | tuple | np.ndarray):
        values = list(model_input)
    else:
        values = [model_input]
    if not values:
        raise ValueError("no images given")
    return [decode_image_input(v) for v in values]
