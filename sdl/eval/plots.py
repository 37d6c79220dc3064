"""Plots of an evaluation run, drawn with matplotlib's Agg canvas (no pyplot, no display, no
global backend switch): per-tag AP of the unseen tags, P/R/F1 over K, and a grid of test
images with their top-k tags."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdl.config.metric_names import SETTINGS
from sdl.data.images import ImageDecodeError, load_rgb
from sdl.data.split import TagSplit

log = logging.getLogger(__name__)


def _figure(width: float, height: float):  # type: ignore[no-untyped-def]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | Path) -> Path:
    from sdl.safety.atomic import atomic_open

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
    from sdl.safety.atomic import atomic_open

    path = Path(path)
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", bbox_inches="tight")
    return path


PLOT_FILES = ("per_tag_ap_unseen.png", "pr_at_k.png", "test_images_topk.png")


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


def write_plots(per_tag: pd.DataFrame, curves: pd.DataFrame, items: Sequence[GridItem], unseen: set[str],
                folder: Path) -> list[Path]:
    """The evaluation's PNG plots into ``folder`` (the grid only when there are items); return them."""
    written = [plot_unseen_ap(per_tag, folder / PLOT_FILES[0]), plot_pr_at_k(curves, folder / PLOT_FILES[1])]
    if items:
        written.append(plot_image_grid(items, unseen, folder / PLOT_FILES[2]))
    elif (folder / PLOT_FILES[2]).exists():
        (folder / PLOT_FILES[2]).unlink()
    return written
