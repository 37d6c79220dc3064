"""Making the split of a validated dataset, what the ``split`` stage does."""

from __future__ import annotations

import logging
from pathlib import Path

from sdl.config.params import DatasetParams
from sdl.data.manifest import read_manifest
from sdl.data.split import split_images, split_tags, write_split
from sdl.data.tags import read_tags
from sdl.data.validation import validate_split, write_report
from sdl.safety.atomic import read_json

log = logging.getLogger(__name__)


def build_split(
    dataset: str, params: DatasetParams, manifest_path: str | Path, tags_path: str | Path,
    validation_dir: str | Path, out_dir: str | Path,
) -> bool:
    """The ``split`` stage: split tags and images of a validated dataset, write the split and its
    Great Expectations report (published split sizes, no unseen tag in training); return
    whether the report passed. Refuses a dataset whose validation failed."""
    if not read_json(Path(validation_dir) / "report.json")["success"]:
        raise SystemExit(f"validation of {dataset} failed: see {validation_dir}/report.md")
    tag_table = read_tags(tags_path)
    roles = {t: r for t, r in zip(tag_table["tag"], tag_table["role"], strict=True) if r}
    tags = split_tags(tag_table["tag"].tolist(), params.split.tags, roles)
    manifest = read_manifest(manifest_path)
    images = split_images(manifest, tags, params.split.images)
    write_split(out_dir, tags, images)
    report = validate_split(
        tags.seen, tags.unseen, images, manifest, params.validate.expected_seen,
        params.validate.expected_unseen, params.split.images.train_seen_only,
    )
    # images in no subset (no tag of the vocabulary; with train_seen_only, training images
    # showing an unseen tag) are counted in the report, not dropped silently
    report.summary["left_out_images"] = len(manifest) - len(images)
    if not write_report(out_dir, report, f"{dataset} split"):
        return False
    log.info("%s: %d seen / %d unseen tags; images %s, %d left out", dataset, len(tags.seen), len(tags.unseen),
             images["subset"].value_counts().to_dict(), len(manifest) - len(images))
    return True
