"""Kernel SHAP (aimass.explain): exact Shapley values when every coalition fits the sample count,
additivity always, known values on a linear model, reproducible draws."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from aimass.explain import (
    TOLERANCE,
    coalitions,
    coalitions_count,
    default_samples,
    evaluated_rows,
    global_importance,
    kernel_shap,
)

RNG = np.random.default_rng(20)


def interacting(rows: np.ndarray) -> np.ndarray:
    """Two outputs with an interaction of three features, so sampling is not exact by chance."""
    first = np.tanh(rows[:, 0] * rows[:, 1] * rows[:, 2]) + rows[:, 3] ** 2 - rows[:, 4]
    return np.stack([first, rows.sum(axis=1)], axis=1)


def shapley(f: object, background: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The Shapley values by their definition, over every subset (features by outputs)."""

    def value(subset: tuple[int, ...]) -> np.ndarray:
        rows = background.copy()
        rows[:, list(subset)] = x[list(subset)]
        return f(rows).mean(axis=0)  # type: ignore[operator]

    m = len(x)
    phi = np.zeros((m, 2))
    for j in range(m):
        others = [k for k in range(m) if k != j]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for subset in itertools.combinations(others, size):
                phi[j] += weight * (value((*subset, j)) - value(subset))
    return phi


def test_every_coalition_within_the_sample_count_gives_the_exact_shapley_values() -> None:
    # Given 5 features (30 coalitions) and the default sample count
    background, instances = RNG.normal(size=(15, 5)), RNG.normal(size=(3, 5))
    # When explained
    result = kernel_shap(interacting, background, instances)
    # Then every coalition was enumerated and the values are Shapley's, for each output
    assert result.exact and result.samples == 30
    for i, x in enumerate(instances):
        np.testing.assert_allclose(result.attributions[i], shapley(interacting, background, x), atol=1e-12)


def test_sampled_coalitions_approach_the_exact_values_and_still_add_up() -> None:
    background, instances = RNG.normal(size=(15, 5)), RNG.normal(size=(2, 5))
    exact = kernel_shap(interacting, background, instances).attributions
    sampled = kernel_shap(interacting, background, instances, samples=24, seed=3)
    assert not sampled.exact and sampled.samples == 24
    error = np.abs(sampled.attributions - exact).max()
    assert 0 < error < 0.25 * np.abs(exact).max()
    additivity = sampled.base + sampled.attributions.sum(axis=1) - sampled.outputs
    assert np.abs(additivity).max() < TOLERANCE


def test_a_linear_model_gets_its_weights_times_the_distance_from_the_background_mean() -> None:
    # Given a linear model of 30 features (too many to enumerate) and 40 background rows
    weights = RNG.normal(size=30)
    background, instances = RNG.normal(size=(40, 30)), RNG.normal(size=(4, 30))

    def linear(rows: np.ndarray) -> np.ndarray:
        return rows @ weights + 1.5

    # When explained at the default sample count
    result = kernel_shap(linear, background, instances)
    # Then phi_i = w_i (x_i - E[x_i]) and the base value is E[f(background)]
    assert not result.exact and result.samples == default_samples(30)
    expected = weights * (instances - background.mean(axis=0))
    np.testing.assert_allclose(result.attributions[:, :, 0], expected, atol=1e-9)
    assert result.base[0] == pytest.approx(linear(background).mean())
    assert np.abs(result.base + result.attributions.sum(axis=1) - result.outputs).max() < TOLERANCE


def test_the_same_seed_draws_the_same_coalitions_and_another_seed_others() -> None:
    first, again, other = (
        coalitions(12, 100, seed=5),
        coalitions(12, 100, seed=5),
        coalitions(12, 100, seed=6),
    )
    np.testing.assert_array_equal(first.masks, again.masks)
    assert not np.array_equal(first.masks, other.masks)
    # And they come in complementary pairs, never empty nor full
    np.testing.assert_array_equal(first.masks[0::2], ~first.masks[1::2])
    assert first.masks.any(axis=1).all() and not first.masks.all(axis=1).any()


def test_the_model_is_run_a_chunk_at_a_time_not_a_row_at_a_time() -> None:
    calls: list[int] = []

    def counted(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return rows.sum(axis=1)

    background, instances = RNG.normal(size=(10, 6)), RNG.normal(size=(3, 6))
    result = kernel_shap(counted, background, instances, samples=62, chunk_rows=500)
    # background, instances, then 3 x 62 coalitions x 10 rows in chunks of 50 coalitions
    assert calls[:2] == [10, 3] and max(calls[2:]) == 500 and sum(calls) == result.evaluated_rows
    assert result.evaluated_rows == evaluated_rows(3, 6, 62, 10) == 3 * 62 * 10 + 13


def test_one_feature_gets_the_whole_difference() -> None:
    result = kernel_shap(lambda r: r[:, 0] ** 2, np.array([[1.0], [3.0]]), np.array([[4.0]]))
    assert result.attributions[0, 0, 0] == pytest.approx(16.0 - 5.0)
    assert coalitions_count(1, 10) == 0


def test_the_global_importance_is_the_mean_absolute_shap_of_each_row_explained() -> None:
    weights = np.array([2.0, -1.0, 0.0, 0.5])
    background = RNG.normal(size=(30, 4))
    importance = global_importance(lambda r: r @ weights, background, rows=10)
    expected = np.abs(weights * (background[:10] - background.mean(axis=0))).mean(axis=0)
    np.testing.assert_allclose(importance, expected, atol=1e-9)
    assert importance[2] < 1e-12 and importance.argmax() == 0


def test_too_few_coalitions_to_fit_still_give_finite_attributions_that_add_up() -> None:
    # Given 12 features and 2 coalitions (a singular fit), When explained
    background, instances = RNG.normal(size=(5, 12)), RNG.normal(size=(2, 12))
    result = kernel_shap(lambda r: np.tanh(r).sum(axis=1), background, instances, samples=2)
    # Then the pseudo-inverse's least-norm answer is given, and it adds up
    assert result.samples == 2 and np.isfinite(result.attributions).all()
    assert np.abs(result.base + result.attributions.sum(axis=1) - result.outputs).max() < TOLERANCE
