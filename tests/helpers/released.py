"""Same-format stand-ins for the released SDL files (github.com/Alibaba-MIIL/ZS_SDL), built here.

No file of that repository is committed: the tests build files with the same structure (names,
shapes, dtypes, pickle protocol) from random values.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

# The stride-2 convs of MIIL's TResNet that are anti-aliased: a Sequential(conv2d_ABN, AA),
# so their conv and InPlaceABN sit one level deeper (layer2.0.conv1.0.0 / .0.1).
_ANTI_ALIASED = {("layer2", "conv1"), ("layer3", "conv2"), ("layer4", "conv2")}


def released_name(timm_name: str) -> str | None:
    """The released (MIIL TResNet, ``to_sdl``) name of a timm ``tresnet_m`` tensor; None for
    what the released file does not have (``num_batches_tracked``: InPlaceABN keeps none)."""
    if timm_name.endswith("num_batches_tracked"):
        return None
    name = timm_name.removeprefix("body.")
    block = re.fullmatch(r"(layer\d)\.(\d+)\.(conv\d)\.(conv|bn)\.(.+)", name)
    if block:
        layer, index, conv, part, rest = block.groups()
        slot = "0" if part == "conv" else "1"
        if index == "0" and (layer, conv) in _ANTI_ALIASED:
            return f"{layer}.{index}.{conv}.0.{slot}.{rest}"
        return f"{layer}.{index}.{conv}.{slot}.{rest}"
    name = re.sub(r"^conv1\.conv\.", "conv1.0.", name)
    name = re.sub(r"^conv1\.bn\.", "conv1.1.", name)
    name = re.sub(r"downsample\.(\d+)\.conv\.", r"downsample.\1.0.", name)
    return re.sub(r"downsample\.(\d+)\.bn\.", r"downsample.\1.1.", name)


def randomise_batchnorm(network: nn.Module, seed: int) -> None:
    """Running statistics and affine weights away from their init, so a wrong map shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def released_state_dict(reference: nn.Module, head: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """A released-layout state dict whose backbone computes what the timm ``reference`` does:
    InPlaceABN scales by |w| + 1e-5, so each BatchNorm weight w is stored as +-(w - 1e-5)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for timm_name, tensor in reference.state_dict().items():
        name = released_name(timm_name)
        if name is None:
            continue
        value = tensor.detach().clone()
        if timm_name.endswith("bn.weight"):
            signs = torch.where(torch.rand(value.shape, generator=gen) < 0.5, -1.0, 1.0)
            value = signs * (value - 1e-5)
        state[name] = value
    state["embedding.weight"] = head.clone()
    return state


# ------------------------------------------------------------------------ word-vector pickles
#
# The real files (ZS_SDL data/, commit 769fe4f), as pickletools lists them:
# * NUS_WIDE/wordvec_array.pickle: protocol 4; a bare ndarray float32 '<f4' (300, 1006),
#   Fortran order, columns of unit norm; globals numpy.core.multiarray._reconstruct,
#   numpy.ndarray, numpy.dtype (written by numpy 1).
# * NUS_WIDE/classes.pickle: protocol 4; dict {0: 'abandoned', ..., 1005: 'zoo'} (EMPTY_DICT,
#   MARK, BININT1/BININT2 key, SHORT_BINUNICODE value, ..., SETITEMS), no globals; names sorted.
# * COCO/wordvec_array.pickle: protocol 4; dict {'wordvec_array': ndarray float16 '<f2'
#   (1, 300, 80)}, Fortran order, unit-norm columns; the same three numpy globals.
# The writers below reproduce that opcode structure with any values.


class _Numpy1Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Names numpy's array reconstructor as numpy 1 does (``numpy.core.multiarray``), as in
    the released files; numpy 2 itself writes ``numpy._core.multiarray``."""

    def save_global(self, obj: object, name: str | None = None) -> None:
        if getattr(obj, "__module__", None) == "numpy._core.multiarray":
            self.save("numpy.core.multiarray")
            self.save(name or obj.__name__)  # type: ignore[attr-defined]
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def write_released_pickle(obj: object, path: Path) -> Path:
    """``obj`` pickled with protocol 4 as the released files are."""
    buffer = io.BytesIO()
    _Numpy1Pickler(buffer, protocol=4).dump(obj)
    path.write_bytes(buffer.getvalue())
    return path


def unit_columns(dim: int, count: int, seed: int, dtype: type = np.float32) -> np.ndarray:
    """(dim, count) with unit-norm columns, in Fortran order like the released arrays."""
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((count, dim))
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix.astype(dtype).T  # the transpose of a C array is Fortran-ordered


def nus_style_files(folder: Path, names: list[str], dim: int = 300, seed: int = 0) -> tuple[Path, Path, np.ndarray]:
    """``wordvec_array.pickle`` (d, C) float32 and ``classes.pickle`` {i: name}; returns the
    paths and the (d, C) array."""
    folder.mkdir(parents=True, exist_ok=True)
    array = unit_columns(dim, len(names), seed)
    vectors = write_released_pickle(array, folder / "wordvec_array.pickle")
    classes = write_released_pickle(dict(enumerate(names)), folder / "classes.pickle")
    return vectors, classes, array


def coco_style_file(folder: Path, count: int = 80, dim: int = 300, seed: int = 0) -> tuple[Path, np.ndarray]:
    """COCO's ``wordvec_array.pickle``: {'wordvec_array': float16 (1, d, C)}."""
    folder.mkdir(parents=True, exist_ok=True)
    array = unit_columns(dim, count, seed, np.float16)[None]
    return write_released_pickle({"wordvec_array": array}, folder / "wordvec_array.pickle"), array
