"""Stage `evaluate`: ZSL and GZSL metrics of the trained model on the test split.

Writes ``eval.json`` (mAP and P/R/F1@K per setting, the chance level, image counts) as DVC
metrics and to the MLflow run, plus per-tag AP and P/R@K curves as DVC plots (CSV) and PNG
plots (unseen-tag AP, P/R/F1 over K, a grid of test images with their top-k tags).

The run is also put next to the published results of the same dataset
(``references/published.yaml``): for each published value of the same setting and metric it
logs ``<setting>.<metric>.paper_<key>`` and ``.delta_<key>`` (ours minus published) and a
comparison table (``evaluation/comparison.md`` / ``.html``) with the chance level.

    python -m stages.evaluate --dataset embedded --manifest data/embedded/manifest.parquet \
        --split data/embedded/split --wordvecs data/embedded/wordvecs.parquet \
        --model models/embedded --metrics metrics/embedded/eval.json --plots metrics/embedded/plots \
        [--references references/published.yaml]
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdl import reporting, tracking
from sdl.data.dataset import TaggedImageDataset
from sdl.data.images import ImageDecodeError, load_rgb
from sdl.data.manifest import multi_hot, read_manifest, subset_rows
from sdl.data.split import TagSplit, read_split
from sdl.evaluation import evaluation_tables, summarise
from sdl.inference import compute_scores
from sdl.io import atomic_write_text
from sdl.models import load_model
from sdl.wordvecs import read_cache
from stages._common import interactive, load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.evaluate")

PLOT_FILES = ("per_tag_ap_unseen.png", "pr_at_k.png", "test_images_topk.png")


def chance_levels(targets: np.ndarray, tags: TagSplit, ks: Sequence[int], protocol: str) -> dict[str, dict[str, float]]:
    """Expected P/R/F1@K of a random ranking per setting (the chance mAPs are in eval.json)."""
    unseen = np.arange(len(tags.seen), len(tags.all_tags))
    columns = {"zsl": unseen, "gzsl": np.arange(len(tags.all_tags))}
    return {s: reporting.chance_at_k(targets, c, ks, protocol) for s, c in columns.items()}


def grid_items(
    paths: Sequence[Path], tag_lists: Sequence[Sequence[str]], scores: np.ndarray, tags: TagSplit,
    count: int, top_k: int,
) -> list[reporting.GridItem]:
    """``count`` test images spread evenly over the split, with their GZSL top-k tags."""
    if count <= 0 or not len(paths):
        return []
    picks = sorted(set(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int).tolist()))
    names = np.asarray(tags.all_tags, dtype=object)
    items = []
    for i in picks:
        order = np.argsort(-scores[i], kind="stable")[:top_k]
        try:
            image = load_rgb(paths[i])
        except ImageDecodeError as error:  # scored before, so unlikely: skip the image
            log.warning("grid: %s", error)
            continue
        items.append(reporting.GridItem(
            image=image, predicted=[(str(names[j]), float(scores[i, j])) for j in order],
            truth=set(tag_lists[i]), caption=Path(paths[i]).name,
        ))
    return items


def report(
    dataset: str, results: dict[str, Any], chance: dict[str, dict[str, float]], per_tag: Any, curves: Any,
    items: list[reporting.GridItem], unseen: set[str], plots: Path, references_path: str | None, run_id: str | None,
) -> dict[str, float]:
    """Plots into ``plots``; comparison metrics, tables and plots into the MLflow run.
    Returns the comparison metrics (empty without published results for ``dataset``)."""
    published: list[reporting.PublishedResult] = []
    references = None
    if references_path and Path(references_path).is_file():
        references = reporting.load_references(references_path)
        published = references.for_dataset(dataset)
    else:
        log.warning("no reference table at %s: comparing with chance only", references_path)
    comparison = reporting.comparison_metrics(results, published)
    table = reporting.comparison_table(results, published, chance)
    header = [f"Dataset: {dataset}; test images: ZSL {results.get('images', {}).get('zsl', '?')}, "
              f"GZSL {results.get('images', {}).get('gzsl', '?')}; protocol: {results.get('protocol', '?')}."]
    if references is not None:
        header.append(f"References: {Path(references.path or '').name} version {references.version}.")
    if run_id:
        header.append(f"MLflow run: {run_id}.")
    papers = references.papers if references else None
    title = f"{dataset}: ours vs published"
    markdown = reporting.table_markdown(table, title, published, papers, header)
    page = reporting.table_html(table, title, published, papers, header)
    reporting.plot_unseen_ap(per_tag, plots / PLOT_FILES[0])
    reporting.plot_pr_at_k(curves, plots / PLOT_FILES[1])
    if items:
        reporting.plot_image_grid(items, unseen, plots / PLOT_FILES[2])
    elif (plots / PLOT_FILES[2]).exists():
        (plots / PLOT_FILES[2]).unlink()
    if run_id:
        tracking.log_metrics(run_id, comparison)
        tracking.log_text(run_id, markdown, "evaluation/comparison.md")
        tracking.log_text(run_id, page, "evaluation/comparison.html")
        tracking.set_run_tags(run_id, {
            "references.version": references.version if references else "none",
            "references.compared": ",".join(r.key for r in published) or "none",
        })
        for name in ("per_tag_ap.csv", "pr_at_k.csv", *PLOT_FILES):
            if (plots / name).exists():
                tracking.log_artifact(run_id, plots / name, "evaluation")
    log.info("comparison with %d published result(s):\n%s", len(published), markdown)
    return comparison


def main(argv: Sequence[str] | None = None) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--references", default=str(reporting.DEFAULT_REFERENCES))
    options, rest = extra.parse_known_args(argv)
    args = parse_args(__doc__, ["manifest", "split", "wordvecs", "model", "metrics", "plots"], rest)
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
    items = grid_items(paths, tag_lists, scores, tags, params.grid_images, min(max(params.ks), len(tags.all_tags)))
    chance = chance_levels(targets, tags, params.ks, params.protocol)
    report(args.dataset, results, chance, per_tag, curves, items, set(tags.unseen), plots, options.references, run_id)
    log.info(
        "%s test (%d images): ZSL mAP %.2f (chance %.2f), GZSL mAP %.2f (chance %.2f)",
        args.dataset, len(paths), results["zsl"]["map"], results["chance"]["zsl_map"],
        results["gzsl"]["map"], results["chance"]["gzsl_map"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
