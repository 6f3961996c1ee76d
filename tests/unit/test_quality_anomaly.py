"""The anomaly model: a shrunk Mahalanobis distance whose threshold flags about 1% of data like the
reference, and much more of data that is shifted, scaled or breaks the columns' correlation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aimass.quality.anomaly import AnomalyModel, fit

COLUMNS = ["a", "b", "c", "d", "e"]
# Five columns correlated at 0.8, on different scales and centres.
COVARIANCE = np.full((5, 5), 0.8) + 0.2 * np.eye(5)
SCALE = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
CENTRE = np.array([10.0, 0.0, -5.0, 100.0, 1.0])


def draw(rng: np.random.Generator, rows: int) -> np.ndarray:
    return rng.multivariate_normal(np.zeros(5), COVARIANCE, size=rows) * SCALE + CENTRE


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return draw(np.random.default_rng(7), 2000)


@pytest.fixture(scope="module")
def model(reference: np.ndarray) -> AnomalyModel:
    document = fit(reference, COLUMNS, seed=0)
    assert document is not None
    return AnomalyModel.from_json(document)


@pytest.fixture(scope="module")
def fresh() -> np.ndarray:
    return draw(np.random.default_rng(8), 20_000)


def flagged(model: AnomalyModel, rows: np.ndarray) -> float:
    return float((model.scores(rows) > model.threshold).mean())


def test_about_one_percent_of_data_like_the_reference_is_flagged(
    model: AnomalyModel, fresh: np.ndarray
) -> None:
    assert 0.002 <= flagged(model, fresh) <= 0.03


def test_typical_rows_score_about_one(model: AnomalyModel, fresh: np.ndarray) -> None:
    assert 0.5 < float(np.median(model.scores(fresh))) < 1.5


def test_a_feature_shifted_by_six_standard_deviations_is_flagged(
    model: AnomalyModel, reference: np.ndarray, fresh: np.ndarray
) -> None:
    shifted = fresh[:500].copy()
    shifted[:, 2] += 6 * reference[:, 2].std()
    assert flagged(model, shifted) > 0.95
    assert float(np.median(model.scores(shifted))) > 4 * model.threshold


def test_values_each_in_range_but_breaking_the_correlation_are_flagged(
    model: AnomalyModel, reference: np.ndarray, fresh: np.ndarray
) -> None:
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    z = (fresh - mean) / std
    # Rows where the first two columns are clearly away from their means, then one sign flipped.
    rows = fresh[(np.abs(z[:, 0]) > 1.5) & (np.abs(z[:, 1]) > 1.5)][:500].copy()
    rows[:, 1] = 2 * mean[1] - rows[:, 1]
    # Only rows whose every value lies within what the reference held.
    rows = rows[((rows >= reference.min(axis=0)) & (rows <= reference.max(axis=0))).all(axis=1)]
    assert len(rows) > 400
    assert flagged(model, rows) > 0.8
    # The same rows with the correlation intact are ordinary.
    rows[:, 1] = 2 * mean[1] - rows[:, 1]
    assert flagged(model, rows) < 0.2


def test_scaled_rows_are_flagged(model: AnomalyModel, reference: np.ndarray, fresh: np.ndarray) -> None:
    mean = reference.mean(axis=0)
    scaled = mean + 4 * (fresh[:500] - mean)
    assert flagged(model, scaled) > 0.8


def test_a_constant_column_is_fitted_and_a_change_in_it_stands_out() -> None:
    rng = np.random.default_rng(3)
    reference = draw(rng, 1000)
    reference[:, 3] = 3.0
    document = fit(reference, COLUMNS)
    assert document is not None
    for key in ("mean", "scale", "precision", "threshold"):
        assert np.isfinite(np.asarray(document[key])).all(), key
    model = AnomalyModel.from_json(document)
    rows = draw(rng, 500)
    rows[:, 3] = 3.0
    assert flagged(model, rows) < 0.05
    rows[:, 3] = 5.0
    assert flagged(model, rows) > 0.95


def test_a_missing_value_scores_as_the_baselines_mean(model: AnomalyModel, fresh: np.ndarray) -> None:
    rows = fresh[:10].copy()
    with_mean = rows.copy()
    rows[:, 2] = np.nan
    with_mean[:, 2] = model.mean[2]
    scores = model.scores(rows)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores, model.scores(with_mean))


def test_the_stored_document_round_trips_to_identical_scores(
    reference: np.ndarray, fresh: np.ndarray
) -> None:
    document = fit(reference, COLUMNS, seed=0)
    assert document is not None
    assert document["columns"] == COLUMNS and document["fit_rows"] == 2000
    original = AnomalyModel.from_json(document)
    restored = AnomalyModel.from_json(json.loads(json.dumps(document)))
    assert restored.threshold == original.threshold
    np.testing.assert_array_equal(restored.scores(fresh[:100]), original.scores(fresh[:100]))


def test_the_threshold_is_reproducible_for_a_seed(reference: np.ndarray) -> None:
    first, second = fit(reference, COLUMNS, seed=1), fit(reference, COLUMNS, seed=1)
    assert first is not None and second is not None
    assert first["threshold"] == second["threshold"]


def test_too_few_rows_give_no_model() -> None:
    assert fit(draw(np.random.default_rng(0), 49), COLUMNS) is None
    assert fit(np.empty((100, 0)), []) is None


def test_a_single_row_scores_as_it_does_in_a_batch(model: AnomalyModel, fresh: np.ndarray) -> None:
    rows = fresh[:20].copy()
    rows[3, 1] = np.nan
    batch = model.scores(rows)
    single = np.array([model.scores(rows[i : i + 1])[0] for i in range(len(rows))])
    np.testing.assert_allclose(single, batch, rtol=1e-12)
