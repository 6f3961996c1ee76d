"""The rollout guards (aimass.guards) on exact figures: each waits for its minimum sample, then passes
or trips at its threshold; accuracy by a one-sided pooled two-proportion z-test (classifiers) or a
one-sided Welch t-test on absolute errors (regressors), at known values."""

from __future__ import annotations

from typing import Any

import pytest

from aimass.contracts.registry import Guards, LiveFigures
from aimass.guards import (
    accuracy,
    agreement,
    error_rate,
    judge,
    latency_p99,
    may_advance,
    t_quantile,
    welch,
    z_two_proportions,
)
from aimass.serving.live import LATENCY_BOUNDS_MS, label_counters, summary


def figures(**values: Any) -> LiveFigures:
    return LiveFigures.model_validate(summary({}) | values)


def served(requests: int, errors: int = 0, p99: float | None = 10.0) -> LiveFigures:
    return figures(requests=requests, errors=errors, error_rate=errors / requests, latency_p99_ms=p99)


GUARDS = Guards(min_requests=100, max_error_rate_increase=0.01, max_p99_ratio=2.0)


def test_error_rate_waits_for_both_samples_then_trips_only_above_stable_plus_margin() -> None:
    assert error_rate(served(1000, 10), served(99, 50), GUARDS).status == "waiting"
    assert error_rate(served(99, 0), served(1000, 500), GUARDS).status == "waiting"
    # stable 1 %, margin 1 %: a canary at 2 % exactly passes, at 2.1 % trips
    assert error_rate(served(1000, 10), served(1000, 20), GUARDS).status == "passed"
    tripped = error_rate(served(1000, 10), served(1000, 21), GUARDS)
    assert tripped.status == "tripped"
    assert tripped.figures["canary_error_rate"] == 0.021 and tripped.figures["stable_error_rate"] == 0.01
    assert "2.10 %" in tripped.detail and "2.00 %" in tripped.detail


def test_latency_trips_when_the_canary_p99_bucket_is_above_ratio_times_the_stables() -> None:
    # 1-2-5 bounds: with ratio 2, stable p99 in the 10 ms bucket allows the 20 ms bucket, not 50 ms
    assert latency_p99(served(200, p99=10), served(200, p99=20), GUARDS).status == "passed"
    assert latency_p99(served(200, p99=10), served(200, p99=50), GUARDS).status == "tripped"
    assert latency_p99(served(200, p99=20), served(200, p99=50), GUARDS).status == "tripped"  # 2.5x apart
    assert latency_p99(served(200, p99=10), served(50, p99=5000), GUARDS).status == "waiting"
    assert 20 in LATENCY_BOUNDS_MS and 50 in LATENCY_BOUNDS_MS


def test_agreement_waits_without_a_shadow_or_enough_compared_then_trips_below_the_floor() -> None:
    guards = Guards(min_agreement=0.9, min_compared=100)
    assert agreement(None, guards).status == "waiting"
    assert agreement(figures(compared=99, agreement=0.1), guards).status == "waiting"
    assert agreement(figures(compared=100, agreement=0.9), guards).status == "passed"
    assert agreement(figures(compared=100, agreement=0.89), guards).status == "tripped"


def test_the_pooled_z_statistic_at_known_values() -> None:
    # 80/100 vs 90/100: pooled 0.85, se = sqrt(0.85 * 0.15 * 0.02) = 0.0504975, z = -0.1 / se
    assert z_two_proportions(80, 100, 90, 100) == pytest.approx(-1.98030, abs=1e-5)
    assert z_two_proportions(50, 50, 50, 50) == 0.0  # nothing tells them apart


@pytest.mark.parametrize(
    ("confidence", "status"),
    [(0.95, "tripped"), (0.975, "tripped"), (0.99, "passed")],  # z = -1.980 vs -1.645, -1.960, -2.326
)
def test_classifier_accuracy_trips_only_when_significantly_below_the_stable(
    confidence: float, status: str
) -> None:
    guards = Guards(accuracy_confidence=confidence, min_labelled=50)
    stable, canary = figures(labelled=100, accuracy=0.9), figures(labelled=100, accuracy=0.8)
    result = accuracy(stable, canary, guards)
    assert result.status == status
    assert result.figures["z"] == pytest.approx(-1.98030, abs=1e-5)


def test_accuracy_waits_for_its_labels_and_a_better_canary_never_trips() -> None:
    guards = Guards(min_labelled=50)
    assert accuracy(
        figures(labelled=49, accuracy=1.0), figures(labelled=500, accuracy=0.0), guards
    ).status == ("waiting")
    assert accuracy(
        figures(labelled=100, accuracy=0.8), figures(labelled=100, accuracy=0.95), guards
    ).status == ("passed")


def test_the_t_quantile_matches_students_table() -> None:
    # Student's t, one-sided: df 10 at 95 % 1.812461, df 30 1.697261, df 10 at 99 % 2.763769
    assert t_quantile(0.95, 10) == pytest.approx(1.812461, rel=1e-5)
    assert t_quantile(0.95, 30) == pytest.approx(1.697261, rel=1e-6)
    assert t_quantile(0.99, 10) == pytest.approx(2.763769, rel=1e-4)


def test_regressor_accuracy_is_a_welch_test_on_absolute_errors() -> None:
    # canary MAE 1.2 (sd 0.5, n 60) vs stable 1.0 (sd 0.4, n 80): se = sqrt(0.25/60 + 0.16/80)
    t, df = welch(1.2, 0.5, 60, 1.0, 0.4, 80)
    assert t == pytest.approx(0.2 / (0.25 / 60 + 0.002) ** 0.5)
    assert t == pytest.approx(2.54686, abs=1e-5) and df == pytest.approx(110.26, abs=0.01)
    guards = Guards(min_labelled=50)
    stable = figures(labelled=80, mae=1.0, abs_error_sd=0.4)
    assert accuracy(stable, figures(labelled=60, mae=1.2, abs_error_sd=0.5), guards).status == "tripped"
    assert accuracy(stable, figures(labelled=60, mae=1.05, abs_error_sd=0.5), guards).status == "passed"


def test_label_counters_add_up_to_accuracy_mae_and_the_sd_of_absolute_errors() -> None:
    counters: dict[str, int] = {}
    for error in (0.5, 1.5, 1.0):
        for key, value in label_counters(None, error).items():
            counters[key] = counters.get(key, 0) + value
    figures_ = summary(counters)
    assert figures_["labelled"] == 3 and figures_["accuracy"] is None
    assert figures_["mae"] == pytest.approx(1.0) and figures_["abs_error_sd"] == pytest.approx(0.5)
    right, wrong = label_counters(True, None), label_counters(False, None)
    assert summary({k: right.get(k, 0) * 3 + wrong.get(k, 0) for k in right | wrong})["accuracy"] == 0.75


def test_a_step_waits_for_errors_and_latency_but_not_for_labels_or_shadow() -> None:
    judged = judge({"stable": served(200), "canary": served(200)}, GUARDS)
    assert [r.status for r in judged] == ["passed", "passed", "waiting", "waiting"]
    assert may_advance(judged, 50)
    short = judge({"stable": served(200), "canary": served(20)}, GUARDS)
    assert not may_advance(short, 50)
    # At 100 % the stable gets nothing new: the canary's own sample is enough
    alone = judge({"stable": served(10), "canary": served(200)}, GUARDS)
    assert not may_advance(alone, 50) and may_advance(alone, 100)
    tripped = judge({"stable": served(200), "canary": served(200, errors=100)}, GUARDS)
    assert not may_advance(tripped, 100)
