"""The dataset kinds: each kind builds or fetches raw data into a folder and returns its
manifest and its tag table.

A kind is one file that registers itself (``@register_kind("coco")``, as timm registers its
models): an options dataclass (``download.<dataset>.options`` in params.yaml, checked when the
params are read) and an acquisition function ``(options, raw_dir, sources) -> Acquired``. A kind
says *what* to fetch; :class:`Sources` is *how*: the download stage gives it
:class:`sdl.data.sources.NetworkSources` (HTTP, S3, archives, local folders), so the kind
files themselves import no network code, and the stages that only check params do not depend
on it. The stages after ``download`` only see the manifest and tag table, so they assume
nothing about where the data came from.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from sdl.config.typed import ParamsError, from_mapping

if TYPE_CHECKING:
    from sdl.config.params import DatasetParams


@dataclass(frozen=True, kw_only=True)
class KindOptions:
    """Options every fetched kind takes; each kind's subclass keeps its own defaults."""

    image_dir: str | None = None  # a local folder of images already downloaded (the kind's layout)
    max_images: int | None = None  # a subset, spread evenly over the kind's image list
    workers: int = 16  # parallel downloads
    retries: int = 5
    backoff: float = 0.5  # first retry wait (s); doubles each attempt, plus jitter
    timeout: float = 60.0
    # below this share of the wanted images obtained, the download fails (pointing at image_dir)
    min_images_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_images_fraction <= 1.0:
            raise ValueError(f"min_images_fraction must be in [0, 1], got {self.min_images_fraction}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be >= 1 or null, got {self.max_images}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.retries < 0 or self.backoff < 0 or not self.timeout > 0:
            raise ValueError("retries and backoff must be >= 0 and timeout > 0")


@dataclass(frozen=True)
class WantedImage:
    """An image a kind needs, under the raw folder's ``images/``: where it comes from when it is
    neither there yet nor in the options' ``image_dir`` (a URL, an S3 object, or nothing)."""

    relative: str  # e.g. "train2014/COCO_train2014_000000000009.jpg"
    url: str | None = None
    bucket: str | None = None
    key: str | None = None


@dataclass
class GatherReport:
    """What :meth:`Sources.gather` did with the wanted images."""

    present: int = 0  # finished by an earlier run: no network at all
    local: int = 0  # linked or copied from ``image_dir``
    rejected_local: int = 0  # in ``image_dir`` but rejected by the validator
    fetched: int = 0
    failed: int = 0
    unsourced: list[str] = field(default_factory=list)  # neither local nor a URL/S3 key
    failures: list[tuple[str, str]] = field(default_factory=list)  # (image, reason)


class Sources(Protocol):
    """How a kind obtains files (implemented by ``sdl.data.sources.NetworkSources``)."""

    progress: bool

    def obtain(self, location: str, dest: Path) -> Path:
        """The local file of ``location`` (URL, ``s3://`` or path), fetched to ``dest`` if remote."""
        ...

    def extract(self, archive: Path, dest: Path, members: Collection[str] | None = None) -> list[Path]:
        """Safely extract (some members of) an archive; return the wanted files' paths."""
        ...

    def gather(
        self, wanted: Sequence[WantedImage], image_root: Path, validate: Callable[[Path], object] | None,
        *, validate_local: bool = True, desc: str = "images",
    ) -> GatherReport:
        """Put every wanted image under ``image_root``: keep it if present, else link it from
        ``image_dir``, else fetch it; failures are counted, never raised."""
        ...


@dataclass
class Acquired:
    """What a download produced: the manifest (paths relative to ``raw_dir``), the tags with
    their role where the dataset fixes the zero-shot split, and counts for the report
    (``wanted``: the images the kind tried to obtain; ``images``: those it has)."""

    manifest: pd.DataFrame
    tags: pd.DataFrame  # columns: tag, role ("seen" / "unseen" / "")
    report: dict[str, Any]


Acquirer = Callable[[Any, Path, Sources], Acquired]


@dataclass(frozen=True)
class Kind:
    """A registered dataset kind: its options dataclass and its acquisition function."""

    name: str
    options: type
    acquire: Acquirer


KINDS: dict[str, Kind] = {}


def register_kind(name: str, options: type) -> Callable[[Acquirer], Acquirer]:
    """Register an acquisition function taking ``options`` (a dataclass) under ``name``."""

    def decorate(function: Acquirer) -> Acquirer:
        KINDS[name] = Kind(name, options, function)
        return function

    return decorate


def get_kind(name: str, where: str = "download.kind") -> Kind:
    if name not in KINDS:
        raise ParamsError(f"{where}: unknown dataset kind {name!r}; known: {sorted(KINDS)}")
    return KINDS[name]


def check_options(kind: str, options: dict[str, Any], where: str) -> Any:
    """Check ``download.<dataset>`` before any work starts: ``kind`` is known and ``options``
    build that kind's dataclass (unknown keys, wrong types and impossible values are named)."""
    return from_mapping(get_kind(kind, f"{where}.kind").options, options, f"{where}.options")


def check_download_options(sections: Iterable[DatasetParams]) -> None:
    """:func:`check_options` for the ``download`` section of every dataset given."""
    for section in sections:
        check_options(section.download.kind, section.download.options, f"download.{section.name}")



def sample_evenly(items: Sequence[Any], limit: int | None) -> list[Any]:
    """At most ``limit`` items spread evenly over ``items`` (all of them when ``limit`` is None),
    so a small run still covers every folder, class and split of an ordered list."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit <= 0:
        return []
    if limit == 1:
        return [items[0]]
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]
