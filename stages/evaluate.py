"""Stage `evaluate`: ZSL and GZSL metrics of the trained model on the test split.

Writes ``eval.json`` (mAP and P/R/F1@K per setting, the chance level, image counts), the
summary that ``dvc exp show`` lists (``summary.json``: ZSL/GZSL mAP and F1@K, the DVC metric),
per-tag AP and P/R/F1@K tables (DVC plots with their own templates, ``.dvc/plots/``) and PNG
plots (unseen-tag AP, P/R/F1 over K, a grid of test images with their top-k tags). In MLflow
the metrics are linked to the trained model and the test data (an ``mlflow.data`` dataset).

The run is also put next to the published results of the same dataset
(``references/published.yaml``): for each published value of the same setting and metric it
logs ``<setting>.<metric>.paper_<key>`` and ``.delta_<key>`` (ours minus published) and a
comparison table (``comparison.md``, and in MLflow ``evaluation/comparison.md`` / ``.html``)
with the chance level.

The vocabulary's extra tags (no labelled image) compete in every image's top K as
distractors: ``eval.json`` reports that under ``vocabulary``.

    python -m stages.evaluate --dataset embedded --manifest data/embedded/manifest.parquet \
        --split data/embedded/split --vocabulary data/embedded/vocabulary.parquet \
        --model models/embedded --references references/published.yaml \
        --metrics metrics/embedded/eval.json --summary metrics/embedded/summary.json \
        --comparison metrics/embedded/comparison.md --per-tag metrics/embedded/per_tag_ap.csv \
        --curves metrics/embedded/pr_at_k.csv --plots metrics/embedded/plots
"""

from __future__ import annotations

from collections.abc import Sequence

from sdl.mlops.evaluation_run import evaluate_tracked
from sdl.safety.errors import run_command
from stages._common import interactive, load_dataset, parse_args, setup_logging

PATHS = ["manifest", "split", "vocabulary", "model", "references", "metrics", "summary", "comparison", "per_tag",
         "curves", "plots"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, [p.replace("_", "-") for p in PATHS], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    evaluate_tracked(args.dataset, params, **{name: getattr(args, name) for name in PATHS}, progress=interactive())
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(main, "evaluate"))
