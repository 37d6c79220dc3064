"""The comparison of a run with the published results, as a table (Markdown and HTML) with
the chance level of each metric."""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdl.config.metric_names import SETTINGS, Measure
from sdl.data.split import TagSplit
from sdl.eval.references import (
    PublishedResult,
    comparison_metrics,
    load_references,
    our_metrics,
)

log = logging.getLogger(__name__)


def _measure_order(metric: str) -> tuple[int, int, int]:
    return Measure.parse(metric).order()


def comparison_table(
    results: Mapping[str, Any],
    published: Sequence[PublishedResult] = (),
    chance: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """One row per (setting, metric): ``ours``, ``chance`` and, per published result, its value
    (column ``<key>``) and our difference (``Δ <key>``). Rows: every metric we have, plus the
    published ones we lack (ours empty). Empty cells are NaN."""
    ours = our_metrics(results)
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
        for metric in sorted(metrics, key=_measure_order):
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
    header: Sequence[str] = (), density: pd.DataFrame | None = None,
) -> str:
    """The table as GitHub Markdown, with the sources of the published columns below it (and
    the label-density table, :func:`label_density_table`, when given)."""
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
    if density is not None and not density.empty:
        lines += ["", f"## {DENSITY_TITLE}", "", "| " + " | ".join(map(str, density.columns)) + " |",
                  "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(density.columns))) + "|"]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in density.itertuples(index=False)]
        lines += ["", DENSITY_CAPTION]
    return "\n".join(lines) + "\n"


def table_html(
    table: pd.DataFrame, title: str = "Comparison with published results",
    published: Sequence[PublishedResult] = (), papers: Mapping[str, str] | None = None,
    header: Sequence[str] = (), density: pd.DataFrame | None = None,
) -> str:
    """The table as a standalone HTML page (escaped), with the sources (and the label-density
    table) below it."""
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
    if density is not None and not density.empty:
        head = "".join(f"<th>{esc(str(c))}</th>" for c in density.columns)
        body = "".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>"
                       for row in density.itertuples(index=False))
        parts += [f"<h2>{esc(DENSITY_TITLE)}</h2>", f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
                  f"<p>{esc(DENSITY_CAPTION)}</p>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def chance_at_k(targets: np.ndarray, columns: np.ndarray, ks: Sequence[int], protocol: str = "sdl") -> dict[str, float]:
    """Expected precision/recall/F1@K (percent) of a random tag ranking on ``columns``.

    A random top K of C tags holds K * p_i / C of image i's p_i positives in expectation, so
    P@K = mean_i(p_i) / C and R@K = K / C (micro averages, as in :mod:`sdl.eval.metrics`), over the
    images the protocol keeps (``"sdl"``: those with a positive among ``columns``).
    """
    t = np.asarray(targets)[:, columns] == 1
    positives = t.sum(axis=1)
    if protocol in ("sdl", "open_images"):  # both drop the images without a positive
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


def chance_levels(
    targets: np.ndarray, tags: TagSplit, ks: Sequence[int], protocol: str,
    image_sets: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """Expected P/R/F1@K of a random ranking per setting, over the setting's own test images
    where it has them (the chance mAPs are in eval.json)."""
    unseen = np.arange(len(tags.seen), len(tags.all_tags))
    columns = {"zsl": unseen, "gzsl": np.arange(len(tags.all_tags))}
    out = {}
    for setting, cols in columns.items():
        rows = np.asarray(image_sets[setting], dtype=bool) if image_sets and setting in image_sets else slice(None)
        out[setting] = chance_at_k(np.asarray(targets)[rows], cols, ks, protocol)
    return out


def published_label_density(published: Sequence[PublishedResult]) -> dict[str, dict[str, tuple[float, str]]]:
    """Positives per evaluated test image implied by each published P@K and R@K, per result
    key and setting: K * P / R (P = hits / (K * images), R = hits / positives, so
    positives / images = K * P / R), at the smallest K the result reports both for; with the
    arithmetic as a string (e.g. SDL NUS-WIDE ZSL: 3 * 24.2 / 41.3 = 1.76)."""
    out: dict[str, dict[str, tuple[float, str]]] = {}
    for ref in published:
        for setting in SETTINGS:
            values = ref.metrics.get(setting, {})
            ks = sorted(Measure.parse(m).k or 0 for m in values if m.startswith("precision@"))
            for k in ks:
                p, r = values.get(f"precision@{k}"), values.get(f"recall@{k}")
                if p is not None and r:
                    out.setdefault(ref.key, {})[setting] = (k * p / r, f"{k}·{p:g}/{r:g}")
                    break
    return out


DENSITY_TITLE = "Label density: positives per evaluated test image"
DENSITY_CAPTION = (
    "Ours: eval.json's labels_per_image. Published: K·P/R from each paper's P@K and R@K "
    "(P = hits/(K·images), R = hits/positives), at its smallest K. Another density means another "
    "test image set or other labels, whatever the model."
)


def label_density_table(results: Mapping[str, Any], published: Sequence[PublishedResult]) -> pd.DataFrame:
    """Our label density (eval.json's ``labels_per_image``) beside the published ones that
    :func:`published_label_density` implies, one row per setting, as text cells."""
    ours = results.get("labels_per_image") or {}
    implied = published_label_density(published)
    keys = [r.key for r in published if r.key in implied]
    rows = []
    for setting in SETTINGS:
        value = ours.get(setting)
        row = {"setting": setting.upper(), "ours": f"{value:.2f}" if isinstance(value, int | float) else "–"}
        for key in keys:
            density = implied[key].get(setting)
            row[key] = f"{density[0]:.2f} ({density[1]})" if density else "–"
        rows.append(row)
    return pd.DataFrame(rows, columns=["setting", "ours", *keys])


@dataclass(frozen=True)
class Comparison:
    """A run next to the published results of its dataset: the comparison metrics and the
    same as a Markdown and an HTML table (with the chance level of each metric)."""

    metrics: dict[str, float]
    markdown: str
    html: str
    references_version: str
    compared: list[str]


def compare_with_published(
    dataset: str, results: dict[str, Any], chance: dict[str, dict[str, float]], references_path: str | Path | None,
    run_id: str | None = None,
) -> Comparison:
    """Our results against ``references_path``'s published results for ``dataset`` (chance
    only when there is no reference file)."""
    published: list[PublishedResult] = []
    references = None
    if references_path and Path(references_path).is_file():
        references = load_references(references_path)
        published = references.for_dataset(dataset)
    else:
        log.warning("no reference table at %s: comparing with chance only", references_path)
    table = comparison_table(results, published, chance)
    header = [f"Dataset: {dataset}; test images: ZSL {results.get('images', {}).get('zsl', '?')}, "
              f"GZSL {results.get('images', {}).get('gzsl', '?')}; protocol: {results.get('protocol', '?')}."]
    if references is not None:
        header.append(f"References: {Path(references.path or '').name} version {references.version}.")
    if run_id:
        header.append(f"MLflow run: {run_id}.")
    papers = references.papers if references else None
    title = f"{dataset}: ours vs published"
    density = label_density_table(results, published) if "labels_per_image" in results else None
    comparison = Comparison(
        metrics=comparison_metrics(results, published),
        markdown=table_markdown(table, title, published, papers, header, density),
        html=table_html(table, title, published, papers, header, density),
        references_version=references.version if references else "none",
        compared=[r.key for r in published],
    )
    log.info("comparison with %d published result(s):\n%s", len(published), comparison.markdown)
    return comparison
