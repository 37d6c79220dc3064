"""Stage `embed`: word vectors for every tag, from an incremental Parquet cache.

The tags are the dataset's (seen and unseen, from the split) plus the extra tags and word
forms of the vocabulary file. Only texts missing from the cache are looked up, so a grown
vocabulary embeds just its new tags. Outputs: the dataset tags' vectors (what training and
evaluation read; unchanged bytes when only extra tags change, so training is not redone), the
serving vocabulary (every tag, its vector and role), and a Great Expectations report that
every tag has a finite unit vector. A tag without a vector stops the stage, naming it.

    python -m stages.embed --dataset embedded --split data/embedded/split \
        --vocabulary vocabularies/embedded.txt --cache data/embedded/wordvec_cache.parquet \
        --out data/embedded/wordvecs.parquet --serving data/embedded/vocabulary.parquet \
        --report data/embedded/wordvecs_validation
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sdl.data.split import read_split
from sdl.validation import validate_vectors
from sdl.vocabulary import build_vocabulary, read_vocabulary_file, tag_vectors, write_serving_vocabulary
from sdl.wordvecs import open_source, read_cache, update_cache, write_vectors
from stages._common import interactive, load_dataset, parse_args, setup_logging, write_validation_report

log = logging.getLogger("stages.embed")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["split", "vocabulary", "cache", "out", "serving", "report"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    tags, _ = read_split(args.split)
    vocabulary = build_vocabulary(tags.seen, tags.unseen, read_vocabulary_file(args.vocabulary))
    source = open_source(params.embed.source, base_dir=Path.cwd())
    texts = vocabulary.texts()
    update = update_cache(args.cache, texts, source, progress=interactive())
    text_vectors = dict(zip(texts, read_cache(args.cache, texts, source_name=source.name), strict=True))
    vectors = tag_vectors(vocabulary, text_vectors)
    report = validate_vectors(vocabulary.tags, vocabulary.tags, vectors)
    if not write_validation_report(args.report, report, f"{args.dataset} word vectors"):
        return 1
    write_vectors(args.out, tags.all_tags, vectors[: len(tags.all_tags)], source.name)
    write_serving_vocabulary(args.serving, vocabulary, vectors, source.name)
    log.info(
        "%s: %d tags (%d extra); %d texts embedded now, %d from the cache (%s)", args.dataset,
        len(vocabulary.tags), len(vocabulary.extra), len(update.added), update.kept, source.name,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
