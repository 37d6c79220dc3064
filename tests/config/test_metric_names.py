"""Metric names (sdl.config.metric_names): the one parser of ``gzsl.f1@3``."""

from __future__ import annotations

import re

import pytest

from sdl.config.metric_names import Measure, MetricName, is_measure


@pytest.mark.parametrize(
    ("text", "setting", "kind", "k"),
    [("gzsl.map", "gzsl", "map", None), ("zsl.f1@3", "zsl", "f1", 3), ("gzsl.precision@10", "gzsl", "precision", 10),
     ("zsl.recall@1", "zsl", "recall", 1)],
)
def test_parse_and_print(text: str, setting: str, kind: str, k: int | None) -> None:
    name = MetricName.parse(text)
    assert (name.setting, name.measure.kind, name.k) == (setting, kind, k)
    assert str(name) == text


@pytest.mark.parametrize("text", ["map", "gzsl", "gzsl.", "all.map", "gzsl.f1", "gzsl.f1@0", "gzsl.f1@03", "gzsl.top@3",
                                  "gzsl.map@3", "GZSL.map"])
def test_bad_names_say_what_a_name_looks_like(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("looks like 'gzsl.map' or 'zsl.f1@3'")):
        MetricName.parse(text)


def test_value_reads_an_evaluation_result_and_names_a_missing_metric() -> None:
    results = {"zsl": {"map": 25.9, "f1@3": 30.5}, "gzsl": {"map": 12.1}}
    assert MetricName.parse("zsl.f1@3").value(results) == 30.5
    with pytest.raises(KeyError, match=r"'gzsl.f1@3' not in the results \(known: \['map'\]\)"):
        MetricName.parse("gzsl.f1@3").value(results)


def test_measures_and_their_table_order() -> None:
    assert is_measure("map") and is_measure("f1@20") and not is_measure("f1") and not is_measure("zsl.map")
    ordered = sorted(["f1@3", "map", "recall@3", "precision@5", "precision@3"], key=lambda m: Measure.parse(m).order())
    assert ordered == ["map", "precision@3", "recall@3", "f1@3", "precision@5"]
