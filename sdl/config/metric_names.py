"""Metric names, parsed in one place: ``gzsl.map``, ``zsl.f1@3``, ``gzsl.precision@10``.

A name is a *setting* (``zsl``: the unseen tags; ``gzsl``: seen and unseen tags) and a
*measure* (``map``, or ``precision``/``recall``/``f1`` at a top K). Params (the best-epoch
metric, the promotion gate's metric), the evaluation results (``results["gzsl"]["f1@3"]``),
MLflow metric keys and the comparison with published numbers all use this syntax.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SETTINGS = ("zsl", "gzsl")
_MEASURE = re.compile(r"^(map|(precision|recall|f1)@([1-9][0-9]*))$")


@dataclass(frozen=True)
class Measure:
    """``map`` or ``<precision|recall|f1>@K`` (no setting)."""

    kind: str  # map | precision | recall | f1
    k: int | None = None

    @classmethod
    def parse(cls, text: str) -> Measure:
        match = _MEASURE.match(text)
        if not match:
            raise ValueError(f"a measure looks like 'map' or 'f1@3', got {text!r}")
        if match.group(3) is None:
            return cls("map")
        return cls(match.group(2), int(match.group(3)))

    def __str__(self) -> str:
        return self.kind if self.k is None else f"{self.kind}@{self.k}"

    def order(self) -> tuple[int, int, int]:
        """Table order: mAP first, then by K, precision before recall before F1."""
        if self.k is None:
            return (0, 0, 0)
        return (1, self.k, ("precision", "recall", "f1").index(self.kind))


def is_measure(text: str) -> bool:
    """Whether ``text`` is a measure name (``map``, ``f1@3``, ...)."""
    return bool(_MEASURE.match(text))


@dataclass(frozen=True)
class MetricName:
    """A setting and a measure: ``MetricName.parse("zsl.f1@3")``."""

    setting: str  # zsl | gzsl
    measure: Measure

    @classmethod
    def parse(cls, text: str) -> MetricName:
        setting, dot, rest = str(text).partition(".")
        if setting not in SETTINGS or not dot:
            raise ValueError(f"a metric looks like 'gzsl.map' or 'zsl.f1@3', got {text!r}")
        try:
            return cls(setting, Measure.parse(rest))
        except ValueError:
            raise ValueError(f"a metric looks like 'gzsl.map' or 'zsl.f1@3', got {text!r}") from None

    @property
    def k(self) -> int | None:
        """The top K of a precision/recall/F1 metric (None for mAP)."""
        return self.measure.k

    def __str__(self) -> str:
        return f"{self.setting}.{self.measure}"

    def value(self, results: Mapping[str, Any]) -> float:
        """This metric in an evaluation result (``results[setting][measure]``)."""
        try:
            return float(results[self.setting][str(self.measure)])
        except KeyError:
            known = sorted(results.get(self.setting, {})) if isinstance(results, Mapping) else []
            raise KeyError(f"metric {str(self)!r} not in the results (known: {known})") from None

