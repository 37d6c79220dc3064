"""The promotion gate: a challenger becomes champion only when it beats the champion on the
same test images with the same vocabulary.

:func:`decide` is the rule alone (two sets of metrics in, a verdict out); :func:`run_gate`
scores both registered versions from their artifacts, applies the rule under the champion
lock, writes the decision to the version and promotes.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sdl.config.metric_names import MetricName
from sdl.mlops import tracking
from sdl.mlops.registry import (
    CHAMPION,
    GATE_WAIT_SECONDS,
    champion_lock,
    current_alias_version,
    promote,
)
from sdl.text.vocabulary import vocabulary_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateData:
    """The test set the gate scores both models on: images, targets over the vocabulary
    (``tags.all_tags`` order: seen, then unseen), the vocabulary's vectors, and each
    setting's own test images where it has some (``image_sets``, as in eval.json)."""

    paths: list[Path]
    targets: np.ndarray
    tags: Any  # sdl.data.split.TagSplit
    vectors: np.ndarray
    ks: list[int] = field(default_factory=lambda: [3, 5])
    protocol: str = "sdl"
    batch_size: int = 256
    num_workers: int = 0
    device: str = "auto"
    image_sets: Mapping[str, np.ndarray] | None = None


@dataclass(frozen=True)
class GateDecision:
    """What the gate compared and decided."""

    promoted: bool
    reason: str
    primary_metric: str
    min_margin: float
    challenger_version: int
    champion_version: int | None  # the champion before the gate
    challenger_value: float | None
    champion_value: float | None
    delta: float | None
    images: int
    vocabulary_hash: str
    challenger_metrics: dict[str, Any] = field(default_factory=dict)
    champion_metrics: dict[str, Any] | None = None
    won: bool | None = None  # the verdict; ``promoted`` is False when promotion was not allowed
    promotion: str = "the gate decides"  # why promotion was (not) allowed (register.promote)

    @property
    def label(self) -> str:
        """``promoted``, ``kept_champion`` (lost) or ``won_not_promoted`` (won; not allowed to)."""
        if self.promoted:
            return "promoted"
        return "won_not_promoted" if self.won else "kept_champion"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class IncompatibleModel(ValueError):
    """A registered model that cannot score the current vocabulary (another vector size)."""


def load_registered_network(name: str, version: int, folder: str | Path):  # type: ignore[no-untyped-def]
    """Download a version's model artifacts into ``folder``; return its network, of whichever
    family it is (weights + config as registered, read without unpickling anything)."""
    import yaml

    from sdl.models import load_model

    local = tracking.download_artifacts(f"models:/{name}/{version}", folder)
    mlmodel = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))
    artifacts = mlmodel["flavors"]["python_function"].get("artifacts", {})
    return load_model(local / artifacts["model"]["path"])


def evaluate_registered(name: str, version: int, data: GateData) -> dict[str, Any]:
    """Metrics (as in eval.json) of a registered version on ``data``."""
    from sdl.data.dataset import TaggedImageDataset
    from sdl.eval.inference import compute_scores
    from sdl.eval.tables import summarise

    with tempfile.TemporaryDirectory() as scratch:
        model = load_registered_network(name, version, scratch)
    config = model.config
    if config.wordvec_dim != data.vectors.shape[1]:
        raise IncompatibleModel(
            f"version {version} takes {config.wordvec_dim}-d tag vectors, the vocabulary has {data.vectors.shape[1]}-d"
        )
    dataset = TaggedImageDataset(data.paths, None, config.image_size, config.mean, config.std)
    scores = compute_scores(
        model, dataset, data.vectors, batch_size=data.batch_size, num_workers=data.num_workers,
        device=data.device, description=f"gate: version {version}",
    )
    return summarise(scores, data.targets, data.tags, data.ks, data.protocol, data.image_sets)


@dataclass(frozen=True)
class Verdict:
    """What :func:`decide` concluded from two sets of metrics."""

    promoted: bool
    reason: str
    challenger_value: float
    champion_value: float | None
    delta: float | None


def decide(
    challenger_metrics: Mapping[str, Any], champion_metrics: Mapping[str, Any] | None, metric: str, margin: float,
    *, challenger: str = "the challenger", champion: str = f"the {CHAMPION}",
) -> Verdict:
    """The promotion rule, without side effects: the challenger wins when its ``metric`` beats
    the champion's by more than zero and by at least ``margin`` points; with no champion
    (``champion_metrics`` None) it wins. ``challenger`` / ``champion`` name them in the reason."""
    if margin < 0:
        raise ValueError(f"min_margin must be >= 0, got {margin}")
    name = MetricName.parse(metric)
    challenger_value = name.value(challenger_metrics)
    if champion_metrics is None:
        return Verdict(True, f"first model: no {CHAMPION} yet, {challenger} becomes {CHAMPION}", challenger_value, None, None)
    champion_value = name.value(champion_metrics)
    delta = challenger_value - champion_value
    promoted = delta > 0 and delta >= margin
    reason = (
        f"{challenger} {metric} {challenger_value:.3f} {'beats' if promoted else 'does not beat'} {champion} "
        f"{champion_value:.3f}: difference {delta:+.3f}, needs > 0 and >= {margin:g}"
    )
    return Verdict(promoted, reason, challenger_value, champion_value, delta)


