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

from collections.abc import Sequence

from sdl.safety.errors import run_command
from sdl.text.embed import embed_vocabulary
from stages._common import interactive, load_dataset, parse_args, setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["split", "vocabulary", "cache", "out", "serving", "report"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    passed = embed_vocabulary(args.dataset, params.embed.source, args.split, args.vocabulary, args.cache, args.out,
                              args.serving, args.report, progress=interactive())
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(run_command(main, "embed"))
