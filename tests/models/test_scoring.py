"""Tag scoring (sdl.models.scoring, paper eq. 1 and the section 4.1 baseline) against a loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdl._torchvision_compat import ensure_torchvision_importable
from sdl.models.scoring import row_scores, score_tags
from tests.helpers.scoring import slow_scores

ensure_torchvision_importable()


@pytest.mark.parametrize("reduction", ["max", "l2"])
@pytest.mark.parametrize("num_tags", [1, 6])
def test_score_tags_against_loop(reduction, num_tags):
    rng = np.random.default_rng(num_tags)
    matrices = rng.normal(size=(3, 4, 5))
    tags = rng.normal(size=(num_tags, 5))
    got = score_tags(torch.tensor(matrices), torch.tensor(tags), reduction)
    assert got.shape == (3, num_tags)
    np.testing.assert_allclose(got.numpy(), slow_scores(matrices, tags, reduction), rtol=1e-10)


def test_score_hand_worked():
    a = torch.tensor([[[1.0, 0.0], [0.0, -2.0]]])  # rows (1, 0) and (0, -2)
    t = torch.tensor([[3.0, 1.0], [0.0, 1.0]])
    # projections: tag 0 -> (3, -2); tag 1 -> (0, -2)
    assert score_tags(a, t, "max").tolist() == [[3.0, 0.0]]
    np.testing.assert_allclose(score_tags(a, t, "l2").numpy(), [[13**0.5, 2.0]])
    assert row_scores(a, t).tolist() == [[[3.0, 0.0], [-2.0, -2.0]]]


def test_scoring_errors():
    with pytest.raises(ValueError, match="reduction"):
        score_tags(torch.zeros(1, 2, 3), torch.zeros(4, 3), "mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tag_vectors"):
        score_tags(torch.zeros(1, 2, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="matrices"):
        score_tags(torch.zeros(2, 3), torch.zeros(4, 3))
