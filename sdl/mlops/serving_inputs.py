"""What a tagger accepts in a request, and how it refuses the rest.

A served model (``mlflow models serve``, ``sdl serve``) faces callers it does not trust, so by
default a request may carry images only as base64 text, raw bytes or HWC uint8 arrays: a
string is never taken for a path on the server, and a request's ``vocabulary`` param cannot
name a server file, so a caller cannot read or probe the server's files. A trusted process (the
CLI, a notebook) may opt in to server files under one folder: ``files_root`` in the model
config (``mlflow.pyfunc.load_model(uri, model_config={"files_root": ...})``, or at serve time
``MLFLOW_PYFUNC_INFERENCE_CONFIG``), or the environment variable ``SDL_FILES_ROOT``.

Each request is capped: images per request, bytes per image, decoded pixels per image (checked
from the header, before decoding), tags per request. A refused request raises
:class:`RequestRejected`: a short message that names no part of the request's data and carries
no stack trace, which MLflow's scoring server answers with 400 (an internal failure: 500).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdl.data.images import ImageDecodeError, load_rgb

log = logging.getLogger(__name__)

FILES_ROOT_ENV = "SDL_FILES_ROOT"
# the model-config keys (logged with every registered model, so that a loader may override them)
DEFAULT_LIMITS: dict[str, Any] = {
    "files_root": "", "max_images": 64, "max_image_bytes": 16 << 20, "max_pixels": 40_000_000, "max_tags": 20_000,
}

try:  # MLflow's scoring server answers an MlflowException with its own status code and message
    from mlflow.exceptions import MlflowException as _Base
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
except ImportError:  # pragma: no cover (sdl without mlflow)
    _Base, INTERNAL_ERROR, INVALID_PARAMETER_VALUE = ValueError, 0, 0  # type: ignore[misc,assignment]


class RequestRejected(_Base):  # type: ignore[misc,valid-type]
    """A refused request: 400 with this short message (``internal``: 500, details in the log).

    MLflow's scoring server prefixes the message of an MlflowException raised by a model with
    the request's data (``Failed to predict data '<the input>'``); the message here cannot be
    reassigned, so the answer says only what is written here."""

    def __init__(self, message: str, internal: bool = False) -> None:
        self._short = message[:300]
        if _Base is ValueError:
            super().__init__(self._short)
        else:
            super().__init__(self._short, error_code=INTERNAL_ERROR if internal else INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:  # type: ignore[override]
        return self._short

    @message.setter
    def message(self, value: str) -> None:
        """Ignored: the server's rewrite would echo the request."""

    def __str__(self) -> str:
        return self._short


@dataclass(frozen=True)
class RequestLimits:
    """The caps of one request and the one folder of server files a request may name (None: none)."""

    files_root: Path | None = None
    max_images: int = DEFAULT_LIMITS["max_images"]
    max_image_bytes: int = DEFAULT_LIMITS["max_image_bytes"]
    max_pixels: int = DEFAULT_LIMITS["max_pixels"]
    max_tags: int = DEFAULT_LIMITS["max_tags"]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RequestLimits:
        root = str(config.get("files_root") or os.environ.get(FILES_ROOT_ENV) or "")
        return cls(
            files_root=Path(root).expanduser().resolve() if root else None,
            **{k: int(config.get(k) or DEFAULT_LIMITS[k]) for k in ("max_images", "max_image_bytes", "max_pixels", "max_tags")},
        )

    def server_file(self, text: str) -> Path | None:
        """The server file ``text`` names, when it lies inside ``files_root`` (symlinks resolved);
        None otherwise, without touching the file system outside the root."""
        if self.files_root is None or "\0" in text or len(text) > 4096:
            return None
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.files_root / path
        resolved = path.resolve()
        return resolved if resolved.is_relative_to(self.files_root) and resolved.is_file() else None


def decode_image(value: Any, limits: RequestLimits, number: int) -> Any:
    """A PIL RGB image from base64 text, bytes, an HWC uint8 array, or (opted in) a server file."""
    from PIL import Image

    where = f"image {number}"
    if isinstance(value, np.ndarray):
        if value.ndim not in (2, 3) or value.size > 3 * limits.max_pixels or (value.ndim == 3 and value.shape[2] not in (1, 3, 4)):
            raise RequestRejected(f"{where}: an array must be HxW or HxWx(1|3|4) with at most {limits.max_pixels:,} pixels")
        array = value if value.ndim == 3 else value[..., None]
        array = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array[..., :3]
        return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, str):
        path = limits.server_file(value)
        if path is not None:
            return _load(path, limits, where)
        if len(value) > limits.max_image_bytes * 4 // 3 + 4:
            raise RequestRejected(f"{where}: more than {limits.max_image_bytes:,} bytes")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            hint = "" if limits.files_root is None else f", nor a file under {limits.files_root}"
            raise RequestRejected(f"{where}: not base64 image bytes{hint} (a served model reads no server paths)") from None
    else:
        raise RequestRejected(f"{where}: unsupported input of type {type(value).__name__}; send base64 text, bytes or an array")
    if len(data) > limits.max_image_bytes:
        raise RequestRejected(f"{where}: more than {limits.max_image_bytes:,} bytes")
    return _load(data, limits, where)


def _load(source: bytes | Path, limits: RequestLimits, where: str) -> Any:
    try:
        return load_rgb(source, max_pixels=limits.max_pixels)
    except ImageDecodeError as error:
        reason = str(error).split(": ", 1)[-1]  # without the file name: the caller named it
        raise RequestRejected(f"{where}: {reason}") from None


def decode_images(values: Sequence[Any], limits: RequestLimits) -> list[Any]:
    if not len(values):
        raise RequestRejected("no images given")
    if len(values) > limits.max_images:
        raise RequestRejected(f"{len(values)} images in one request; at most {limits.max_images}")
    return [decode_image(value, limits, number) for number, value in enumerate(values, start=1)]


def vocabulary_file(value: str, limits: RequestLimits, served: str | None) -> Path:
    """The file a request's ``vocabulary`` param may name: the server's own (``SDL_VOCABULARY``)
    or one inside ``files_root``."""
    if served and value == served:
        return Path(served)
    path = limits.server_file(value)
    if path is None:
        raise RequestRejected("the 'vocabulary' param cannot name a file on this server; the server's vocabulary is "
                              "set where it runs (SDL_VOCABULARY), or pass 'tags' (and 'vectors')")
    return path
