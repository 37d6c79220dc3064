"""The promotion gate: the rule alone (``decide``, hand-worked cases) and the gate on two
registered versions, checked against metrics computed independently (torch + scikit-learn)."""

from __future__ import annotations

import json

import pytest

from sdl.mlops import gate, registry, tracking
from sdl.mlops.gate import decide
from tests.helpers.registry_project import (
    Project,
    independent_gzsl_map,
    lineage,
)


def _results(zsl_map: float, gzsl_map: float, f1: float = 30.0) -> dict[str, dict[str, float]]:
    return {"zsl": {"map": zsl_map, "f1@3": f1}, "gzsl": {"map": gzsl_map, "f1@3": f1}}


def test_decide_promotes_only_a_real_win_by_the_margin() -> None:
    # 41.5 vs 40.0 on GZSL mAP: +1.5 points
    win = decide(_results(20, 41.5), _results(25, 40.0), "gzsl.map", 1.0)
    assert win.promoted and win.delta == pytest.approx(1.5) and win.champion_value == 40.0
    assert "beats" in win.reason and "+1.500" in win.reason
    short = decide(_results(20, 41.5), _results(25, 40.0), "gzsl.map", 2.0)  # wins, but by less than the margin
    assert not short.promoted and "does not beat" in short.reason
    tie = decide(_results(20, 40.0), _results(25, 40.0), "gzsl.map", 0.0)  # a tie never promotes
    assert not tie.promoted and tie.delta == 0.0
    lose = decide(_results(20, 41.5), _results(25, 40.0), "zsl.map", 0.0)  # -5 on ZSL
    assert not lose.promoted and lose.delta == pytest.approx(-5.0)


def test_decide_without_a_champion_and_bad_arguments() -> None:
    first = decide(_results(20, 41.5), None, "gzsl.f1@3", 0.0, challenger="version 7")
    assert first.promoted and first.champion_value is None and "version 7 becomes champion" in first.reason
    with pytest.raises(ValueError, match="min_margin"):
        decide(_results(1, 1), _results(1, 1), "gzsl.map", -0.5)
    with pytest.raises(ValueError, match="looks like"):
        decide(_results(1, 1), _results(1, 1), "gzsl.top5", 0.0)
    with pytest.raises(KeyError, match=r"gzsl\.f1@5"):
        decide(_results(1, 1), _results(1, 1), "gzsl.f1@5", 0.0)


def test_gate_decision_matches_independently_computed_metrics(project: Project, logged: dict[str, str]) -> None:
    name = "sdl-gate"
    weak_dir = project.root / "models" / "weak"
    trained_map = independent_gzsl_map(project, project.model_dir)
    weak_map = independent_gzsl_map(project, weak_dir)
    assert trained_map > weak_map + 1.0, "the weak variant must lose by construction"
    client = tracking.configured_mlflow().MlflowClient()

    v1 = registry.register_logged_model(logged["weak"], name, tracking.read_run_id(weak_dir), lineage(weak_dir))
    first = gate.run_gate(name, v1, project.gate_data())
    assert first.promoted and first.champion_version is None and "first model" in first.reason
    assert registry.version_aliases(name, v1) == ["challenger", "champion"]
    assert first.challenger_value == pytest.approx(weak_map, abs=1e-3)

    v2 = registry.register_logged_model(logged["trained"], name, project.run_id, lineage(project.model_dir))
    assert registry.version_aliases(name, v2) == ["challenger"] and registry.version_aliases(name, v1) == ["champion"]
    # another primary metric, and a margin nobody can win by
    blocked = gate.run_gate(name, v2, project.gate_data(), primary_metric="zsl.f1@2", min_margin=100.0)
    assert not blocked.promoted and "zsl.f1@2" in blocked.reason and "needs > 0 and >= 100" in blocked.reason
    assert blocked.challenger_value == pytest.approx(blocked.challenger_metrics["zsl"]["f1@2"])
    assert blocked.champion_value == pytest.approx(blocked.champion_metrics["zsl"]["f1@2"])
    assert registry.current_alias_version(name, "champion") == v1

    decision = gate.run_gate(name, v2, project.gate_data())
    assert decision.champion_value == pytest.approx(weak_map, abs=1e-3)
    assert decision.challenger_value == pytest.approx(trained_map, abs=1e-3)
    assert decision.delta == pytest.approx(trained_map - weak_map, abs=2e-3)
    assert decision.promoted
    assert registry.current_alias_version(name, "champion") == v2
    version = client.get_model_version(name, str(v2))
    assert version.tags["gate.decision"] == "promoted"
    assert version.tags["gate.primary_metric"] == "gzsl.map" and version.description.startswith("Promotion gate:")
    lineage_tags = {"dataset", "data_version", "vocabulary_hash", "mlflow.source.git.commit", "backbone", "num_rows", "reg_lambda"}
    assert lineage_tags <= set(version.tags)
    # the gate's value of the trained model is the evaluation stage's (same model, data, vocabulary)
    evaluation = json.loads((project.root / "metrics/embedded/eval.json").read_text())
    assert decision.challenger_metrics["gzsl"]["map"] == pytest.approx(evaluation["gzsl"]["map"], abs=1e-4)

    with pytest.raises(ValueError, match="min_margin"):
        gate.run_gate(name, v2, project.gate_data(), min_margin=-1.0)

    # the champion is scored from its registered artifacts, not from the local folder
    from sdl.models import load_model, save_model

    model = load_model(weak_dir)
    with __import__("torch").no_grad():
        model.embedding.weight.zero_()
    save_model(model, weak_dir)
    assert gate.evaluate_registered(name, v1, project.gate_data())["gzsl"]["map"] == pytest.approx(first.challenger_value)


def test_a_gate_that_may_not_promote_records_its_verdict_and_scores(project: Project, logged: dict[str, str]) -> None:
    """Inside a DVC experiment (register.promote: auto) the gate scores and records, and the
    champion stays; its scores are metrics of the version's run, stepped by version."""
    name = "sdl-gate-policy"
    v1 = registry.register_logged_model(logged["trained"], name, project.run_id, lineage(project.model_dir))
    decision = gate.run_gate(name, v1, project.gate_data(), allowed=(False, "DVC experiment 'x'"))
    assert decision.won and not decision.promoted and decision.label == "won_not_promoted"
    assert "not promoted: DVC experiment 'x'" in decision.reason
    assert registry.current_alias_version(name, "champion") is None
    client = tracking.configured_mlflow().MlflowClient()
    assert client.get_model_version(name, str(v1)).tags["gate.decision"] == "won_not_promoted"
    history = client.get_metric_history(project.run_id, "gate.challenger.gzsl.map")
    assert any(m.step == v1 and m.value == pytest.approx(decision.challenger_value) for m in history)
    assert client.get_metric_history(project.run_id, "gate.won")[-1].value == 1.0
    assert client.get_metric_history(project.run_id, "gate.promoted")[-1].value == 0.0
    promoted = gate.run_gate(name, v1, project.gate_data())  # allowed (the default): first model becomes champion
    assert promoted.promoted and registry.current_alias_version(name, "champion") == v1
