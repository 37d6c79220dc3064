"""Configuration: ``params.yaml`` read into frozen, checked dataclasses (``params``), the
training config (``training``; Epsilon's architecture options in ``epsilon``), metric names
(``metric_names``) and the strict typed reader they are built with (``typed``). Imports no
torch: reading params never loads the deep-learning stack (a test keeps it so)."""

from sdl.config.epsilon import EpsilonOptions
from sdl.config.metric_names import Measure, MetricName
from sdl.config.params import (
    STAGES,
    DatasetParams,
    DownloadParams,
    EmbedParams,
    EvaluateParams,
    ImageSplitSpec,
    RegisterParams,
    RetrainParams,
    SplitParams,
    TagSplitSpec,
    ValidateParams,
    check_params,
    dataset_params,
    load_params,
)
from sdl.config.training import AugmentConfig, TrainConfig
from sdl.config.typed import ParamsError, from_mapping, load_yaml

__all__ = [
    "STAGES", "AugmentConfig", "DatasetParams", "DownloadParams", "EmbedParams", "EpsilonOptions", "EvaluateParams",
    "ImageSplitSpec", "Measure", "MetricName", "ParamsError", "RegisterParams", "RetrainParams",
    "SplitParams", "TagSplitSpec", "TrainConfig", "ValidateParams", "check_params", "dataset_params",
    "from_mapping", "load_params", "load_yaml",
]
