"""Stage `register`: register the trained model in the MLflow registry as `sdl-<dataset>`.

The new version becomes `champion` when the model has none.

    python -m stages.register --dataset embedded --model models/embedded \
        --split data/embedded/split --wordvecs data/embedded/wordvecs.parquet \
        --metrics metrics/embedded/eval.json --out metrics/embedded/registered.json
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from sdl import tracking
from sdl.data.split import read_split
from sdl.io import read_json, write_json
from sdl.registry import register_run_model
from sdl.wordvecs import read_cache
from stages._common import load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.register")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["model", "split", "wordvecs", "metrics", "out"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    tags, _ = read_split(args.split)
    vectors = read_cache(args.wordvecs, tags.all_tags)
    lineage = read_json(Path(args.model) / "tags.json")
    version_tags = {k: str(v) for k, v in lineage.items() if k not in ("seen", "unseen")}
    evaluation = read_json(args.metrics)
    version_tags.update({f"{s}.map": f"{evaluation[s]['map']:.4f}" for s in ("zsl", "gzsl")})
    registered = register_run_model(
        tracking.read_run_id(args.model), params.model_name, args.model, tags.all_tags, vectors,
        tags.unseen, version_tags=version_tags,
    )
    write_json(args.out, dataclasses.asdict(registered))
    log.info("%s: %s version %d, aliases %s", args.dataset, registered.name, registered.version, registered.aliases or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
