"""Stage `embed`: word vectors for every tag (seen and unseen), cached to Parquet.

The cache is incremental: tags already embedded from the same source are kept, only new
tags are looked up. A tag without a vector stops the stage with an error naming it; a
Great Expectations suite then checks every tag has a finite unit vector (the report is an
output).

    python -m stages.embed --dataset embedded --split data/embedded/split \
        --out data/embedded/wordvecs.parquet --report data/embedded/wordvecs_validation
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sdl.data.split import read_split
from sdl.validation import validate_vectors
from sdl.wordvecs import open_source, update_cache
from stages._common import interactive, load_dataset, parse_args, setup_logging, write_validation_report

log = logging.getLogger("stages.embed")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["split", "out", "report"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    tags, _ = read_split(args.split)
    source = open_source(params.embed.source, base_dir=Path.cwd())
    update = update_cache(args.out, tags.all_tags, source, progress=interactive())
    cached = pd.read_parquet(args.out)
    cached = cached[cached["tag"].isin(set(tags.all_tags))]
    vectors = np.stack(cached["vector"].to_numpy()) if len(cached) else np.zeros((0, source.dim), np.float32)
    report = validate_vectors(tags.all_tags, cached["tag"].tolist(), vectors)
    if not write_validation_report(args.report, report, f"{args.dataset} word vectors"):
        return 1
    log.info("%s: %d tags embedded now, %d from the cache (%s)", args.dataset, len(update.added), update.kept, source.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
