"""Stage `download`: fetch or build a dataset's raw data, cache its images pre-resized, and
write its manifest and tag table.

    python -m stages.download --dataset embedded --raw data/embedded/raw \
        --cache data/embedded/images --manifest data/embedded/manifest.parquet \
        --tags data/embedded/tags.csv --report metrics/embedded/download.json
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sdl.data.download import download_dataset
from sdl.data.manifest import write_manifest
from sdl.data.tags import write_tags
from sdl.safety.atomic import write_json
from sdl.safety.errors import run_command
from stages._common import interactive, load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.download")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["raw", "cache", "manifest", "tags", "report"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    downloaded = download_dataset(params.download, args.raw, args.cache, args.manifest, progress=interactive())
    write_manifest(args.manifest, downloaded.manifest)
    write_tags(args.tags, downloaded.tags)
    write_json(args.report, downloaded.report)
    log.info("%s: %s", args.dataset, downloaded.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(main, "download"))
