"""Stage `validate`: Great Expectations suites on the manifest and the vocabulary.

Writes a JSON and a Markdown report naming the images and tags at fault, and the GX Data Docs
of the Checkpoint (HTML: open ``data/<dataset>/data_docs/index.html``); exits non-zero
(stopping `dvc repro`) when an expectation fails, after printing the readable report.

    python -m stages.validate --dataset embedded --manifest data/embedded/manifest.parquet \
        --tags data/embedded/tags.csv --report data/embedded/validation --docs data/embedded/data_docs
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sdl.data.manifest import read_manifest
from sdl.data.tags import read_tags
from sdl.data.validation import validate_dataset, write_report
from sdl.safety.errors import run_command
from stages._common import load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.validate")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["manifest", "tags", "report", "docs"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    manifest_path = Path(args.manifest)
    report = validate_dataset(read_manifest(manifest_path), manifest_path, read_tags(args.tags), params.validate,
                              docs=args.docs)
    if not write_report(args.report, report, f"{args.dataset} manifest and vocabulary"):
        return 1
    log.info("validation of %s passed: %s; Data Docs: %s", args.dataset, report.summary,
             Path(args.docs) / "index.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(main, "validate"))