def run_gate(
    name: str, challenger: int, data: GateData, primary_metric: str = "gzsl.map", min_margin: float = 0.0,
    wait_seconds: float = GATE_WAIT_SECONDS, allowed: tuple[bool, str] = (True, "the gate decides"),
) -> GateDecision:
    """Compare ``challenger`` with the champion on ``data`` (:func:`decide`); promote it when it
    wins and ``allowed[0]`` (a DVC experiment is not, unless asked: ``allowed[1]`` says why). A
    challenger facing a champion that cannot score the current vocabulary wins. The decision
    is logged, written to the version (tags) and its run (the scores as metrics). The champion
    lock is held throughout, so the champion compared is the one replaced."""
    if min_margin < 0:
        raise ValueError(f"min_margin must be >= 0, got {min_margin}")
    k = MetricName.parse(primary_metric).k
    data = dataclasses.replace(data, ks=sorted(set(data.ks) | ({k} if k else set())))
    with champion_lock(name, f"promotion gate of version {challenger}", wait_seconds):
        return _gate_locked(name, challenger, data, primary_metric, min_margin, allowed)


def _gate_locked(name: str, challenger: int, data: GateData, primary_metric: str, min_margin: float,
                 allowed: tuple[bool, str]) -> GateDecision:
    champion = current_alias_version(name, CHAMPION)
    challenger_metrics = evaluate_registered(name, challenger, data)
    champion_metrics = None
    names = {"challenger": f"challenger version {challenger}", "champion": f"{CHAMPION} version {champion}"}
    if champion is None:
        verdict = decide(challenger_metrics, None, primary_metric, min_margin, challenger=f"version {challenger}")
    elif champion == challenger:
        verdict = Verdict(False, f"version {challenger} already is {CHAMPION}",
                          MetricName.parse(primary_metric).value(challenger_metrics), None, None)
    else:
        try:
            champion_metrics = evaluate_registered(name, champion, data)
        except IncompatibleModel as error:
            verdict = Verdict(True, f"{CHAMPION} version {champion} cannot score the current vocabulary ({error}); "
                              f"version {challenger} replaces it",
                              MetricName.parse(primary_metric).value(challenger_metrics), None, None)
        else:
            verdict = decide(challenger_metrics, champion_metrics, primary_metric, min_margin, **names)
    promoted = verdict.promoted and allowed[0]
    reason = verdict.reason if promoted or not verdict.promoted else f"{verdict.reason}; not promoted: {allowed[1]}"
    decision = GateDecision(
        promoted=promoted, reason=reason, primary_metric=primary_metric, min_margin=min_margin,
        challenger_version=challenger, champion_version=champion, challenger_value=verdict.challenger_value,
        champion_value=verdict.champion_value, delta=verdict.delta, images=len(data.paths),
        vocabulary_hash=vocabulary_hash(data.tags.all_tags), challenger_metrics=challenger_metrics,
        champion_metrics=champion_metrics, won=verdict.promoted, promotion=allowed[1],
    )
    _write_decision(name, decision)
    if promoted:
        promote(name, challenger, verdict.reason, action="first" if champion is None else "gate")
    log.info("%s gate: %s", name, reason)
    return decision


def gate_metrics(decision: GateDecision) -> dict[str, float]:
    """The gate's scores as run metrics (the UI charts them): both models' ZSL/GZSL numbers on
    the gate's test data, the primary metric's values and difference, the margin, the verdict."""
    metrics: dict[str, Any] = {"gate": {
        "challenger": {s: decision.challenger_metrics.get(s, {}) for s in ("zsl", "gzsl")},
        "min_margin": decision.min_margin, "promoted": float(decision.promoted), "won": float(bool(decision.won)),
    }}
    if decision.champion_metrics is not None:
        metrics["gate"]["champion"] = {s: decision.champion_metrics.get(s, {}) for s in ("zsl", "gzsl")}
    for key in ("challenger_value", "champion_value", "delta"):
        if getattr(decision, key) is not None:
            metrics["gate"][key] = getattr(decision, key)
    return tracking.flatten(metrics)


def _write_decision(name: str, decision: GateDecision) -> None:
    client = tracking.client()
    version = str(decision.challenger_version)
    run_id = client.get_model_version(name, version).run_id
    if run_id:
        tracking.log_metrics(run_id, gate_metrics(decision), step=decision.challenger_version)
    tags = {
        "gate.decision": decision.label,
        "gate.reason": decision.reason[:500],
        "gate.primary_metric": decision.primary_metric,
        "gate.min_margin": f"{decision.min_margin:g}",
        "gate.challenger_value": f"{decision.challenger_value:.4f}" if decision.challenger_value is not None else "",
        "gate.champion_version": str(decision.champion_version or ""),
        "gate.champion_value": f"{decision.champion_value:.4f}" if decision.champion_value is not None else "",
        "gate.images": str(decision.images),
        "gate.vocabulary_hash": decision.vocabulary_hash,
        "gate.time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=f"Promotion gate: {decision.reason}")
