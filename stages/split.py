"""Stage `split`: the seen/unseen tag split and the train/val/test image split, as files,
checked by Great Expectations (the published split sizes, no unseen tag in training).

    python -m stages.split --dataset embedded --manifest data/embedded/manifest.parquet \
        --tags data/embedded/tags.csv --validation data/embedded/validation --out data/embedded/split
"""

from __future__ import annotations

from collections.abc import Sequence

from sdl.data.make_split import build_split
from sdl.safety.errors import run_command
from stages._common import load_dataset, parse_args, setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["manifest", "tags", "validation", "out"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    return 0 if build_split(args.dataset, params, args.manifest, args.tags, args.validation, args.out) else 1


if __name__ == "__main__":
    raise SystemExit(run_command(main, "split"))
