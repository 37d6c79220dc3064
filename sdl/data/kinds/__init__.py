"""The dataset kinds, one file each, registered by name (see :mod:`sdl.data.kinds.registry`):
``embedded`` (offline Animal-MNIST mosaics), ``nus_wide``, ``coco``, ``open_images``.

Importing this package registers every kind; a new kind is a new file here plus its import.
"""

from sdl.data.kinds import coco, embedded, nus_wide, open_images  # noqa: F401  (registration)
from sdl.data.kinds.registry import KINDS, Acquired, check_download_options, check_options, get_kind

__all__ = ["KINDS", "Acquired", "check_download_options", "check_options", "get_kind"]
