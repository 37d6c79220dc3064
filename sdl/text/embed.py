"""Embedding a dataset's vocabulary, what the ``embed`` stage does.

The tags are the dataset's (seen and unseen, from the split) plus the extra tags and word
forms of the vocabulary file. Only texts missing from the cache are looked up, so a grown
vocabulary embeds just its new tags. Written: the dataset tags' vectors (what training and
evaluation read; the same bytes when only extra tags change, so training is not redone), the
serving vocabulary (every tag, its vector and role), and a Great Expectations report that
every tag has a finite unit vector.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sdl.data.split import read_split
from sdl.data.validation import validate_vectors, write_report
from sdl.text.cache import read_cache, write_vectors
from sdl.text.embedding import update_cache
from sdl.text.sources import open_source
from sdl.text.vocabulary import (
    build_vocabulary,
    read_vocabulary_file,
    tag_vectors,
    write_serving_vocabulary,
)

log = logging.getLogger(__name__)


def embed_vocabulary(
    dataset: str, source_spec: dict[str, Any], split: str | Path, vocabulary_file: str | Path, cache: str | Path,
    out: str | Path, serving: str | Path, report_dir: str | Path, progress: bool = False,
) -> bool:
    """Embed every tag with the source ``source_spec`` (relative paths from the working
    directory); return whether the vector report passed (nothing is written when it fails)."""
    tags, _ = read_split(split)
    vocabulary = build_vocabulary(tags.seen, tags.unseen, read_vocabulary_file(vocabulary_file))
    source = open_source(source_spec, base_dir=Path.cwd())
    texts = vocabulary.texts()
    update = update_cache(cache, texts, source, progress=progress)
    text_vectors = dict(zip(texts, read_cache(cache, texts, source_name=source.name), strict=True))
    vectors = tag_vectors(vocabulary, text_vectors)
    report = validate_vectors(vocabulary.tags, vocabulary.tags, vectors)
    if not write_report(report_dir, report, f"{dataset} word vectors"):
        return False
    write_vectors(out, tags.all_tags, vectors[: len(tags.all_tags)], source.name)
    write_serving_vocabulary(serving, vocabulary, vectors, source.name)
    log.info("%s: %d tags (%d extra); %d texts embedded now, %d from the cache (%s)", dataset,
             len(vocabulary.tags), len(vocabulary.extra), len(update.added), update.kept, source.name)
    return True
