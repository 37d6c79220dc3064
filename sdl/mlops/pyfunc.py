"""The registered model: an MLflow pyfunc that tags images with any vocabulary.

Artifacts: the model's weights and config, of either family (SDL or Epsilon:
``sdl.models.save_model``, read back by ``sdl.models.load_model``), and the vocabulary it was
registered with (Parquet: tag, vector, unseen). ``predict`` takes images (base64 strings, bytes
or HWC uint8 arrays; server files only where a trusted loader opts in, see
``sdl.mlops.serving_inputs``) and returns, per image, the top-k tags and their scores.
A caller may pass another vocabulary in ``params``: ``tags`` alone (tags of the registered
vocabulary keep their vectors; new ones are embedded with the word-vector source the model was
registered with, ``model_config["wordvec_source"]``, when that source is installed) or ``tags``
with ``vectors`` (a flat list of len(tags) x d numbers, row by row, as MLflow params are 1-D).
Both families rank tags they have never seen through their word vectors, so new tags need no
retraining.
The current vocabulary of a project (``data/<dataset>/vocabulary.parquet``, which the
``embed`` stage rewrites when tags are added) can be used instead of the registered one: the
environment variable ``SDL_VOCABULARY`` where the model runs (read again whenever the file
changes), or ``params={"vocabulary": path}`` for a file under the opted-in ``files_root``.

Input: a DataFrame with an ``image`` column (called directly, also a list or an array of
images); each value a base64 string, raw bytes or an HWC uint8 array. Output: a DataFrame
with, per image, the top-k ``tags``, their ``scores`` and whether each tag was ``unseen`` in
training. A refused request raises ``RequestRejected`` (HTTP 400 from a server).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sdl.mlops.serving_inputs import (
    RequestLimits,
    RequestRejected,
    decode_images,
    vocabulary_file,
)
from sdl.safety.atomic import write_parquet

log = logging.getLogger(__name__)

VOCABULARY_FILE = "vocabulary.parquet"
# model_config keys: the word-vector source spec (JSON, paths absolute) and its name
# (``sdl.text.wordvecs`` fingerprint) that the registered vocabulary was embedded with.
SOURCE_CONFIG = "wordvec_source"
SOURCE_NAME_CONFIG = "wordvec_source_name"
LIVE_VOCABULARY_ENV = "SDL_VOCABULARY"

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


class SDLTagger(_PythonModel):  # type: ignore[misc,valid-type]
    """pyfunc: images -> top-k tags and scores, over the registered or a given vocabulary."""

    def load_context(self, context: Any) -> None:
        from sdl.models import load_model

        # no torch.set_grad_enabled(False) here: that is process-wide and would break training
        # in a process that loads the model; scoring runs under torch.no_grad() instead
        self.model = load_model(context.artifacts["model"])
        self.tags, self.vectors, self.unseen = read_vocabulary(context.artifacts["vocabulary"])
        config = dict(getattr(context, "model_config", None) or {})
        self.source_spec = source_spec_from_config(config)
        self.source_name = config.get(SOURCE_NAME_CONFIG) or None
        self.limits = RequestLimits.from_config(config)

    def vocabulary(self, tags: Sequence[str]) -> tuple[list[str], np.ndarray, dict[str, str]]:
        """Vectors for ``tags``: registered ones as registered, new ones from the word-vector
        source. Returns the tags that have a vector (in order), their vectors and, for the
        others, why not (``{tag: reason}``)."""
        return resolve_vocabulary(tags, self.tags, self.vectors, self.source_spec, self.source_name)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # (MLflow reads these hints: a DataFrame hint means "no type-hint validation", the
        # signature logged with the model does the checking)
        try:
            return self._predict(model_input, params or {})
        except RequestRejected:
            raise
        except Exception as error:  # the caller gets a line, never our stack trace
            log.exception("tagging failed")
            raise RequestRejected(f"the model failed on this request ({type(error).__name__}); "
                                  "the server's log has the details", internal=True) from None

    def _predict(self, model_input: Any, params: dict[str, Any]) -> pd.DataFrame:
        try:
            top_k = int(params.get("top_k", 5))
        except (TypeError, ValueError):
            raise RequestRejected("top_k must be an integer") from None
        tags, vectors, unseen = self.tags, self.vectors, self.unseen
        served = os.environ.get(LIVE_VOCABULARY_ENV)
        if params.get("vocabulary"):
            tags, vectors, unseen = self.live_vocabulary(vocabulary_file(str(params["vocabulary"]), self.limits, served))
        elif served:
            tags, vectors, unseen = self.live_vocabulary(served)
        given = params.get("tags")
        if given is not None and len(given):
            tags, vectors, unseen = self._given_vocabulary([str(t) for t in given], params.get("vectors"))
        top_k = max(1, min(top_k, len(tags)))
        images = decode_images(_input_values(model_input), self.limits)
        scores = self.score(images, vectors)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        tag_array = np.asarray(tags, dtype=object)
        return pd.DataFrame(
            {
                "tags": [tag_array[row].tolist() for row in order],
                "scores": [scores[i, row].astype(float).tolist() for i, row in enumerate(order)],
                "unseen": [np.asarray(unseen)[row].astype(bool).tolist() for row in order],
            }
        )


    def _given_vocabulary(self, tags: list[str], raw_vectors: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The request's own tags: vectors given (flat, row by row) or embedded with the model's source."""
        if len(tags) > self.limits.max_tags:
            raise RequestRejected(f"{len(tags)} tags in one request; at most {self.limits.max_tags}")
        if len(set(tags)) != len(tags):
            raise RequestRejected("tags must not repeat")
        if raw_vectors is None or not len(raw_vectors):
            _, vectors, missing = self.vocabulary(tags)
            if missing:
                # positions, not the tags: an answer repeats nothing of the request, unless the
                # caller is trusted (it opted in to server files)
                named = [repr(t[:40]) if self.limits.files_root is not None else str(tags.index(t) + 1)
                         for t in list(missing)[:10]]
                raise RequestRejected(f"{len(missing)} of the {len(tags)} tags have no word vector (tags "
                                      f"{', '.join(named)}); pass 'vectors' for them")
        else:
            d = self.vectors.shape[1]
            vectors = np.asarray(raw_vectors, dtype=np.float32)
            if vectors.ndim == 1 and vectors.size == len(tags) * d:
                vectors = vectors.reshape(len(tags), d)
            if vectors.shape != (len(tags), d):
                raise RequestRejected(f"vectors must be ({len(tags)}, {d}) or {len(tags) * d} numbers, got {vectors.shape}")
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
                raise RequestRejected("vectors must be finite and non-zero")
            vectors = vectors / norms
        known = set(np.asarray(self.tags)[~self.unseen])
        return tags, vectors, np.array([t not in known for t in tags])

    def live_vocabulary(self, path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
        """A project's current vocabulary file (tag, vector, unseen), re-read when it changes."""
        stat = os.stat(path)
        key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
        if getattr(self, "_live_key", None) != key:
            tags, vectors, unseen = read_vocabulary(path)
            if vectors.shape[1] != self.vectors.shape[1]:
                raise ValueError(f"{path}: vectors have dim {vectors.shape[1]}, the model {self.vectors.shape[1]}")
            self._live_key, self._live = key, (tags, vectors, unseen)
        return self._live

    def score(self, images: Sequence[Any], vectors: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Scores (N, C) of decoded images (PIL) for tag vectors (C, d), as the model ranks them."""
        import torch

        from sdl.data.dataset import prepare_image
        from sdl.models.scoring import score_tags

        config = self.model.config
        tag_vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = torch.stack([prepare_image(img, config.image_size, config.mean, config.std)
                                 for img in images[start : start + batch_size]])
            with torch.no_grad():
                chunks.append(score_tags(self.model(batch), tag_vectors, config.reduction).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, len(tag_vectors)), np.float32)


def source_spec_from_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """The word-vector source spec stored in a model's config (a dict or its JSON), or None."""
    spec = config.get(SOURCE_CONFIG)
    if isinstance(spec, str) and spec:
        spec = json.loads(spec)
    return dict(spec) if isinstance(spec, dict) else None


def resolve_vocabulary(
    tags: Sequence[str], known_tags: Sequence[str], known_vectors: np.ndarray,
    source_spec: dict[str, Any] | None, source_name: str | None = None,
) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Vectors for ``tags``: a known tag keeps its registered vector; the others are embedded
    with the word-vector source (``sdl.text.wordvecs``). Returns ``(tags with a vector, their
    vectors (n, d), {tag without one: reason})``, so that callers can go on with the rest."""
    index = {t: i for i, t in enumerate(known_tags)}
    d = int(np.asarray(known_vectors).shape[1])
    new = [t for t in tags if t not in index]
    found: dict[str, np.ndarray] = {}
    missing: dict[str, str] = {}
    if new:
        if source_spec is None:
            missing.update({t: "not in the model's vocabulary, and the model records no word-vector source" for t in new})
        else:
            from sdl.text.embedding import MissingWordVectorError, embed_tags

            try:
                source = _open_source_cached(source_spec)
                if source_name and source.name != source_name:
                    raise ValueError(
                        f"the word-vector source is {source.name!r}, the model was registered with {source_name!r}"
                    )
                if source.dim != d:
                    raise ValueError(f"the word-vector source has dim {source.dim}, the model {d}")
            except (OSError, ValueError, ImportError) as error:
                missing.update({t: f"not in the model's vocabulary; word-vector source unusable: {error}" for t in new})
            else:
                pending = list(new)
                while pending:
                    try:
                        vectors = embed_tags(pending, source)
                    except MissingWordVectorError as error:
                        bad = [t for t in error.tags if t in pending] or list(pending)
                        for tag in bad:
                            missing[tag] = f"no word vector in {source.name!r}"
                        pending = [t for t in pending if t not in set(bad)]
                        continue
                    found.update(zip(pending, vectors, strict=True))
                    break
    kept = [t for t in tags if t not in missing]
    rows = [np.asarray(known_vectors[index[t]], np.float32) if t in index else found[t] for t in kept]
    matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, d), np.float32)
    return kept, matrix, missing


_SOURCES: dict[str, Any] = {}


def _open_source_cached(spec: dict[str, Any]) -> Any:
    """Open a word-vector source once per process (a vocabulary index can take seconds)."""
    from sdl.text.sources import open_source

    key = json.dumps(spec, sort_keys=True)
    if key not in _SOURCES:
        _SOURCES[key] = open_source(spec)
    return _SOURCES[key]


def png_base64(image: Any = None, max_side: int = 64) -> str:
    """A small, self-contained PNG as base64 text: ``image`` (a path or PIL image) shrunk to
    ``max_side``, or a synthetic gradient when None. For input examples and REST requests."""
    from PIL import Image

    from sdl.data.images import load_rgb

    if image is None:
        ramp = np.linspace(0, 255, max_side, dtype=np.uint8)
        pixels = np.stack([np.tile(ramp, (max_side, 1)), np.tile(ramp[:, None], (1, max_side)),
                           np.full((max_side, max_side), 128, np.uint8)], axis=2)
        picture = Image.fromarray(pixels, "RGB")
    else:
        picture = image if isinstance(image, Image.Image) else load_rgb(str(image))
        picture = picture.copy()
        picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _input_values(model_input: Any) -> list[Any]:
    """The images of a request: a DataFrame's ``image`` column (or its first), a list, an array."""
    if isinstance(model_input, pd.DataFrame):
        column = "image" if "image" in model_input.columns else model_input.columns[0]
        return model_input[column].tolist()
    if isinstance(model_input, np.ndarray) and model_input.dtype != object and model_input.ndim in (3, 4):
        return [model_input] if model_input.ndim == 3 else list(model_input)
    if isinstance(model_input, list | tuple | np.ndarray):
        return list(model_input)
    return [model_input]


def load_pyfunc(uri: str):  # type: ignore[no-untyped-def]
    """The registered tagger at ``uri`` (``models:/<name>@champion``, a run or a folder), from
    the tracking store in force."""
    from sdl.mlops import tracking

    return tracking.configured_mlflow().pyfunc.load_model(uri)
