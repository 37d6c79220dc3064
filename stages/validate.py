"""Stage `validate`: Great Expectations suites on the manifest and the vocabulary.

Writes a JSON and a Markdown report; exits non-zero (stopping `dvc repro`) when an
expectation fails, after printing the readable report.

    python -m stages.validate --dataset embedded --manifest data/embedded/manifest.parquet \
        --tags data/embedded/tags.csv --report data/embedded/validation
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sdl.data.manifest import read_manifest
from sdl.data.sources import read_tags
from sdl.io import atomic_write_text, write_json
from sdl.validation import validate_dataset
from stages._common import load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.validate")
REPORT_JSON, REPORT_MD = "report.json", "report.md"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["manifest", "tags", "report"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    manifest_path = Path(args.manifest)
    report = validate_dataset(read_manifest(manifest_path), manifest_path, read_tags(args.tags), params.validate)
    folder = Path(args.report)
    write_json(folder / REPORT_JSON, report.to_dict())
    markdown = report.to_markdown(args.dataset)
    atomic_write_text(folder / REPORT_MD, markdown)
    if not report.success:
        print(markdown, file=sys.stderr)
        log.error("validation of %s failed; report: %s", args.dataset, folder / REPORT_MD)
        return 1
    log.info("validation of %s passed: %s", args.dataset, report.summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
