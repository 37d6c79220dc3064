"""How much the labelled data has grown since the champion was trained, and whether that makes
retraining due (the thresholds of ``retrain.<dataset>`` in params).

Only labels are a reason to retrain: images that were added, and tags that gained labelled
images (the dataset's tags). Tags added to the vocabulary file alone have nothing to learn
from: the champion ranks them zero-shot as soon as they are embedded, so they are reported
(``new_vocabulary_tags``) but never make retraining due.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Growth:
    """New labelled tags and images against the champion's (and vocabulary-only tags, for the record)."""

    new_tags: list[str]  # the dataset's tags (with labelled images) the champion was not trained with
    champion_tags: int
    current_tags: int
    champion_images: int
    current_images: int
    new_vocabulary_tags: list[str] = field(default_factory=list)  # extra tags: ranked zero-shot already

    @property
    def new_images(self) -> int:
        return self.current_images - self.champion_images

    @property
    def relative(self) -> float:
        """The larger relative growth: new labelled tags over the champion's, new images over its images."""
        tags = len(self.new_tags) / max(self.champion_tags, 1)
        images = max(self.new_images, 0) / max(self.champion_images, 1)
        return max(tags, images)

    def as_dict(self) -> dict[str, Any]:
        return {
            "new_tags": len(self.new_tags), "new_tag_examples": self.new_tags[:10],
            "champion_tags": self.champion_tags, "current_tags": self.current_tags,
            "new_images": self.new_images, "champion_images": self.champion_images,
            "current_images": self.current_images, "relative": round(self.relative, 4),
            "new_vocabulary_tags": len(self.new_vocabulary_tags),
            "new_vocabulary_tag_examples": self.new_vocabulary_tags[:10],
        }


def measure_growth(
    current_tags: Sequence[str], current_images: int, champion_tags: Sequence[str], champion_images: int,
    current_vocabulary: Sequence[str] = (), champion_vocabulary: Sequence[str] = (),
) -> Growth:
    """Growth of the labelled tags (``*_tags``: the dataset's) and images over the champion's;
    ``*_vocabulary``: the served vocabularies, whose new tags without labels are only reported."""
    known, labelled = set(champion_tags), set(current_tags)
    served = set(champion_vocabulary) | set(champion_tags)
    return Growth(
        new_tags=[t for t in current_tags if t not in known], champion_tags=len(champion_tags),
        current_tags=len(current_tags), champion_images=champion_images, current_images=current_images,
        new_vocabulary_tags=[t for t in current_vocabulary if t not in served and t not in labelled],
    )


def retraining_due(
    growth: Growth, min_new_tags: int | None, min_new_images: int | None, min_relative_growth: float | None
) -> tuple[bool, str]:
    """Whether any threshold is reached, and a sentence saying which (or why nothing is due)."""
    reached, missed = [], []
    checks = (
        ("new labelled tags", len(growth.new_tags), min_new_tags),
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
    reason = "nothing is due: " + ("; ".join(missed) if missed else "every threshold is off")
    if growth.new_vocabulary_tags:
        reason += (f"; {len(growth.new_vocabulary_tags)} tags added to the vocabulary only, ranked by the champion"
                   " as they are (no labels to learn from)")
    return False, reason
