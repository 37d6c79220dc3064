"""Stage `register`: register the trained model as the `challenger` of `sdl-<dataset>`, then
run the promotion gate.

The gate scores the challenger and the current `champion` from their registered artifacts on
the test images with the current vocabulary, compares `register.<dataset>.primary_metric`
(default `gzsl.map`) and moves `champion` only when the challenger wins by more than zero and
by at least `min_margin`; the first model becomes champion. ``registered.json`` records the
version, its aliases, the run and the gate's decision.

    python -m stages.register --dataset embedded --model models/embedded \
        --split data/embedded/split --wordvecs data/embedded/wordvecs.parquet \
        --metrics metrics/embedded/eval.json --out metrics/embedded/registered.json \
        [--manifest data/embedded/manifest.parquet]

``--manifest`` defaults to ``manifest.parquet`` next to the split folder.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sdl import registry, tracking
from sdl.data.manifest import multi_hot, read_manifest, subset_rows
from sdl.data.split import read_split
from sdl.io import read_json, write_json
from sdl.wordvecs import read_cache
from stages._common import load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.register")


def source_name(wordvecs: str | Path, tags: Sequence[str]) -> str | None:
    """The word-vector source the cached vectors of ``tags`` came from (one, by construction)."""
    frame = pd.read_parquet(wordvecs, columns=["tag", "source"])
    names = set(frame.loc[frame["tag"].isin(list(tags)), "source"])
    return names.pop() if len(names) == 1 else None


def main(argv: Sequence[str] | None = None) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--manifest", default=None)
    options, rest = extra.parse_known_args(argv)
    args = parse_args(__doc__, ["model", "split", "wordvecs", "metrics", "out"], rest)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    manifest = options.manifest or str(Path(args.split).parent / "manifest.parquet")
    tags, image_split = read_split(args.split)
    vectors = read_cache(args.wordvecs, tags.all_tags)
    paths, tag_lists = subset_rows(manifest, read_manifest(manifest), image_split, "test")
    lineage = read_json(Path(args.model) / "tags.json")
    version_tags = {k: str(v) for k, v in lineage.items() if k not in ("seen", "unseen")}
    evaluation = read_json(args.metrics)
    version_tags.update({f"{s}.map": f"{evaluation[s]['map']:.4f}" for s in ("zsl", "gzsl")})
    run_id = tracking.read_run_id(args.model)
    name = params.model_name
    version = registry.register_version(
        run_id, name, args.model, tags.all_tags, vectors, tags.unseen,
        example_image=paths[0] if paths else None, version_tags=version_tags,
        wordvec_source=params.embed.source, wordvec_source_name=source_name(args.wordvecs, tags.all_tags),
    )
    data = registry.GateData(
        paths=list(paths), targets=multi_hot(tag_lists, tags.all_tags), tags=tags, vectors=vectors,
        ks=list(params.evaluate.ks), protocol=params.evaluate.protocol, batch_size=params.evaluate.batch_size,
        num_workers=params.evaluate.num_workers, device=params.evaluate.device,
    )
    decision = registry.run_gate(name, version, data, params.register.primary_metric, params.register.min_margin)
    registered = registry.Registered(
        name=name, version=version, aliases=registry.version_aliases(name, version), run_id=run_id,
        gate=decision.as_dict(),
    )
    tracking.set_run_tags(run_id, {
        "registered.version": str(version), "gate.decision": "promoted" if decision.promoted else "kept_champion",
        "gate.reason": decision.reason[:500],
    })
    write_json(args.out, {
        "name": registered.name, "version": registered.version, "aliases": registered.aliases,
        "run_id": registered.run_id, "gate": registered.gate,
    })
    log.info("%s: %s version %d, aliases %s; gate: %s", args.dataset, name, version,
             registered.aliases or "none", decision.reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
