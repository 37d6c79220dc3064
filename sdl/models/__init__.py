"""SDL model: a timm backbone whose last layer outputs a per-image matrix A (M x d).

Paper section 3.2: the backbone's last fully connected layer is replaced so that the network
outputs an ``M x d_w`` linear transformation matrix per image (``M`` principal directions in
the word-vector space). Tags are scored with ``sdl.models.scoring.score_tags``.
"""

from sdl.models.sdl_model import (
    ModelConfig,
    SDLModel,
    create_model,
    load_model,
    save_model,
)

__all__ = ["ModelConfig", "SDLModel", "create_model", "load_model", "save_model"]
