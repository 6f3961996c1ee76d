"""Drift judged over a model's features as one family (aimass.quality.drift, Holm's step-down), on
synthetic windows against a synthetic 30-feature baseline; and the monitor's small parts: windows,
durations, what a captured answer predicted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from aimass.contracts.monitoring import since_seconds
from aimass.monitoring.window import Window
from aimass.quality import drift
from aimass.quality.baseline import feature_statistics, prediction_value
from aimass.quality.columns import Column

FEATURES = 30
rng = np.random.default_rng(7)
REFERENCE = rng.normal(size=(5000, FEATURES))
NUMERIC = [feature_statistics(Column(f"f{j}", "numeric"), REFERENCE[:, j]) for j in range(FEATURES)]
CATEGORIES = ["a", "b", "c", "d"]
CATEGORICAL = [
    feature_statistics(Column(f"c{j}", "string"), rng.choice(CATEGORIES, 5000).astype(object))
    for j in range(FEATURES)
]


def numeric_window(rows: int, seed: int, shift: float = 0.0) -> list[dict[str, Any]]:
    window = np.random.default_rng(seed).normal(size=(rows, FEATURES))
    window[:, 0] += shift
    found = [
        drift.numeric_drift(f"f{j}", window[:, j], NUMERIC[j]["numerical_statistics"])
        for j in range(FEATURES)
    ]
    return drift.judge([f for f in found if f is not None])


def categorical_window(rows: int, seed: int) -> list[dict[str, Any]]:
    draw = np.random.default_rng(seed)
    found = [
        drift.categorical_drift(
            f"c{j}", list(draw.choice(CATEGORIES, rows)), CATEGORICAL[j]["string_statistics"]
        )
        for j in range(FEATURES)
    ]
    return drift.judge([f for f in found if f is not None])


def test_holm_adjusts_each_p_value_by_its_rank_and_keeps_them_in_order() -> None:
    assert drift.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert drift.holm([0.5, 0.9]) == [1.0, 1.0]
    assert drift.holm([]) == []


def test_at_most_5_of_100_clean_windows_of_a_30_feature_model_flag_any_feature() -> None:
    flagged = [seed for seed in range(100) if any(d["drifted"] for d in numeric_window(1000, seed))]

    assert len(flagged) <= 5


def test_clean_categorical_windows_would_flag_features_without_the_correction_and_rarely_do_with_it() -> None:
    windows = [categorical_window(1000, seed) for seed in range(100)]

    uncorrected = [w for w in windows if any(d["chi_square_p_value"] < 0.01 for d in w)]
    corrected = [w for w in windows if any(d["drifted"] for d in w)]
    # About 1 - 0.99 ** 30, a quarter of the windows, would raise drift at 1 % per feature; with the
    # correction about 1 % do (the family-wise level), at most 5 % is the target
    assert len(uncorrected) >= 15
    assert len(corrected) <= 5


def test_a_half_standard_deviation_shift_in_one_feature_is_found_in_that_feature_only() -> None:
    found = numeric_window(1000, seed=3, shift=0.5)

    assert [d["feature"] for d in found if d["drifted"]] == ["f0"]
    assert found[0]["p_value_adjusted"] < 0.01 and found[0]["psi"] > 0.2


def test_too_few_values_give_no_drift_figures() -> None:
    few = np.zeros(drift.MIN_DRIFT_ROWS - 1)

    assert drift.numeric_drift("f0", few, NUMERIC[0]["numerical_statistics"]) is None
    assert drift.categorical_drift("c0", ["a"] * 29, CATEGORICAL[0]["string_statistics"]) is None


@pytest.mark.parametrize(
    ("since", "seconds"),
    [("24h", 86400), ("90m", 5400), ("7d", 604800), (3600, 3600), ("45", 45), (0.5, 0.5)],
)
def test_a_window_is_seconds_or_a_number_with_a_unit(since: Any, seconds: float) -> None:
    assert since_seconds(since) == seconds


@pytest.mark.parametrize("since", ["yesterday", "-1h", "0", "32d", "1w", ""])
def test_other_windows_are_refused(since: Any) -> None:
    with pytest.raises(ValueError):
        since_seconds(since)


def test_a_window_reads_each_hour_it_touches_newest_first_and_holds_its_own_times() -> None:
    window = Window(datetime(2026, 12, 6, 14, 30, tzinfo=UTC), datetime(2026, 12, 6, 16, 5, tzinfo=UTC))

    assert [h.hour for h in window.hours()] == [16, 15, 14]
    assert window.holds("2026-12-06T14:30:00.000Z") and window.holds("2026-12-06T16:05:00.000Z")
    assert not window.holds("2026-12-06T14:29:59.999Z") and not window.holds("2026-12-06T16:05:00.001Z")
    assert window.holds("2026-12-06T15:00:00+00:00") and not window.holds("not a time")


@pytest.mark.parametrize(
    ("answer", "predicted"),
    [
        ({"label": "benign", "probabilities": {"benign": 0.9}}, "benign"),
        ({"label": 1, "anomaly": {"score": 0.1}}, "1"),
        (3.5, 3.5),
        ({"value": 2, "quality": []}, 2),
        ([1, 2], None),
        (True, None),
        ({"other": 1}, None),
    ],
)
def test_a_captured_answer_predicted_its_label_as_text_or_its_value(answer: Any, predicted: Any) -> None:
    assert prediction_value(answer) == predicted
