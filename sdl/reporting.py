"""Evaluation reports: our metrics against the published ones, and plots of a run.

* :func:`load_references` reads ``references/published.yaml`` (published results by dataset,
  setting and metric, each with its paper and table) and checks every number.
* :func:`comparison_metrics` gives the MLflow metrics that put a run next to the papers:
  for each published value of the same dataset, setting and metric, ``<setting>.<metric>.
  paper_<key>`` (the published value) and ``<setting>.<metric>.delta_<key>`` (ours minus it).
* :func:`comparison_table` (+ :func:`table_markdown`, :func:`table_html`) is the same as a table,
  with the chance level of each metric.
* :func:`plot_unseen_ap`, :func:`plot_pr_at_k`, :func:`plot_image_grid` draw the run's PNGs
  with matplotlib's Agg canvas (no pyplot, no display, no global backend switch).

Metrics are percentages, keyed as in ``eval.json``: ``{"zsl": {"map", "precision@K",
"recall@K", "f1@K"}, "gzsl": {...}}``.
"""

from __future__ import annotations

import html
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdl import tracking
from sdl.data.images import ImageDecodeError, load_rgb
from sdl.data.split import TagSplit

log = logging.getLogger(__name__)

SETTINGS = ("zsl", "gzsl")
DEFAULT_REFERENCES = Path(__file__).resolve().parent.parent / "references" / "published.yaml"
_METRIC = re.compile(r"^(map|(precision|recall|f1)@([1-9][0-9]*))$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
# Other spellings of the datasets the references use.
DATASET_ALIASES = {
    "nuswide": "nus_wide", "nus-wide": "nus_wide", "nus_wide": "nus_wide",
    "openimages": "open_images", "open-images": "open_images", "open_images": "open_images",
    "oi": "open_images", "coco": "coco", "mscoco": "coco", "ms_coco": "coco", "ms-coco": "coco",
}


class ReferencesError(ValueError):
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
                if not isinstance(metric, str) or not _METRIC.match(metric):
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


def _our_metrics(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The comparable part of an eval.json: setting -> metric -> value."""
    out: dict[str, dict[str, float]] = {}
    for setting in SETTINGS:
        values = results.get(setting) or {}
        out[setting] = {
            m: float(v) for m, v in values.items()
            if _METRIC.match(m) and isinstance(v, int | float) and not isinstance(v, bool)
        }
    return out


def comparison_metrics(results: Mapping[str, Any], published: Sequence[PublishedResult]) -> dict[str, float]:
    """``{"<setting>.<metric>.paper_<key>": published, "<setting>.<metric>.delta_<key>": ours - published}``
    for every published value whose dataset, setting and metric we also have (keys keep '@';
    ``sdl.tracking.metric_name`` turns them into MLflow names)."""
    ours = _our_metrics(results)
    out: dict[str, float] = {}
    for ref in published:
        for setting, values in ref.metrics.items():
            for metric, value in values.items():
                if metric in ours.get(setting, {}):
                    out[f"{setting}.{metric}.paper_{ref.key}"] = value
                    out[f"{setting}.{metric}.delta_{ref.key}"] = ours[setting][metric] - value
    return out


def _metric_order(metric: str) -> tuple[int, int, int]:
    match = _METRIC.match(metric)
    assert match is not None
    if metric == "map":
        return (0, 0, 0)
    return (1, int(match.group(3)), ("precision", "recall", "f1").index(match.group(2)))


def comparison_table(
    results: Mapping[str, Any],
    published: Sequence[PublishedResult] = (),
    chance: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """One row per (setting, metric): ``ours``, ``chance`` and, per published result, its value
    (column ``<key>``) and our difference (``Δ <key>``). Rows: every metric we have, plus the
    published ones we lack (ours empty). Empty cells are NaN."""
    ours = _our_metrics(results)
    chance_values = {s: dict(v) for s, v in (chance or {}).items()}
    if "chance" in results:  # eval.json's chance mAPs
        for setting in SETTINGS:
            value = results["chance"].get(f"{setting}_map")
            if value is not None:
                chance_values.setdefault(setting, {}).setdefault("map", float(value))
    rows = []
    for setting in SETTINGS:
        metrics = set(ours.get(setting, {}))
        for ref in published:
            metrics |= set(ref.metrics.get(setting, {}))
        for metric in sorted(metrics, key=_metric_order):
            row: dict[str, Any] = {
                "setting": setting.upper(), "metric": metric,
                "ours": ours.get(setting, {}).get(metric, np.nan),
                "chance": chance_values.get(setting, {}).get(metric, np.nan),
            }
            for ref in published:
                value = ref.value(setting, metric)
                row[ref.key] = np.nan if value is None else value
                row[f"Δ {ref.key}"] = np.nan if value is None else row["ours"] - value
            rows.append(row)
    columns = ["setting", "metric", "ours", "chance"]
    for ref in published:
        columns += [ref.key, f"Δ {ref.key}"]
    return pd.DataFrame(rows, columns=columns)


def _cell(value: Any, signed: bool = False) -> str:
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return "–"
        return f"{value:+.1f}" if signed else f"{value:.1f}"
    return str(value)


def _rendered(table: pd.DataFrame) -> list[list[str]]:
    return [
        [_cell(v, signed=str(c).startswith("Δ")) for c, v in zip(table.columns, row, strict=True)]
        for row in table.itertuples(index=False)
    ]


def _sources(published: Sequence[PublishedResult], papers: Mapping[str, str] | None) -> list[str]:
    lines = []
    for ref in published:
        citation = (papers or {}).get(ref.paper, ref.paper)
        line = f"{ref.key}: {ref.label}, {citation.strip()} {ref.table}."
        if ref.note:
            line += f" Note: {ref.note.strip()}"
        lines.append(line)
    return lines


_CAPTION = (
    "Ours: this run on the test split. Chance: a random ranking (mAP: mean tag prevalence; "
    "P/R/F1@K: expected value). Δ: ours minus the published value, in points."
)


def table_markdown(
    table: pd.DataFrame, title: str = "Comparison with published results",
    published: Sequence[PublishedResult] = (), papers: Mapping[str, str] | None = None,
    header: Sequence[str] = (),
) -> str:
    """The table as GitHub Markdown, with the sources of the published columns below it."""
    lines = [f"# {title}", ""]
    lines += [f"{h}  " for h in header]
    if header:
        lines.append("")
    columns = [str(c) for c in table.columns]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join(":---" if i < 2 else "---:" for i in range(len(columns))) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in _rendered(table)]
    lines += ["", _CAPTION]
    if not published:
        lines += ["", "No published results for this dataset: ours and chance only."]
    else:
        lines += ["", "Sources:", ""] + [f"- {line}" for line in _sources(published, papers)]
    return "\n".join(lines) + "\n"


def table_html(
    table: pd.DataFrame, title: str = "Comparison with published results",
    published: Sequence[PublishedResult] = (), papers: Mapping[str, str] | None = None,
    header: Sequence[str] = (),
) -> str:
    """The table as a standalone HTML page (escaped), with the sources below it."""
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in _rendered(table)
    )
    parts = [
        "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}"
        "td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}</style>",
        "</head><body>", f"<h1>{esc(title)}</h1>",
    ]
    parts += [f"<p>{esc(h)}</p>" for h in header]
    parts += [f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>", f"<p>{esc(_CAPTION)}</p>"]
    if not published:
        parts.append("<p>No published results for this dataset: ours and chance only.</p>")
    else:
        parts.append("<h2>Sources</h2><ul>" + "".join(f"<li>{esc(s)}</li>" for s in _sources(published, papers)) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def chance_at_k(targets: np.ndarray, columns: np.ndarray, ks: Sequence[int], protocol: str = "sdl") -> dict[str, float]:
    """Expected precision/recall/F1@K (percent) of a random tag ranking on ``columns``.

    A random top K of C tags holds K * p_i / C of image i's p_i positives in expectation, so
    P@K = mean_i(p_i) / C and R@K = K / C (micro averages, as in :mod:`sdl.metrics`), over the
    images the protocol keeps (``"sdl"``: those with a positive among ``columns``).
    """
    t = np.asarray(targets)[:, columns] == 1
    positives = t.sum(axis=1)
    if protocol == "sdl":
        positives = positives[positives > 0]
    c = len(columns)
    out: dict[str, float] = {}
    for k in ks:
        if not 1 <= k <= c or positives.size == 0:
            continue
        p = 100.0 * float(positives.mean()) / c
        r = 100.0 * k / c
        out[f"precision@{k}"] = p
        out[f"recall@{k}"] = r
        out[f"f1@{k}"] = 2 * p * r / (p + r) if p > 0 and r > 0 else 0.0
    return out


# --------------------------------------------------------------------------- plots


def _figure(width: float, height: float):  # type: ignore[no-untyped-def]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | Path) -> Path:
    from sdl.io import atomic_open

    path = Path(path)
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return path


def plot_unseen_ap(per_tag: pd.DataFrame, path: str | Path, setting: str = "zsl", max_tags: int = 100) -> Path:
    """Sorted bar chart of the AP of the unseen tags (``per_tag_ap.csv`` rows of ``setting``);
    with more than ``max_tags`` unseen tags, the best and worst halves are shown."""
    rows = per_tag[(per_tag["setting"] == setting) & per_tag["unseen"].astype(bool)]
    rows = rows.sort_values("ap", ascending=False, kind="stable")
    title = f"AP of the {len(rows)} unseen tags ({setting.upper()})"
    if len(rows) > max_tags:
        half = max_tags // 2
        rows = pd.concat([rows.head(half), rows.tail(max_tags - half)])
        title += f": best and worst {half}"
    figure = _figure(max(4.0, 0.3 * len(rows) + 1.5), 3.5)
    axes = figure.add_subplot(1, 1, 1)
    positions = np.arange(len(rows))
    axes.bar(positions, rows["ap"].to_numpy(), color="#4c72b0")
    if len(rows):
        mean = float(per_tag[(per_tag["setting"] == setting) & per_tag["unseen"].astype(bool)]["ap"].mean())
        axes.axhline(mean, color="#c44e52", linestyle="--", linewidth=1, label=f"mAP {mean:.1f}")
        axes.legend(loc="upper right", fontsize=8)
    axes.set_xticks(positions)
    axes.set_xticklabels(rows["tag"].tolist(), rotation=90 if len(rows) > 6 else 0, fontsize=8)
    axes.set_ylabel("AP (%)")
    axes.set_ylim(0, 100)
    axes.set_title(title, fontsize=10)
    return _save(figure, path)


def plot_pr_at_k(curves: pd.DataFrame, path: str | Path) -> Path:
    """Precision, recall and F1 against K (``pr_at_k.csv``), one panel per setting."""
    settings = [s for s in SETTINGS if (curves["setting"] == s).any()]
    figure = _figure(4.2 * max(1, len(settings)), 3.4)
    for index, setting in enumerate(settings, start=1):
        axes = figure.add_subplot(1, len(settings), index)
        rows = curves[curves["setting"] == setting].sort_values("k")
        for column, style in (("precision", "o-"), ("recall", "s-"), ("f1", "^-")):
            axes.plot(rows["k"], rows[column], style, label=column, markersize=3)
        from matplotlib.ticker import MaxNLocator

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("K (top-K tags per image)")
        axes.set_ylabel("%")
        axes.set_ylim(0, 100)
        axes.set_title(f"{setting.upper()}: P/R/F1@K", fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return _save(figure, path)


@dataclass(frozen=True)
class GridItem:
    """One image of the grid: its predicted top-k (tag, score), its true tags, a caption."""

    image: Any  # PIL image or HWC array
    predicted: list[tuple[str, float]]
    truth: set[str]
    caption: str = ""


def plot_image_grid(items: Sequence[GridItem], unseen: set[str], path: str | Path, columns: int = 4) -> Path:
    """Test images with their top-k tags: green ✓ right, red ✗ wrong, ``*`` an unseen tag;
    true tags missing from the top k are listed in grey."""
    columns = max(1, min(columns, len(items) or 1))
    rows = max(1, math.ceil(len(items) / columns))
    top_k = max((len(i.predicted) for i in items), default=1)
    figure = _figure(2.6 * columns, rows * (2.4 + 0.18 * (top_k + 1)))
    for index, item in enumerate(items):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(np.asarray(item.image))
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(item.caption, fontsize=7)
        lines = []
        for tag, score in item.predicted:
            right = tag in item.truth
            mark = "✓" if right else "✗"
            star = "*" if tag in unseen else ""
            lines.append((f"{mark} {tag}{star} {score:.2f}", "#1a7f37" if right else "#cf222e"))
        missed = sorted(item.truth - {t for t, _ in item.predicted})
        if missed:
            lines.append(("missed: " + ", ".join(t + ("*" if t in unseen else "") for t in missed), "#777777"))
        for row, (text, colour) in enumerate(lines):
            axes.text(0.0, -0.06 - 0.11 * row, text, transform=axes.transAxes, fontsize=7, color=colour, va="top")
    figure.suptitle("Top-k tags of test images (✓ right, ✗ wrong, * unseen tag)", fontsize=9)
    figure.subplots_adjust(hspace=0.2 + 0.12 * (top_k + 1))
    from sdl.io import atomic_open

    path = Path(path)
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", bbox_inches="tight")
    return path


# --------------------------------------------------------------------------- the evaluation report

PLOT_FILES = ("per_tag_ap_unseen.png", "pr_at_k.png", "test_images_topk.png")


def chance_levels(targets: np.ndarray, tags: TagSplit, ks: Sequence[int], protocol: str) -> dict[str, dict[str, float]]:
    """Expected P/R/F1@K of a random ranking per setting (the chance mAPs are in eval.json)."""
    unseen = np.arange(len(tags.seen), len(tags.all_tags))
    columns = {"zsl": unseen, "gzsl": np.arange(len(tags.all_tags))}
    return {s: chance_at_k(targets, c, ks, protocol) for s, c in columns.items()}


def grid_items(
    paths: Sequence[Path], tag_lists: Sequence[Sequence[str]], scores: np.ndarray, tags: TagSplit,
    count: int, top_k: int,
) -> list[GridItem]:
    """``count`` test images spread evenly over the split, with their GZSL top-k tags."""
    if count <= 0 or not len(paths):
        return []
    picks = sorted(set(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int).tolist()))
    names = np.asarray(tags.all_tags, dtype=object)
    items = []
    for i in picks:
        order = np.argsort(-scores[i], kind="stable")[:top_k]
        try:
            image = load_rgb(paths[i])
        except ImageDecodeError as error:  # scored before, so unlikely: skip the image
            log.warning("grid: %s", error)
            continue
        items.append(GridItem(
            image=image, predicted=[(str(names[j]), float(scores[i, j])) for j in order],
            truth=set(tag_lists[i]), caption=Path(paths[i]).name,
        ))
    return items


def write_evaluation_report(
    dataset: str, results: dict[str, Any], chance: dict[str, dict[str, float]], per_tag: Any, curves: Any,
    items: list[GridItem], unseen: set[str], plots: Path, references_path: str | None, run_id: str | None,
) -> dict[str, float]:
    """Plots into ``plots``; comparison metrics, tables and plots into the MLflow run.
    Returns the comparison metrics (empty without published results for ``dataset``)."""
    published: list[PublishedResult] = []
    references = None
    if references_path and Path(references_path).is_file():
        references = load_references(references_path)
        published = references.for_dataset(dataset)
    else:
        log.warning("no reference table at %s: comparing with chance only", references_path)
    comparison = comparison_metrics(results, published)
    table = comparison_table(results, published, chance)
    header = [f"Dataset: {dataset}; test images: ZSL {results.get('images', {}).get('zsl', '?')}, "
              f"GZSL {results.get('images', {}).get('gzsl', '?')}; protocol: {results.get('protocol', '?')}."]
    if references is not None:
        header.append(f"References: {Path(references.path or '').name} version {references.version}.")
    if run_id:
        header.append(f"MLflow run: {run_id}.")
    papers = references.papers if references else None
    title = f"{dataset}: ours vs published"
    markdown = table_markdown(table, title, published, papers, header)
    page = table_html(table, title, published, papers, header)
    plot_unseen_ap(per_tag, plots / PLOT_FILES[0])
    plot_pr_at_k(curves, plots / PLOT_FILES[1])
    if items:
        plot_image_grid(items, unseen, plots / PLOT_FILES[2])
    elif (plots / PLOT_FILES[2]).exists():
        (plots / PLOT_FILES[2]).unlink()
    if run_id:
        tracking.log_metrics(run_id, comparison)
        tracking.log_text(run_id, markdown, "evaluation/comparison.md")
        tracking.log_text(run_id, page, "evaluation/comparison.html")
        tracking.set_run_tags(run_id, {
            "references.version": references.version if references else "none",
            "references.compared": ",".join(r.key for r in published) or "none",
        })
        for name in ("per_tag_ap.csv", "pr_at_k.csv", *PLOT_FILES):
            if (plots / name).exists():
                tracking.log_artifact(run_id, plots / name, "evaluation")
    log.info("comparison with %d published result(s):\n%s", len(published), markdown)
    return comparison
