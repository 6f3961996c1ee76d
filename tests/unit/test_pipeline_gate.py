"""The retraining pipeline's release gate (aimass.pipeline.evaluate): the metrics measured on the
held-out rows, how scores are oriented, the numbers the state machine's Choice compares, and the
settings (aimass.pipeline.config) they come from."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn import metrics as sk

from aimass.pipeline.config import TrainingConfig, merged
from aimass.pipeline.evaluate import gate, metrics, oriented

CLASSIFIED = {"accuracy": 0.9, "f1": 0.88, "roc_auc": 0.85, "log_loss": 0.35}
REGRESSED = {"rmse": 1.5, "mae": 1.1, "r2": 0.7}


def config(**fields: Any) -> TrainingConfig:
    return TrainingConfig.model_validate(fields)


def promoted(result: dict[str, Any]) -> bool:
    """What the ReleaseGate Choice in statemachines/training_pipeline.asl.json decides."""
    return bool(
        result["passes_thresholds"]
        and (not result["has_champion"] or result["candidate_score"] > result["required_score"])
    )


def test_without_a_champion_a_passing_candidate_is_promoted() -> None:
    result = gate(config(), "classification", CLASSIFIED, None)

    assert result["has_champion"] is False
    assert result["passes_thresholds"] is True
    assert result["metric"] == "roc_auc" and result["candidate_score"] == pytest.approx(0.85)
    assert result["reason"] == "no champion to beat"
    assert promoted(result)


def test_a_candidate_better_than_the_champion_by_more_than_the_margin_is_promoted() -> None:
    champion = {**CLASSIFIED, "roc_auc": 0.80}

    result = gate(config(margin=0.02), "classification", CLASSIFIED, champion)

    assert result["has_champion"] is True and result["passes_thresholds"] is True
    assert result["margin"] == 0.02
    assert result["candidate_score"] == pytest.approx(0.85)
    assert result["required_score"] == pytest.approx(0.82)
    assert result["candidate_score"] > result["required_score"]
    assert "beats" in result["reason"] and "does not beat" not in result["reason"]
    assert promoted(result)


def test_a_retrain_only_as_good_as_the_champion_is_not_promoted() -> None:
    result = gate(config(), "classification", CLASSIFIED, dict(CLASSIFIED))

    assert result["has_champion"] is True and result["passes_thresholds"] is True
    assert result["candidate_score"] == result["required_score"]
    assert not result["candidate_score"] > result["required_score"]
    assert "does not beat" in result["reason"]
    assert not promoted(result)


def test_the_margin_keeps_a_slightly_better_candidate_out() -> None:
    champion = {**CLASSIFIED, "roc_auc": 0.845}

    without_margin = gate(config(), "classification", CLASSIFIED, champion)
    with_margin = gate(config(margin=0.01), "classification", CLASSIFIED, champion)

    assert promoted(without_margin)
    assert with_margin["required_score"] == pytest.approx(0.855)
    assert with_margin["candidate_score"] < with_margin["required_score"]
    assert "does not beat" in with_margin["reason"] and "0.01" in with_margin["reason"]
    assert not promoted(with_margin)


@pytest.mark.parametrize("metric", ["log_loss", "rmse", "mae"])
def test_a_loss_is_negated_so_that_higher_is_better(metric: str) -> None:
    assert oriented(metric, 0.3) == -0.3
    assert oriented(metric, 0.2) > oriented(metric, 0.3)


@pytest.mark.parametrize("metric", ["accuracy", "f1", "roc_auc", "r2"])
def test_a_score_keeps_its_sign(metric: str) -> None:
    assert oriented(metric, 0.3) == 0.3


def test_the_smaller_log_loss_wins() -> None:
    settings = config(metric="log_loss", margin=0.01)
    better = {**CLASSIFIED, "log_loss": 0.30}
    worse = {**CLASSIFIED, "log_loss": 0.40}

    beats = gate(settings, "classification", better, worse)
    loses = gate(settings, "classification", worse, better)

    assert beats["metric"] == "log_loss"
    assert beats["candidate_score"] == pytest.approx(-0.30)
    assert beats["required_score"] == pytest.approx(-0.39)  # the champion's -0.40 plus the margin
    assert promoted(beats)
    assert loses["candidate_score"] < loses["required_score"]
    assert not promoted(loses)


def test_the_smaller_rmse_wins_by_default_for_regression() -> None:
    better = {**REGRESSED, "rmse": 1.0}

    beats = gate(config(), "regression", better, REGRESSED)
    loses = gate(config(), "regression", REGRESSED, better)

    assert beats["metric"] == "rmse"
    assert beats["candidate_score"] == pytest.approx(-1.0)
    assert beats["required_score"] == pytest.approx(-1.5)
    assert promoted(beats)
    assert not promoted(loses)


def test_accuracy_below_its_minimum_fails_the_thresholds() -> None:
    result = gate(config(thresholds={"accuracy": 0.95}), "classification", CLASSIFIED, None)

    assert result["passes_thresholds"] is False
    assert "accuracy" in result["reason"] and "below the minimum" in result["reason"]
    assert not promoted(result)


def test_log_loss_above_its_maximum_fails_the_thresholds() -> None:
    result = gate(config(thresholds={"log_loss": 0.3}), "classification", CLASSIFIED, None)

    assert result["passes_thresholds"] is False
    assert "log_loss" in result["reason"] and "above the maximum" in result["reason"]
    assert not promoted(result)


def test_a_failed_threshold_rejects_even_a_candidate_that_beats_the_champion() -> None:
    champion = {**CLASSIFIED, "roc_auc": 0.5}

    result = gate(config(thresholds={"accuracy": 0.95}), "classification", CLASSIFIED, champion)

    assert result["candidate_score"] > result["required_score"]
    assert result["passes_thresholds"] is False
    assert not promoted(result)


def test_thresholds_that_are_met_pass_including_one_met_exactly() -> None:
    thresholds = {"accuracy": 0.9, "roc_auc": 0.8, "log_loss": 0.35}

    result = gate(config(thresholds=thresholds), "classification", CLASSIFIED, None)

    assert result["passes_thresholds"] is True and result["reason"] == "no champion to beat"


def test_every_failed_threshold_is_named() -> None:
    thresholds = {"accuracy": 0.95, "log_loss": 0.3, "roc_auc": 0.8}

    result = gate(config(thresholds=thresholds), "classification", CLASSIFIED, None)

    assert result["passes_thresholds"] is False
    assert "accuracy" in result["reason"] and "log_loss" in result["reason"]
    assert "roc_auc" not in result["reason"]


def test_a_threshold_that_does_not_apply_to_the_task_fails() -> None:
    result = gate(config(thresholds={"rmse": 2.0}), "classification", CLASSIFIED, None)

    assert result["passes_thresholds"] is False
    assert "rmse does not apply to a classification model" in result["reason"]
    assert not promoted(result)


def test_a_metric_that_does_not_apply_to_the_task_fails() -> None:
    result = gate(config(metric="roc_auc"), "regression", REGRESSED, REGRESSED)

    assert result["metric"] == "roc_auc"
    assert result["passes_thresholds"] is False
    assert "roc_auc does not apply to a regression model" in result["reason"]
    assert not promoted(result)


def test_binary_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    positive = np.array([0.1, 0.6, 0.4, 0.8])
    predicted = np.column_stack([1 - positive, positive])

    found = metrics(y, predicted, classification=True, classes=2)

    assert set(found) == {"accuracy", "f1", "roc_auc", "log_loss"}
    # Chosen [0, 1, 0, 1]: one true positive, one false positive, one false negative
    assert found["accuracy"] == pytest.approx(0.5)
    assert found["f1"] == pytest.approx(0.5)
    # Of the four (positive, negative) pairs, three rank the positive higher
    assert found["roc_auc"] == pytest.approx(0.75)
    expected_loss = -(math.log(0.9) + math.log(0.4) + math.log(0.4) + math.log(0.8)) / 4
    assert found["log_loss"] == pytest.approx(expected_loss)
    assert found["log_loss"] == pytest.approx(sk.log_loss(y, predicted))


def test_three_class_metrics() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    predicted = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.2, 0.6],
            [0.15, 0.65, 0.2],  # a 0 taken for a 1
            [0.2, 0.6, 0.2],
            [0.1, 0.3, 0.6],
        ]
    )

    found = metrics(y, predicted, classification=True, classes=3)

    assert found["accuracy"] == pytest.approx(5 / 6)
    # Per class F1: 0 -> 2/3 (precision 1, recall 1/2), 1 -> 0.8 (2/3, 1), 2 -> 1; macro averaged
    assert found["f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    assert found["f1"] == pytest.approx(sk.f1_score(y, predicted.argmax(axis=1), average="macro"))
    # One against the rest: class 0 ranks 6 of 8 pairs right, class 1 7 of 8, class 2 all 8
    assert found["roc_auc"] == pytest.approx((6 / 8 + 7 / 8 + 1) / 3)
    assert found["roc_auc"] == pytest.approx(sk.roc_auc_score(y, predicted, multi_class="ovr"))
    expected_loss = -sum(map(math.log, [0.7, 0.8, 0.6, 0.15, 0.6, 0.6])) / 6
    assert found["log_loss"] == pytest.approx(expected_loss)


def test_regression_metrics() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    predicted = np.array([1.0, 2.0, 3.0, 6.0])

    found = metrics(y, predicted, classification=False, classes=0)

    assert set(found) == {"rmse", "mae", "r2"}
    assert found["rmse"] == pytest.approx(1.0)  # sqrt(4 / 4)
    assert found["mae"] == pytest.approx(0.5)
    assert found["r2"] == pytest.approx(1 - 4 / 5)  # residuals 4, total 2.25 + 0.25 + 0.25 + 2.25
    assert all(isinstance(value, float) for value in found.values())


def test_the_metrics_feed_the_gate() -> None:
    y = np.array([0, 0, 1, 1])
    good = metrics(y, np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]]), True, 2)
    poor = metrics(y, np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.2, 0.8]]), True, 2)

    assert promoted(gate(config(), "classification", good, poor))
    assert not promoted(gate(config(), "classification", poor, good))
    assert promoted(gate(config(metric="log_loss"), "classification", good, poor))


@pytest.mark.parametrize(
    "fields",
    [
        {"metric": "precision"},
        {"thresholds": {"precision": 0.5}},
        {"thresholds": {"accuracy": 0.9, "auc": 0.8}},
    ],
)
def test_unknown_metrics_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="unknown metrics"):
        TrainingConfig.model_validate(fields)


@pytest.mark.parametrize("fields", [{"learning_rate": 0.1}, {"thresold": {"accuracy": 0.9}}])
def test_unknown_fields_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TrainingConfig.model_validate(fields)


def test_unknown_fields_are_refused_in_overrides_too() -> None:
    with pytest.raises(ValidationError):
        merged({"margin": 0.1}, {"marginn": 0.2})


def test_run_overrides_replace_stored_values() -> None:
    stored = {"estimator": "random_forest", "margin": 0.01, "params": {"n_estimators": 200, "max_depth": 4}}

    settings = merged(stored, {"margin": 0.05, "params": {"max_depth": 8}})

    assert settings.estimator == "random_forest"  # kept
    assert settings.margin == 0.05
    assert settings.params == {"max_depth": 8}  # shallow: a given params replaces the stored one


def test_merged_without_a_file_or_overrides_is_the_defaults() -> None:
    assert merged(None, None) == TrainingConfig()
    assert merged({"seed": 3}, None).seed == 3
    assert merged(None, {"seed": 4}).seed == 4


def test_the_metric_defaults_to_roc_auc_or_rmse() -> None:
    assert TrainingConfig().metric_for("classification") == "roc_auc"
    assert TrainingConfig().metric_for("regression") == "rmse"
    assert config(metric="f1").metric_for("classification") == "f1"
    assert config(metric="mae").metric_for("regression") == "mae"
