"""Published results to compare a run with (``references/published.yaml``).

* :func:`load_references` reads the file (published results by dataset, setting and metric,
  each with its paper and table) and checks every number.
* :func:`comparison_metrics` gives the metrics that put a run next to the papers: for each
  published value of the same dataset, setting and metric, ``<setting>.<metric>.paper_<key>``
  (the published value) and ``<setting>.<metric>.delta_<key>`` (ours minus it).

Metrics are percentages, keyed as in ``eval.json``: ``{"zsl": {"map", "precision@K",
"recall@K", "f1@K"}, "gzsl": {...}}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdl.config.metric_names import SETTINGS, is_measure
from sdl.safety.errors import UserError

DEFAULT_REFERENCES = Path(__file__).resolve().parents[2] / "references" / "published.yaml"
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
# Other spellings of the datasets the references use.
DATASET_ALIASES = {
    "nuswide": "nus_wide", "nus-wide": "nus_wide", "nus_wide": "nus_wide",
    "openimages": "open_images", "open-images": "open_images", "open_images": "open_images",
    "oi": "open_images", "coco": "coco", "mscoco": "coco", "ms_coco": "coco", "ms-coco": "coco",
}


class ReferencesError(UserError, ValueError):
    """``published.yaml`` is malformed; the message names the entry and key."""


@dataclass(frozen=True)
class PublishedResult:
    """One method on one dataset, from one table of one paper."""

    key: str
    method: str
    dataset: str
    paper: str
    table: str
    metrics: dict[str, dict[str, float]]  # setting -> metric -> value (percent)
    backbone: str | None = None
    note: str | None = None

    @property
    def source(self) -> str:
        return f"{self.paper}, {self.table}"

    @property
    def label(self) -> str:
        return f"{self.method} ({self.backbone})" if self.backbone else self.method

    def value(self, setting: str, metric: str) -> float | None:
        return self.metrics.get(setting, {}).get(metric)


@dataclass(frozen=True)
class References:
    """The reference table: its version, the papers and the published results."""

    version: str
    papers: dict[str, str]
    results: list[PublishedResult] = field(default_factory=list)
    path: str | None = None

    def for_dataset(self, dataset: str) -> list[PublishedResult]:
        """Published results of ``dataset`` (any spelling in DATASET_ALIASES), in file order."""
        name = canonical_dataset(dataset)
        return [r for r in self.results if r.dataset == name]

    def get(self, key: str, dataset: str) -> PublishedResult:
        for result in self.for_dataset(dataset):
            if result.key == key:
                return result
        raise KeyError(f"no published result {key!r} for dataset {dataset!r}")


def canonical_dataset(name: str) -> str:
    """The references' name of a dataset: ``NUS-WIDE`` -> ``nus_wide``; others unchanged."""
    lowered = name.strip().lower()
    return DATASET_ALIASES.get(lowered, lowered)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReferencesError(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 100.0:
        raise ReferencesError(f"{where}: {number} is not a percentage in [0, 100]")
    return number


def _text(entry: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ReferencesError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value.strip()


def load_references(path: str | Path = DEFAULT_REFERENCES) -> References:
    """Read and check the reference table.

    Checks: a ``version``; every result has a key (unique per dataset), method, dataset and a
    source naming a listed paper and a table; settings are ``zsl``/``gzsl``; metrics are
    ``map`` or ``precision|recall|f1@K``; every value is a number in [0, 100].

    Raises:
        ReferencesError: naming the entry and key at fault.
        FileNotFoundError: no such file.
    """
    import yaml

    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, Mapping):
        raise ReferencesError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - {"version", "papers", "results"}
    if unknown:
        raise ReferencesError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    if data.get("version") is None:
        raise ReferencesError(f"{path}: missing 'version'")
    papers = data.get("papers") or {}
    if not isinstance(papers, Mapping) or not all(isinstance(v, str) for v in papers.values()):
        raise ReferencesError(f"{path}: 'papers' must map ids to citations")
    entries = data.get("results") or []
    if not isinstance(entries, list):
        raise ReferencesError(f"{path}: 'results' must be a list")
    results: list[PublishedResult] = []
    seen: set[tuple[str, str]] = set()
    allowed = {"key", "method", "dataset", "backbone", "source", "note", *SETTINGS}
    for index, entry in enumerate(entries):
        where = f"{path.name}: results[{index}]"
        if not isinstance(entry, Mapping):
            raise ReferencesError(f"{where}: expected a mapping")
        extra = set(entry) - allowed
        if extra:
            raise ReferencesError(f"{where}: unknown key(s) {sorted(extra)}")
        key = _text(entry, "key", where)
        assert key is not None
        if not _KEY.match(key):
            raise ReferencesError(f"{where}.key: {key!r} must be lowercase letters, digits and '_'")
        dataset = canonical_dataset(_text(entry, "dataset", where) or "")
        where = f"{path.name}: {dataset}/{key}"
        if (dataset, key) in seen:
            raise ReferencesError(f"{where}: duplicate key for this dataset")
        seen.add((dataset, key))
        source = entry.get("source")
        if not isinstance(source, Mapping):
            raise ReferencesError(f"{where}.source: expected {{paper, table}}")
        paper = _text(source, "paper", f"{where}.source")
        if paper not in papers:
            raise ReferencesError(f"{where}.source.paper: {paper!r} is not listed under 'papers'")
        table = _text(source, "table", f"{where}.source")
        metrics: dict[str, dict[str, float]] = {}
        for setting in SETTINGS:
            values = entry.get(setting)
            if values is None:
                continue
            if not isinstance(values, Mapping) or not values:
                raise ReferencesError(f"{where}.{setting}: expected a mapping of metrics")
            for metric, value in values.items():
                if not isinstance(metric, str) or not is_measure(metric):
                    raise ReferencesError(f"{where}.{setting}: unknown metric {metric!r}")
                metrics.setdefault(setting, {})[metric] = _number(value, f"{where}.{setting}.{metric}")
        if not metrics:
            raise ReferencesError(f"{where}: no zsl or gzsl numbers")
        results.append(
            PublishedResult(
                key=key, method=_text(entry, "method", where) or key, dataset=dataset,
                paper=str(paper), table=str(table), metrics=metrics,
                backbone=_text(entry, "backbone", where, required=False),
                note=_text(entry, "note", where, required=False),
            )
        )
    return References(version=str(data["version"]), papers=dict(papers), results=results, path=str(path))


# --------------------------------------------------------------------------- comparison


def our_metrics(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The comparable part of an eval.json: setting -> metric -> value."""
    out: dict[str, dict[str, float]] = {}
    for setting in SETTINGS:
        values = results.get(setting) or {}
        out[setting] = {
            m: float(v) for m, v in values.items()
            if is_measure(m) and isinstance(v, int | float) and not isinstance(v, bool)
        }
    return out


def comparison_metrics(results: Mapping[str, Any], published: Sequence[PublishedResult]) -> dict[str, float]:
    """``{"<setting>.<metric>.paper_<key>": published, "<setting>.<metric>.delta_<key>": ours - published}``
    for every published value whose dataset, setting and metric we also have (keys keep '@';
    ``sdl.mlops.tracking.metric_name`` turns them into MLflow names)."""
    ours = our_metrics(results)
    out: dict[str, float] = {}
    for ref in published:
        for setting, values in ref.metrics.items():
            for metric, value in values.items():
                if metric in ours.get(setting, {}):
                    out[f"{setting}.{metric}.paper_{ref.key}"] = value
                    out[f"{setting}.{metric}.delta_{ref.key}"] = ours[setting][metric] - value
    return out
