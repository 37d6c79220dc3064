"""Stage `evaluate`: ZSL and GZSL metrics of the trained model on the test split.

Writes ``eval.json`` (mAP and P/R/F1@K per setting, the chance level, image counts) as DVC
metrics and to the MLflow run, plus per-tag AP and P/R@K curves as DVC plots.

    python -m stages.evaluate --dataset embedded --manifest data/embedded/manifest.parquet \
        --split data/embedded/split --wordvecs data/embedded/wordvecs.parquet \
        --model models/embedded --metrics metrics/embedded/eval.json --plots metrics/embedded/plots
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sdl import tracking
from sdl.data.dataset import TaggedImageDataset
from sdl.data.manifest import multi_hot, read_manifest, subset_rows
from sdl.data.split import read_split
from sdl.evaluation import evaluation_tables, summarise
from sdl.inference import compute_scores
from sdl.io import atomic_write_text
from sdl.models import load_model
from sdl.wordvecs import read_cache
from stages._common import interactive, load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.evaluate")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["manifest", "split", "wordvecs", "model", "metrics", "plots"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset).evaluate
    tags, image_split = read_split(args.split)
    vectors = read_cache(args.wordvecs, tags.all_tags)
    paths, tag_lists = subset_rows(args.manifest, read_manifest(args.manifest), image_split, "test")
    model = load_model(args.model)
    config = model.config
    dataset = TaggedImageDataset(paths, None, config.image_size, config.mean, config.std)
    scores = compute_scores(
        model, dataset, vectors, batch_size=params.batch_size, num_workers=params.num_workers,
        device=params.device, progress=interactive(), description="test images",
    )
    targets = multi_hot(tag_lists, tags.all_tags)
    results = summarise(scores, targets, tags, params.ks, params.protocol)
    per_tag, curves = evaluation_tables(scores, targets, tags, params.protocol)
    plots = Path(args.plots)
    atomic_write_text(plots / "per_tag_ap.csv", per_tag.to_csv(index=False))
    atomic_write_text(plots / "pr_at_k.csv", curves.to_csv(index=False))
    run_id = tracking.read_run_id(args.model)
    tracking.record_metrics(args.metrics, results, run_id)
    for name in ("per_tag_ap.csv", "pr_at_k.csv"):
        tracking.log_artifact(run_id, plots / name, "evaluation")
    log.info(
        "%s test (%d images): ZSL mAP %.2f (chance %.2f), GZSL mAP %.2f (chance %.2f)",
        args.dataset, len(paths), results["zsl"]["map"], results["chance"]["zsl_map"],
        results["gzsl"]["map"], results["chance"]["gzsl_map"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
