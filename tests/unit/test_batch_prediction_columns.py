"""A prediction item as the scalar columns of a batch's predictions file (the row-by-row path)."""

from __future__ import annotations

from typing import Any

import pytest

from aimass.batch.job import _flat as prediction_columns


@pytest.mark.parametrize(
    ("item", "columns"),
    [
        (3.5, {"prediction": 3.5}),
        ([1, 2], {"prediction": "[1, 2]"}),
        ({"value": {"a": 1}}, {"prediction": '{"a": 1}'}),
        ({"value": None}, {"prediction": None}),
    ],
)
def test_a_bare_or_value_output_is_the_prediction_column(item: Any, columns: dict[str, Any]) -> None:
    assert prediction_columns(item) == columns


def test_a_classifiers_probabilities_are_a_column_per_class_in_the_items_order() -> None:
    named = {"label": "b", "probabilities": {"a": 0.25, "b": 0.75}, "score": 1}
    indexed = {"probabilities": [0.1, 0.9], "label": 1}

    assert list(prediction_columns(named).items()) == [
        ("label", "b"),
        ("probability_a", 0.25),
        ("probability_b", 0.75),
        ("score", 1),
    ]
    assert list(prediction_columns(indexed).items()) == [
        ("probability_0", 0.1),
        ("probability_1", 0.9),
        ("label", 1),
    ]


def test_findings_are_flat_columns() -> None:
    item = {
        "value": 2.0,
        "anomaly": {"score": 0.7, "anomalous": True, "threshold": 0.5},
        "quality": [{"feature": "x", "check": "range"}],
        "flags": ["late", "large"],
        "rules": [{"id": "r1", "action": "flag"}, {"id": "r2"}],
    }
    assert prediction_columns(item) == {
        "prediction": 2.0,
        "anomaly_score": 0.7,
        "anomalous": True,
        "quality": '[{"feature": "x", "check": "range"}]',
        "flags": "late; large",
        "rules": "r1;r2",
    }


def test_a_field_a_rule_set_is_kept_when_scalar_and_json_otherwise() -> None:
    item = {"tier": "gold", "n": 2, "ok": False, "none": None, "tags": ["a"], "meta": {"k": 1}}
    assert prediction_columns(item) == {
        "tier": "gold",
        "n": 2,
        "ok": False,
        "none": None,
        "tags": '["a"]',
        "meta": '{"k": 1}',
    }


def test_probabilities_or_an_anomaly_of_another_shape_are_kept_as_any_field() -> None:
    assert prediction_columns({"probabilities": 0.5, "anomaly": True, "quality": None}) == {
        "probabilities": 0.5,
        "anomaly": True,
        "quality": "null",
    }
    assert prediction_columns({"anomaly": [1, 2]}) == {"anomaly": "[1, 2]"}
