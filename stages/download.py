"""Stage `download`: fetch or build a dataset's raw data; write its manifest and tag table.

    python -m stages.download --dataset embedded --raw data/embedded/raw \
        --manifest data/embedded/manifest.parquet --tags data/embedded/tags.csv
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from sdl.data.manifest import write_manifest
from sdl.data.sources import acquire, write_tags
from stages._common import interactive, load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.download")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["raw", "manifest", "tags"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    raw, manifest_path = Path(args.raw), Path(args.manifest)
    acquired = acquire(params.download.kind, params.download.options, raw, progress=interactive())
    manifest = acquired.manifest.copy()
    # Paths relative to the raw folder become relative to the manifest's folder.
    manifest["path"] = [
        p if os.path.isabs(p) else os.path.relpath(raw / p, manifest_path.resolve().parent if raw.is_absolute() else manifest_path.parent)
        for p in manifest["path"]
    ]
    write_manifest(manifest_path, manifest)
    write_tags(args.tags, acquired.tags)
    log.info("%s: %d images, %d tags; %s", args.dataset, len(manifest), len(acquired.tags), acquired.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
