"""Growth since the champion and the retraining decision (sdl.mlops.growth): only labels count."""

from __future__ import annotations

import pytest

from sdl.mlops.growth import measure_growth, retraining_due


def test_growth_and_thresholds() -> None:
    growth = measure_growth(["a", "b", "c", "d"], 120, ["a", "b"], 100)
    assert growth.new_tags == ["c", "d"] and growth.new_images == 20 and growth.relative == pytest.approx(1.0)
    due, reason = retraining_due(growth, min_new_tags=3, min_new_images=50, min_relative_growth=None)
    assert not due and "new labelled tags 2 (threshold 3)" in reason and "new labelled images 20 (threshold 50)" in reason
    due, reason = retraining_due(growth, min_new_tags=2, min_new_images=50, min_relative_growth=None)
    assert due and reason.startswith("retraining is due: new labelled tags 2")
    due, _ = retraining_due(measure_growth(["a"], 100, ["a"], 100), None, None, 0.1)
    assert not due
    assert retraining_due(growth, None, None, None) == (False, "nothing is due: every threshold is off")


def test_tags_added_to_the_vocabulary_only_are_no_reason_to_retrain() -> None:
    """Two extra tags in the vocabulary file, no new labels: reported, never due (the champion
    ranks them zero-shot already); the same tags with labelled images are due."""
    vocabulary_only = measure_growth(["a", "b"], 100, ["a", "b"], 100, ["a", "b", "lion", "tiger"], ["a", "b"])
    assert vocabulary_only.new_tags == [] and vocabulary_only.new_vocabulary_tags == ["lion", "tiger"]
    assert vocabulary_only.relative == 0.0
    due, reason = retraining_due(vocabulary_only, min_new_tags=1, min_new_images=1, min_relative_growth=0.01)
    assert not due and "2 tags added to the vocabulary only" in reason
    labelled = measure_growth(["a", "b", "lion"], 100, ["a", "b"], 100, ["a", "b", "lion", "tiger"], ["a", "b"])
    assert labelled.new_tags == ["lion"] and labelled.new_vocabulary_tags == ["tiger"]
    assert retraining_due(labelled, min_new_tags=1, min_new_images=None, min_relative_growth=None)[0]
