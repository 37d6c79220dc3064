"""The model families, by name (``sdl.models.registry``), each a timm backbone that outputs a
per-image matrix (M x d_w) scored against tag word vectors (``sdl.models.scoring``):

* ``sdl`` (``sdl_model``): SDL, paper section 3.2: the backbone's last layer replaced by a
  Linear to an ``M x d_w`` matrix (M principal directions in the word-vector space).
* ``epsilon`` (``epsilon_model``, ``epsilon_head``): Epsilon (AAAI 2024): a frozen backbone's
  tokens through group prompts aggregation and global forward propagation, fused to M x d_w.

``create_model(..., family=...)`` builds one; ``save_model`` / ``load_model`` write and read
either (safetensors + JSON, the family recorded in ``model.json``).
Importing this package registers every family; a new family is a new file plus its import.
"""

from sdl.models.epsilon_model import EpsilonConfig, EpsilonModel, create_epsilon_model
from sdl.models.registry import (
    FAMILIES,
    TaggingModel,
    create_model,
    get_family,
    load_model,
    save_model,
    saved_family,
)
from sdl.models.sdl_model import ModelConfig, SDLModel, create_sdl_model

__all__ = [
    "FAMILIES", "EpsilonConfig", "EpsilonModel", "ModelConfig", "SDLModel", "TaggingModel", "create_epsilon_model",
    "create_model", "create_sdl_model", "get_family", "load_model", "save_model", "saved_family",
]
