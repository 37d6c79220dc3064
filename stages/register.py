"""Stage `register`: register the trained model as the `challenger` of `sdl-<dataset>`, then
run the promotion gate.

The gate scores the challenger and the current `champion` from their registered artifacts on
the test images with the current vocabulary, compares `register.<dataset>.primary_metric`
(default `gzsl.map`) and moves `champion` only when the challenger wins by more than zero and
by at least `min_margin`; the first model becomes champion. A model (training run) already
registered and gated is not registered again: a grown vocabulary reruns this stage without a
new version; a version whose gate did not finish (store down, champion lock busy) is gated.
``registered.json`` records the version, its aliases, the run and the gate's decision.

    python -m stages.register --dataset embedded --model models/embedded \
        --manifest data/embedded/manifest.parquet --split data/embedded/split \
        --vocabulary data/embedded/vocabulary.parquet --metrics metrics/embedded/eval.json \
        --out metrics/embedded/registered.json
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdl import registry, tracking
from sdl.data.manifest import multi_hot, read_manifest, subset_rows
from sdl.data.split import read_split
from sdl.io import read_json, write_json
from sdl.vocabulary import read_serving_vocabulary
from stages._common import load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.register")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["model", "manifest", "split", "vocabulary", "metrics", "out"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    name, run_id = params.model_name, tracking.read_run_id(args.model)
    existing = registry.version_of_run(name, run_id)
    if existing is not None and "gate.decision" in existing.tags:
        previous = read_json(args.out) if Path(args.out).exists() else {}
        write_json(args.out, {**previous, "name": name, "version": existing.version,
                              "aliases": existing.aliases, "run_id": run_id})
        log.info("%s: run %s is already %s version %d (%s): nothing to register",
                 args.dataset, run_id, name, existing.version, existing.aliases or "no alias")
        return 0
    tags, image_split = read_split(args.split)
    vocabulary = read_serving_vocabulary(args.vocabulary)
    vectors = np.stack(vocabulary["vector"].to_numpy()).astype(np.float32)
    paths, tag_lists = subset_rows(args.manifest, read_manifest(args.manifest), image_split, "test")
    lineage = read_json(Path(args.model) / "tags.json")
    version_tags = {k: str(v) for k, v in lineage.items() if k not in ("seen", "unseen")}
    evaluation = read_json(args.metrics)
    version_tags.update({f"{s}.map": f"{evaluation[s]['map']:.4f}" for s in ("zsl", "gzsl")})
    version_tags["serving_vocabulary_size"] = str(len(vocabulary))
    if existing is None:
        version = registry.register_version(
            run_id, name, args.model, vocabulary["tag"].tolist(), vectors,
            vocabulary.loc[vocabulary["unseen"], "tag"].tolist(),
            example_image=paths[0] if paths else None, version_tags=version_tags,
            wordvec_source=params.embed.source, wordvec_source_name=str(vocabulary["source"].iloc[0]),
        )
    else:  # registered by an earlier run whose gate did not finish (store down, lock busy)
        version = existing.version
        log.info("%s: run %s is already %s version %d, without a gate decision: running the gate",
                 args.dataset, run_id, name, version)
    data = registry.GateData(
        paths=list(paths), targets=multi_hot(tag_lists, tags.all_tags), tags=tags,
        vectors=vectors[: len(tags.all_tags)], ks=list(params.evaluate.ks), protocol=params.evaluate.protocol,
        batch_size=params.evaluate.batch_size, num_workers=params.evaluate.num_workers, device=params.evaluate.device,
    )
    decision = registry.run_gate(
        name, version, data, params.register.primary_metric, params.register.min_margin,
        wait_seconds=params.register.lock_wait_seconds,
    )
    aliases = registry.version_aliases(name, version)
    tracking.set_run_tags(run_id, {
        "registered.version": str(version), "gate.decision": "promoted" if decision.promoted else "kept_champion",
        "gate.reason": decision.reason[:500],
    })
    write_json(args.out, {"name": name, "version": version, "aliases": aliases, "run_id": run_id, "gate": decision.as_dict()})
    log.info("%s: %s version %d, aliases %s; gate: %s", args.dataset, name, version, aliases or "none", decision.reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
