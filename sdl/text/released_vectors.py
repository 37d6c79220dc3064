"""The released SDL word vectors (github.com/Alibaba-MIIL/ZS_SDL ``data/``) as a word-vector source.

The files, read with the restricted unpickler (``sdl.safety.safe_pickle``: numpy arrays and
plain containers only; these need just numpy's ``_reconstruct``, ``ndarray`` and ``dtype``):

* ``data/NUS_WIDE/wordvec_array.pickle``: pickle protocol 4, a bare float32 ndarray of shape
  (300, 1006), one unit-norm column per tag (Fortran order); its tag names are
  ``data/NUS_WIDE/classes.pickle``, a dict {0: 'abandoned', ..., 1005: 'zoo'}: the 1,006 tags
  (Flickr's 1,000 and the 81 concepts) sorted alphabetically, so the 81 unseen tags are
  interleaved, not last. ``infer.py:47-52, 68`` uses them this way.
* ``data/COCO/wordvec_array.pickle``: pickle protocol 4, a dict {'wordvec_array': float16
  ndarray (1, 300, 80)}, unit-norm columns and no names. Column i is the i-th COCO category in
  ascending category id (person = 0 ... toothbrush = 79): the released ``CocoDetection``
  numbers categories in the order of ``coco.cats.keys()`` (helper_functions.py:193-195), and
  ``cls_ids.pickle``'s seen/unseen indices are in that order (``sdl.data.kinds.coco``).
  Without a ``classes`` file an 80-column array takes these names.

The paper (section 4.1): fastText vectors, d = 300, l2-normalised. ``embed_tags`` normalises
again (a no-op up to float error), and float16 vectors are widened to float32.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdl.data.kinds.coco import COCO_CATEGORIES
from sdl.safety.safe_pickle import safe_load
from sdl.text.source_base import _BuiltinSource, _fingerprint, _read_word_list, _usable

COCO_ORDER_NAME = "coco-category-id-order"


def _vector_matrix(data: Any, path: Path) -> np.ndarray:
    """(C, d) float32 from the NUS (d, C) array or COCO's {'wordvec_array': (1, d, C)}."""
    if isinstance(data, dict) and "wordvec_array" in data:
        data = data["wordvec_array"]
    if not isinstance(data, np.ndarray) or not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f"{path}: expected a float array (d, C) or {{'wordvec_array': (1, d, C)}}, got {type(data).__name__}")
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ValueError(f"{path}: expected word vectors of shape (d, C) or (1, d, C), got {data.shape}")
    return np.ascontiguousarray(data.T, dtype=np.float32)


def _class_names(classes: Path | None, count: int, vectors_path: Path) -> list[str]:
    if classes is None:
        if count != len(COCO_CATEGORIES):
            raise ValueError(
                f"{vectors_path}: {count} vectors without names; give the tag list (e.g. classes.pickle) as 'classes'"
            )
        return list(COCO_CATEGORIES)
    with open(classes, "rb") as handle:
        is_pickle = handle.read(1) == b"\x80"
    if not is_pickle:
        names: Any = _read_word_list(classes)
    else:
        names = safe_load(classes)
        if isinstance(names, dict):  # classes.pickle: {index: name}
            if sorted(names) != list(range(len(names))):
                raise ValueError(f"{classes}: expected the keys 0..{len(names) - 1}")
            names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{classes}: expected a list of tag names or a dict {{index: name}}")
    if len(names) != count:
        raise ValueError(f"{classes}: {len(names)} names for the {count} vectors of {vectors_path}")
    if len(set(names)) != len(names):
        raise ValueError(f"{classes}: repeated tag names")
    return names


class ReleasedPickleSource(_BuiltinSource):
    """Word vectors of a released ``wordvec_array.pickle``, by tag name (exact, else lowercased).

    ``classes``: ``classes.pickle`` (a dict index -> name or a list), or a text file of one name
    a line, in column order; None for COCO's nameless 80 columns (category-id order).
    """

    def __init__(self, path: str | os.PathLike[str], classes: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        self.classes_path = None if classes is None else Path(classes)
        matrix = _vector_matrix(safe_load(self.path), self.path)
        names = _class_names(self.classes_path, matrix.shape[0], self.path)
        self.matrix = matrix
        self.names = names
        self.dim = int(matrix.shape[1])
        self._index = {name: row for row, name in enumerate(names)}
        names_id = _fingerprint(self.classes_path) if self.classes_path is not None else COCO_ORDER_NAME
        self.name = f"released_pickle:{_fingerprint(self.path)}+{names_id}"

    def lookup(self, words: Sequence[str], progress: bool = False) -> dict[str, np.ndarray]:
        """Vectors of the ``words`` that are tags of the file (no other word has one)."""
        out: dict[str, np.ndarray] = {}
        for word in words:
            row = self._index.get(word, self._index.get(word.lower()))
            if row is not None and _usable(self.matrix[row], self.dim):
                out[word] = self.matrix[row].copy()
        return out

    def lookup_exact(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        """The same: a multi-word tag ("traffic light") is one column of the file."""
        return self.lookup(words)
