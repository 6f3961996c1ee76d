"""The drift a batch report shows, and when it is over the retraining threshold (no AWS)."""

from __future__ import annotations

from typing import Any

import pytest

from aimass.pipeline.triggers import Drift, drift_of

FEATURES = [f"f{i}" for i in range(30)]


def report(drifted: list[str], status: str = "succeeded", checked: list[str] = FEATURES) -> dict[str, Any]:
    return {
        "status": status,
        "model": {"name": "churn", "version": 4, "backend": "onnx"},
        "drift": {
            "sample_rows": 500,
            "features": [{"feature": name, "drifted": name in drifted} for name in checked],
            "drifted": drifted,
        },
    }


def test_a_report_gives_the_drifted_share_of_the_features_it_checked() -> None:
    found = drift_of("churn", report(["f3", "f1", "f2"]))

    assert found == Drift("churn", 4, 30, ("f1", "f2", "f3"))
    assert found is not None and found.drifted_fraction == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("drifted", "threshold", "over"),
    [
        (10, 0.3, True),  # 33 % > 30 %
        (9, 0.3, False),  # exactly 30 % is not over it
        (8, 0.3, False),
        (1, 0.0, True),  # 0: any drifted feature
        (0, 0.0, False),
        (30, 1.0, False),  # 1: never
    ],
)
def test_drift_is_over_the_threshold_only_when_more_than_that_share_drifted(
    drifted: int, threshold: float, over: bool
) -> None:
    found = drift_of("churn", report(FEATURES[:drifted]))

    assert found is not None and found.over(threshold) is over


@pytest.mark.parametrize(
    "shown",
    [
        report(FEATURES, status="failed"),  # nothing was predicted to judge
        report([], checked=[]),  # too few rows: no feature checked
        {"status": "succeeded", "model": {"name": "churn", "version": 4}, "drift": None},  # no baseline
        {"status": "succeeded", "model": None, "drift": report(FEATURES)["drift"]},
    ],
)
def test_a_report_without_drift_to_judge_gives_none(shown: dict[str, Any]) -> None:
    assert drift_of("churn", shown) is None
