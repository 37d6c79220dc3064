"""Evaluation results in tests: the published references file and an eval.json-shaped result."""

from __future__ import annotations

from typing import Any

from tests.helpers.repo import REPO_ROOT

REFERENCES = REPO_ROOT / "references" / "published.yaml"


def eval_json(zsl_map: float, gzsl_map: float, ks: tuple[int, ...] = (3, 5)) -> dict[str, Any]:
    """An eval.json-shaped result."""
    out: dict[str, Any] = {"chance": {"zsl_map": 1.2, "gzsl_map": 0.4}, "images": {"zsl": 10, "gzsl": 12}, "protocol": "sdl"}
    for setting, value in (("zsl", zsl_map), ("gzsl", gzsl_map)):
        out[setting] = {"map": value}
        for k in ks:
            out[setting].update({f"precision@{k}": 20.0, f"recall@{k}": 30.0, f"f1@{k}": 24.0})
    return out
