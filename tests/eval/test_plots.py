"""The evaluation plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from sdl.eval import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_are_pngs(tmp_path: Path) -> None:
    per_tag = pd.DataFrame({
        "setting": ["zsl"] * 3 + ["gzsl"] * 4, "tag": ["cat", "sheep", "zebra", "dog", "cat", "sheep", "zebra"],
        "unseen": [True, True, True, False, True, True, True], "ap": [50.0, 20.0, 70.0, 60.0, 40.0, 10.0, 65.0],
    })
    curves = pd.DataFrame([
        {"setting": s, "k": k, "precision": 50.0 / k, "recall": 30.0 * k, "f1": 20.0} for s in ("zsl", "gzsl") for k in (1, 2, 3)
    ])
    image = Image.fromarray(np.full((32, 32, 3), 200, np.uint8))
    items = [plots.GridItem(image, [("cat", 0.9), ("dog", 0.5)], {"cat", "zebra"}, "a.png")] * 3
    paths = [
        plots.plot_unseen_ap(per_tag, tmp_path / "ap.png"),
        plots.plot_pr_at_k(curves, tmp_path / "pr.png"),
        plots.plot_image_grid(items, {"cat", "zebra"}, tmp_path / "grid.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert min(Image.open(path).size) > 100
