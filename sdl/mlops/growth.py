"""How much the vocabulary and the labelled data have grown since the champion was trained,
and whether that makes retraining due (the thresholds of ``retrain.<dataset>`` in params)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Growth:
    """New tags and new labelled images against the champion's."""

    new_tags: list[str]
    champion_tags: int
    current_tags: int
    champion_images: int
    current_images: int

    @property
    def new_images(self) -> int:
        return self.current_images - self.champion_images

    @property
    def relative(self) -> float:
        """The larger relative growth: new tags over the champion's, new images over its images."""
        tags = len(self.new_tags) / max(self.champion_tags, 1)
        images = max(self.new_images, 0) / max(self.champion_images, 1)
        return max(tags, images)

    def as_dict(self) -> dict[str, Any]:
        return {
            "new_tags": len(self.new_tags), "new_tag_examples": self.new_tags[:10],
            "champion_tags": self.champion_tags, "current_tags": self.current_tags,
            "new_images": self.new_images, "champion_images": self.champion_images,
            "current_images": self.current_images, "relative": round(self.relative, 4),
        }


def measure_growth(
    current_tags: Sequence[str], current_images: int, champion_tags: Sequence[str], champion_images: int
) -> Growth:
    """Growth of the current vocabulary and labelled images over the champion's."""
    known = set(champion_tags)
    return Growth(
        new_tags=[t for t in current_tags if t not in known], champion_tags=len(champion_tags),
        current_tags=len(current_tags), champion_images=champion_images, current_images=current_images,
    )


def retraining_due(
    growth: Growth, min_new_tags: int | None, min_new_images: int | None, min_relative_growth: float | None
) -> tuple[bool, str]:
    """Whether any threshold is reached, and a sentence saying which (or why nothing is due)."""
    reached, missed = [], []
    checks = (
        ("new tags", len(growth.new_tags), min_new_tags),
        ("new labelled images", growth.new_images, min_new_images),
        ("relative growth", growth.relative, min_relative_growth),
    )
    for label, value, threshold in checks:
        if threshold is None:
            continue
        text = f"{label} {value:g} (threshold {threshold:g})"
        (reached if value >= threshold else missed).append(text)
    if reached:
        return True, "retraining is due: " + "; ".join(reached)
    return False, "nothing is due: " + ("; ".join(missed) if missed else "every threshold is off")
