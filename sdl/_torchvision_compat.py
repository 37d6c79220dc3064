"""Make ``import timm`` work beside a CPU build of torch.

timm imports torchvision at ``import timm``. On the project machines torch 2.13.0 is a CPU
wheel, and PyPI's matching torchvision 0.28.0 is a CUDA build whose import fails with
``RuntimeError: operator torchvision::nms does not exist`` because its C extension cannot
load. Only then do we register the schemas of the two operators its Python side refers to
at import time; nothing in this project calls them. Where torchvision imports normally
(a matching CUDA pair on a GPU machine, a CPU pair elsewhere) this does nothing.
"""

from __future__ import annotations

import sys

import torch

_MISSING_OPERATOR = "operator torchvision::nms does not exist"
_library: torch.library.Library | None = None  # kept alive: the schemas vanish with it


def ensure_torchvision_importable() -> None:
    """Import torchvision, defining its missing operator schemas if (and only if) needed."""
    global _library
    try:
        import torchvision
        return
    except RuntimeError as error:
        if _MISSING_OPERATOR not in str(error):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision  # noqa: F401
