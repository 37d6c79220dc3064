"""Stage `split`: the seen/unseen tag split and the train/val/test image split, as files,
checked by Great Expectations (the published split sizes, no unseen tag in training).

    python -m stages.split --dataset embedded --manifest data/embedded/manifest.parquet \
        --tags data/embedded/tags.csv --validation data/embedded/validation --out data/embedded/split
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sdl.data.manifest import read_manifest
from sdl.data.sources import read_tags
from sdl.data.split import split_images, split_tags, write_split
from sdl.io import read_json
from sdl.validation import validate_split
from stages._common import load_dataset, parse_args, setup_logging, write_validation_report

log = logging.getLogger("stages.split")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["manifest", "tags", "validation", "out"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    if not read_json(Path(args.validation) / "report.json")["success"]:
        raise SystemExit(f"validation of {args.dataset} failed: see {args.validation}/report.md")
    tag_table = read_tags(args.tags)
    roles = {t: r for t, r in zip(tag_table["tag"], tag_table["role"], strict=True) if r}
    tags = split_tags(tag_table["tag"].tolist(), params.split.tags, roles)
    manifest = read_manifest(args.manifest)
    images = split_images(manifest, tags, params.split.images)
    write_split(args.out, tags, images)
    report = validate_split(
        tags.seen, tags.unseen, images, manifest, params.validate.expected_seen,
        params.validate.expected_unseen, params.split.images.train_seen_only,
    )
    # images in no subset (no tag of the vocabulary; with train_seen_only, training images
    # showing an unseen tag) are counted in the report, not dropped silently
    report.summary["left_out_images"] = len(manifest) - len(images)
    if not write_validation_report(args.out, report, f"{args.dataset} split"):
        return 1
    counts = images["subset"].value_counts().to_dict()
    log.info("%s: %d seen / %d unseen tags; images %s, %d left out", args.dataset, len(tags.seen), len(tags.unseen),
             counts, len(manifest) - len(images))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
