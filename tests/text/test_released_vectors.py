"""The released SDL word vectors as a source (sdl.text.released_vectors), on same-format files
written here (tests/helpers/released.py: same pickle protocol, globals, dtypes, shapes, order)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from sdl.data.kinds.coco import COCO_CATEGORIES
from sdl.safety.safe_pickle import UnsafePickleError
from sdl.text.embedding import MissingWordVectorError, embed_tags
from sdl.text.released_vectors import ReleasedPickleSource
from sdl.text.sources import open_source
from tests.helpers.released import coco_style_file, nus_style_files, write_released_pickle

# A NUS-like tag list: sorted, with "unseen" names interleaved (as the released 1,006 are).
NAMES = sorted(["airport", "animal", "beach", "cat", "dog", "sand", "sky", "zoo", "whales", "computer"])


def globals_of(path: Path) -> set[tuple[str, str]]:
    """The (module, name) globals a pickle asks for (an unpickler that records find_class)."""
    found: set[tuple[str, str]] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str):  # type: ignore[no-untyped-def]
            found.add((module, name))
            return super().find_class(module, name)

    with open(path, "rb") as handle:
        Recorder(handle).load()
    return found


def test_fixtures_have_the_released_structure(tmp_path: Path) -> None:
    vectors, classes, array = nus_style_files(tmp_path / "nus", NAMES)
    coco, coco_array = coco_style_file(tmp_path / "coco")
    for path in (vectors, classes, coco):
        assert path.read_bytes()[:2] == b"\x80\x04"  # protocol 4
    numpy_globals = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}
    assert globals_of(vectors) == numpy_globals == globals_of(coco)
    assert globals_of(classes) == set()
    assert array.dtype == np.float32 and array.shape == (300, len(NAMES)) and array.flags.f_contiguous
    assert coco_array.dtype == np.float16 and coco_array.shape == (1, 300, 80)


def test_nus_vectors_by_tag_name(tmp_path: Path) -> None:
    vectors, _classes, array = nus_style_files(tmp_path, NAMES, seed=1)
    source = open_source({"kind": "released_pickle", "path": "wordvec_array.pickle", "classes": "classes.pickle"},
                         base_dir=tmp_path)
    assert isinstance(source, ReleasedPickleSource) and source.dim == 300 and source.names == NAMES
    got = source.lookup(["dog", "Zoo", "lion"])
    assert set(got) == {"dog", "Zoo"}  # lowercased fallback; no vector for a word outside the file
    np.testing.assert_array_equal(got["dog"], array[:, NAMES.index("dog")])
    assert got["dog"].dtype == np.float32
    embedded = embed_tags(["whales", "airport"], source)
    np.testing.assert_allclose(embedded, array[:, [NAMES.index("whales"), NAMES.index("airport")]].T, atol=1e-6)
    with pytest.raises(MissingWordVectorError, match="lion"):
        embed_tags(["lion"], source)
    # The cache key names both files: another tag list is another source.
    other_classes = write_released_pickle(dict(enumerate(reversed(NAMES))), tmp_path / "other.pickle")
    assert ReleasedPickleSource(vectors, other_classes).name != source.name


def test_coco_vectors_are_in_category_id_order(tmp_path: Path) -> None:
    path, array = coco_style_file(tmp_path, seed=2)
    source = open_source({"kind": "released_pickle", "path": str(path)})
    assert source.names == list(COCO_CATEGORIES) and source.names[16] == "dog" and source.names[0] == "person"
    # A multi-word COCO category is one column of the file, not a mean of word vectors.
    vector = embed_tags(["traffic light"], source)[0]
    column = array[0, :, COCO_CATEGORIES.index("traffic light")].astype(np.float64)
    np.testing.assert_allclose(vector, column / np.linalg.norm(column), atol=1e-6)
    assert source.lookup(["toothbrush"])["toothbrush"].dtype == np.float32  # float16 widened


def test_classes_as_a_text_file_and_as_a_list(tmp_path: Path) -> None:
    vectors, _, array = nus_style_files(tmp_path, NAMES, seed=3)
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    listed = write_released_pickle(list(NAMES), tmp_path / "names.pickle")
    for classes in (tmp_path / "names.txt", listed):
        source = ReleasedPickleSource(vectors, classes)
        np.testing.assert_array_equal(source.lookup(["sky"])["sky"], array[:, NAMES.index("sky")])


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    vectors, _, _ = nus_style_files(tmp_path, NAMES)
    short = write_released_pickle(dict(enumerate(NAMES[:-1])), tmp_path / "short.pickle")
    with pytest.raises(ValueError, match=f"short.pickle: {len(NAMES) - 1} names for the {len(NAMES)} vectors"):
        ReleasedPickleSource(vectors, short)
    with pytest.raises(ValueError, match=r"without names.*classes"):
        ReleasedPickleSource(vectors)  # not COCO's 80 columns
    gap = write_released_pickle({0: "a", 2: "b"}, tmp_path / "gap.pickle")
    with pytest.raises(ValueError, match=r"keys 0..1"):
        ReleasedPickleSource(write_released_pickle(np.zeros((3, 2), np.float32), tmp_path / "two.pickle"), gap)
    with pytest.raises(ValueError, match="float array"):
        ReleasedPickleSource(write_released_pickle({"other": 1}, tmp_path / "dict.pickle"))
    with pytest.raises(ValueError, match="takes keys"):
        open_source({"kind": "released_pickle", "classes": "c.pickle"})


class _Evil:
    def __reduce__(self):  # what a hostile pickle does: call os.getcwd (harmless here) on load
        import os

        return (os.getcwd, ())


def test_a_pickle_naming_other_globals_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wordvec_array.pickle"
    path.write_bytes(pickle.dumps({"wordvec_array": _Evil()}, protocol=4))
    with pytest.raises(UnsafePickleError, match="getcwd"):
        ReleasedPickleSource(path)
