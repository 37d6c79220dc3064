"""The released SDL checkpoints (github.com/Alibaba-MIIL/ZS_SDL) as models of this project.

The ZS_SDL README links the NUS-WIDE model ``NUS_mtresnet_224.pth`` (README:35). Its layout,
from the released code: ``torch.save({'model': state_dict, 'num_classes': ..., 'idx_to_class':
...})`` read back by ``infer.py:38-43`` (``train.py`` itself saves the bare state dict,
:171, :188). The state dict is MIIL's TResNet-M ``body`` with InPlaceABN layers, no ``body.``
prefix (``to_sdl``, factory.py:11-17) and no ``num_batches_tracked``, then the head:

    conv1.0.weight (64, 48, 3, 3), conv1.1.{weight,bias,running_mean,running_var}   stem
    layerL.j.convK.0.weight, layerL.j.convK.1.*           conv + InPlaceABN
    layer2.0.conv1.0.{0,1}.*, layer{3,4}.0.conv2.0.{0,1}.* the anti-aliased stride-2 convs
    layerL.0.downsample.1.{0,1}.*  (L = 2..4)             AvgPool, then conv + InPlaceABN
    layerL.j.se.fc{1,2}.{weight,bias}  (L = 1..3)         squeeze-excitation
    embedding.weight (300 M, 2048)                         Linear(2048, 300 M, bias=False)

The head's output is viewed as (B, 300, M) (``x.view(B, 300, -1)``, SDL_loss.py:30; infer.py:67),
the layout ``SDLModel`` keeps, so ``embedding.weight`` loads as it is. The backbone goes through
timm's TResNet checkpoint filter (``timm.models.tresnet.checkpoint_filter_fn``), which maps these
names to timm's and turns InPlaceABN's weight into a BatchNorm weight (``|w| + 1e-5``, the scale
InPlaceABN applies, inplace_abn_cpu.cpp:103); that filter needs the ``body.`` prefix of MIIL's
ImageNet checkpoints, added here. The load is strict: every backbone tensor must be in the file
and a tensor that is neither backbone nor head is an error naming it (timm alone, asked for a
headless network, would load such a file non-strictly and silently keep random weights).

The released preprocessing: square resize to 224 px and ``pixels / 255``, no mean/std, no crop
(infer.py:57-61; train.py's validation transform, :65-78): ``ModelConfig(image_size=224,
mean=(0, 0, 0), std=(1, 1, 1))``. (infer.py resizes with PIL's default filter, train.py's
validation with torchvision's bilinear ``Resize``; this project resizes bilinearly.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from sdl.models.pretrained import backbone_from_state
from sdl.models.sdl_model import SDLModel, assemble_model

log = logging.getLogger(__name__)

RELEASED_BACKBONE = "tresnet_m.miil_in1k"  # MIIL's ImageNet-1k TResNet-M (ZS_SDL README:57)
RELEASED_WORDVEC_DIM = 300  # ``embed_len = 300`` (SDL_loss.py:13)
RELEASED_IMAGE_SIZE = 224
RELEASED_MEAN = (0.0, 0.0, 0.0)
RELEASED_STD = (1.0, 1.0, 1.0)
HEAD_PREFIX = "embedding."


def read_released_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a released checkpoint: ``{'model': ..., 'num_classes', 'idx_to_class'}``
    or a bare state dict, read with ``weights_only=True`` (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"released checkpoint {path} not found (ZS_SDL README:35 links NUS_mtresnet_224.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickling refusal, a truncated file
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (or {{'model': state_dict, ...}})")
    return dict(state)


def load_released_checkpoint(
    path: str | Path, *, backbone: str = RELEASED_BACKBONE, wordvec_dim: int = RELEASED_WORDVEC_DIM,
    image_size: int = RELEASED_IMAGE_SIZE,
) -> SDLModel:
    """A released ZS_SDL checkpoint as an ``SDLModel`` with the released preprocessing.

    M is read from the head (``embedding.weight`` of shape (wordvec_dim * M, features)); an
    ``embedding.bias``, if the file has one, becomes the head's bias.
    """
    state = read_released_state(path)
    head = {k[len(HEAD_PREFIX):]: state.pop(k) for k in list(state) if k.startswith(HEAD_PREFIX)}
    unknown_head = sorted(set(head) - {"weight", "bias"})
    if "weight" not in head or unknown_head:
        found = ", ".join(HEAD_PREFIX + k for k in sorted(head)) or "none"
        raise ValueError(f"{path}: expected the SDL head embedding.weight (and optionally embedding.bias), found {found}")
    weight = head["weight"]
    if weight.dim() != 2 or weight.shape[0] % wordvec_dim:
        raise ValueError(
            f"{path}: embedding.weight has shape {tuple(weight.shape)}; expected (M * {wordvec_dim}, features)"
        )
    num_rows = weight.shape[0] // wordvec_dim
    body = {k if k.startswith("body.") else f"body.{k}": v for k, v in state.items()}
    network = backbone_from_state(backbone, body, str(path))
    if weight.shape[1] != network.num_features:
        raise ValueError(f"{path}: embedding.weight takes {weight.shape[1]} features, {backbone} gives {network.num_features}")
    model = assemble_model(
        network, backbone, num_rows, wordvec_dim, image_size=image_size, mean=RELEASED_MEAN, std=RELEASED_STD,
        head_bias="bias" in head,
    )
    with torch.no_grad():
        model.embedding.weight.copy_(weight)
        if "bias" in head:
            if head["bias"].shape != (weight.shape[0],):
                raise ValueError(f"{path}: embedding.bias has shape {tuple(head['bias'].shape)}, expected ({weight.shape[0]},)")
            model.embedding.bias.copy_(head["bias"])
    log.info("released checkpoint %s: %s, M = %d, d = %d, head bias %s", Path(path).name, backbone, num_rows,
             wordvec_dim, "bias" in head)
    return model.eval()
