"""A restricted unpickler for data that only comes as a pickle.

``pickle.load`` runs whatever callables a file names, so a pickle from outside the project
can execute code. Some sources only ship pickles (the Animal-MNIST package, some published
zero-shot split lists); this reader admits only numpy arrays, numpy scalars/dtypes and plain
containers (dict, list, tuple, set, str, bytes, numbers, None) and refuses anything else
with an error that names the offending global.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path
from typing import Any

from sdl.safety.errors import UserError

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    # protocols 0-2 write Python 2 module names; Unpickler maps them to builtins
    ("__builtin__", "set"),
    ("__builtin__", "frozenset"),
    ("__builtin__", "bytearray"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # numpy arrays pickled by Python 2 / protocol 2 carry their bytes this way
}


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to unpickle {module}.{name}: only numpy arrays and plain containers are "
            "allowed from untrusted pickles"
        )


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` admitting only numpy arrays and plain containers."""
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def safe_load(path: str | Path) -> Any:
    """Read a (possibly gzip-compressed) pickle file with :func:`safe_loads`."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        return safe_loads(raw)
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{path}: {error}") from None
