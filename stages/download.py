"""Stage `download`: fetch or build a dataset's raw data, cache its images pre-resized, and
write its manifest and tag table.

    python -m stages.download --dataset embedded --raw data/embedded/raw \
        --cache data/embedded/images --manifest data/embedded/manifest.parquet \
        --tags data/embedded/tags.csv --report metrics/embedded/download.json
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from sdl.data.image_cache import cache_images
from sdl.data.manifest import write_manifest
from sdl.data.sources import acquire, write_tags
from sdl.io import write_json
from stages._common import interactive, load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.download")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["raw", "cache", "manifest", "tags", "report"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    raw, manifest_path = Path(args.raw), Path(args.manifest)
    acquired = acquire(params.download.kind, params.download.options, raw, progress=interactive())
    manifest = acquired.manifest.copy()
    # Paths relative to the raw folder become relative to the manifest's folder.
    base = manifest_path.resolve().parent
    manifest["path"] = [p if os.path.isabs(p) else os.path.relpath((raw / p).resolve(), base) for p in manifest["path"]]
    Path(args.cache).mkdir(parents=True, exist_ok=True)  # a declared output, empty without a cache
    report = {"download": {k: v for k, v in acquired.report.items() if isinstance(v, int | float | str)}}
    if params.download.cache_short_side:
        manifest, cache_report = cache_images(
            manifest, manifest_path, args.cache, params.download.cache_short_side,
            workers=params.download.cache_workers, progress=interactive(),
        )
        report["image_cache"] = {k: v for k, v in cache_report.items() if k != "failures"}
    report["manifest"] = {"images": len(manifest), "tags": len(acquired.tags)}
    write_manifest(manifest_path, manifest)
    write_tags(args.tags, acquired.tags)
    write_json(args.report, report)
    log.info("%s: %s", args.dataset, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
