"""The one GPU skip: tests that need a CUDA device are marked ``gpu`` and skipped without one."""

from __future__ import annotations

import pytest
import torch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
