"""Stage `embed`: word vectors for every tag (seen and unseen), cached to Parquet.

The cache is incremental: tags already embedded from the same source are kept, only new
tags are looked up. A tag without a vector stops the stage with an error naming it.

    python -m stages.embed --dataset embedded --split data/embedded/split \
        --out data/embedded/wordvecs.parquet
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sdl.data.split import read_split
from sdl.wordvecs import open_source, read_cache, update_cache
from stages._common import interactive, load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.embed")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["split", "out"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    tags, _ = read_split(args.split)
    source = open_source(params.embed.source, base_dir=Path.cwd())
    update = update_cache(args.out, tags.all_tags, source, progress=interactive())
    read_cache(args.out, tags.all_tags, source_name=source.name)  # every tag has a usable vector
    log.info("%s: %d tags embedded now, %d from the cache (%s)", args.dataset, len(update.added), update.kept, source.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
