"""Every registered model family (sdl.models.registry): built by name, one finite matrix per
image, saved and loaded back as the same family, scored like the others."""

from __future__ import annotations

import pytest
import torch

from sdl.config.epsilon import EpsilonOptions
from sdl.models import FAMILIES, create_model, load_model, save_model, saved_family

TINY = {  # family -> (backbone, options): seconds-small models on the CPU
    "sdl": ("test_efficientnet", None),
    "epsilon": ("test_vit", EpsilonOptions(encoder_heads=2)),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Small models: one thread."""


def test_every_family_has_a_tiny_case():
    assert set(FAMILIES) == set(TINY)


@pytest.mark.parametrize("family", sorted(TINY))
def test_family_builds_scores_saves_and_loads(family, tmp_path):
    torch.manual_seed(0)
    backbone, options = TINY[family]
    model = create_model(backbone, 3, 8, family=family, image_size=32, options=options).eval()
    assert model.family == family
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        matrices = model(images)
        scores = model.score(images, torch.randn(5, 8))
    assert matrices.shape == (2, 3, 8) and scores.shape == (2, 5)
    assert torch.isfinite(matrices).all() and torch.isfinite(scores).all()
    folder = save_model(model, tmp_path / family)
    assert saved_family(folder) == family
    loaded = load_model(folder)
    assert type(loaded) is type(model) and loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(images), matrices)
