"""Stage `evaluate`: ZSL and GZSL metrics of the trained model on the test split.

Writes ``eval.json`` (mAP and P/R/F1@K per setting, the chance level, image counts) as DVC
metrics and to the MLflow run, plus per-tag AP and P/R@K curves as DVC plots (CSV) and PNG
plots (unseen-tag AP, P/R/F1 over K, a grid of test images with their top-k tags).

The run is also put next to the published results of the same dataset
(``references/published.yaml``): for each published value of the same setting and metric it
logs ``<setting>.<metric>.paper_<key>`` and ``.delta_<key>`` (ours minus published) and a
comparison table (``evaluation/comparison.md`` / ``.html``) with the chance level.

The vocabulary's extra tags (no labelled image) compete in every image's top K as
distractors: ``eval.json`` reports that under ``vocabulary``.

    python -m stages.evaluate --dataset embedded --manifest data/embedded/manifest.parquet \
        --split data/embedded/split --vocabulary data/embedded/vocabulary.parquet \
        --model models/embedded --references references/published.yaml \
        --metrics metrics/embedded/eval.json --plots metrics/embedded/plots
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdl import reporting, tracking
from sdl.data.dataset import TaggedImageDataset
from sdl.data.manifest import multi_hot, read_manifest, subset_rows
from sdl.data.split import read_split
from sdl.evaluation import evaluation_tables, summarise, with_extra_tags
from sdl.inference import compute_scores
from sdl.io import atomic_write_text
from sdl.models import load_model
from sdl.vocabulary import read_serving_vocabulary
from stages._common import interactive, load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.evaluate")

def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["manifest", "split", "vocabulary", "model", "references", "metrics", "plots"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset).evaluate
    tags, image_split = read_split(args.split)
    vocabulary = read_serving_vocabulary(args.vocabulary)
    if vocabulary["tag"].tolist()[: len(tags.all_tags)] != tags.all_tags:
        raise ValueError(f"{args.vocabulary} does not start with the split's tags: rerun the embed stage")
    vectors = np.stack(vocabulary["vector"].to_numpy()).astype(np.float32)
    paths, tag_lists = subset_rows(args.manifest, read_manifest(args.manifest), image_split, "test")
    model = load_model(args.model)
    config = model.config
    dataset = TaggedImageDataset(paths, None, config.image_size, config.mean, config.std)
    all_scores = compute_scores(  # every served tag: the dataset's first, then the extra ones
        model, dataset, vectors, batch_size=params.batch_size, num_workers=params.num_workers,
        device=params.device, progress=interactive(), description="test images",
    )
    scores = all_scores[:, : len(tags.all_tags)]
    targets = multi_hot(tag_lists, tags.all_tags)
    results = summarise(scores, targets, tags, params.ks, params.protocol)
    results["vocabulary"] = with_extra_tags(all_scores, targets, tags, params.ks, params.protocol)
    per_tag, curves = evaluation_tables(scores, targets, tags, params.protocol)
    plots = Path(args.plots)
    atomic_write_text(plots / "per_tag_ap.csv", per_tag.to_csv(index=False))
    atomic_write_text(plots / "pr_at_k.csv", curves.to_csv(index=False))
    run_id = tracking.read_run_id(args.model)
    tracking.record_metrics(args.metrics, results, run_id)
    top_k = min(max(params.ks), len(tags.all_tags))
    items = reporting.grid_items(paths, tag_lists, scores, tags, params.grid_images, top_k)
    chance = reporting.chance_levels(targets, tags, params.ks, params.protocol)
    reporting.write_evaluation_report(
        args.dataset, results, chance, per_tag, curves, items, set(tags.unseen), plots, args.references, run_id
    )
    log.info(
        "%s test (%d images): ZSL mAP %.2f (chance %.2f), GZSL mAP %.2f (chance %.2f); %d extra tags",
        args.dataset, len(paths), results["zsl"]["map"], results["chance"]["zsl_map"],
        results["gzsl"]["map"], results["chance"]["gzsl_map"], results["vocabulary"]["extra_tags"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
