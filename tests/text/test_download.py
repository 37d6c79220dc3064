"""Word-vector files named by URL in params are fetched (and gunzipped) once, from a local replica."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from sdl.text.embedding import embed_tags
from sdl.text.sources import open_source
from tests.helpers.replicas import ReplicaHTTPServer

WORDS = {"cat": [1.0, 0.0, 0.0], "dog": [0.8, 0.6, 0.0], "hot": [0.0, 1.0, 0.0], "air": [0.0, 0.0, 2.0]}


def test_gzipped_vectors_download_once_and_embed(http_root: Path, http_replica: ReplicaHTTPServer, tmp_path: Path) -> None:
    text = f"{len(WORDS)} 3\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in WORDS.items())
    (http_root / "vectors.vec.gz").write_bytes(gzip.compress(text.encode()))
    http_replica.add_fault("vectors.vec.gz", "status", times=1, status=503)  # one 5xx, then served
    spec = {"kind": "text", "path": "wv/vectors.vec", "url": http_replica.url("vectors.vec.gz")}

    source = open_source(spec, base_dir=tmp_path)
    assert (tmp_path / "wv/vectors.vec").read_text() == text  # decompressed in place
    assert not (tmp_path / "wv/vectors.vec.gz").exists()
    vectors = embed_tags(["cat", "hot air"], source)
    expected = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0] / np.linalg.norm([0.0, 0.5, 1.0])])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)

    open_source(spec, base_dir=tmp_path)  # the file is there: not fetched again
    assert http_replica.hits["vectors.vec.gz"] == 2  # the 503 and the one good download
