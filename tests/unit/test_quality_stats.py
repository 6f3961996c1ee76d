"""The drift statistics in aimass.quality.stats, checked against scipy (which the Lambda layer cannot
carry, so the module reimplements them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as sp

from aimass.quality import stats


def _ks_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [
        ("same", rng.normal(size=500), rng.normal(size=700)),
        ("shifted", rng.normal(0.3, 1.0, size=400), rng.normal(size=600)),
        ("ties", rng.integers(0, 5, size=300).astype(float), rng.integers(0, 6, size=450).astype(float)),
        ("sizes", rng.normal(size=20), rng.normal(size=5000)),
        ("tiny", np.array([0.1, 2.0, -1.0]), np.array([0.5, 0.4])),
        ("disjoint", rng.normal(10.0, 1.0, size=200), rng.normal(size=200)),
        ("identical", np.arange(50.0), np.arange(50.0)),
    ]


@pytest.mark.parametrize(("name", "sample", "reference"), _ks_cases())
def test_ks_statistic_equals_scipy_and_p_value_is_the_kolmogorov_limit(
    name: str, sample: np.ndarray, reference: np.ndarray
) -> None:
    d, p = stats.ks_2samp(sample, reference)
    expected = sp.ks_2samp(sample, reference, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    en = sample.size * reference.size / (sample.size + reference.size)
    assert p == pytest.approx(special.kolmogorov(math.sqrt(en) * d), rel=1e-9, abs=1e-12)
    assert p == pytest.approx(sp.kstwobign.sf(math.sqrt(en) * d), rel=1e-9, abs=1e-12)
    # scipy's "asymp" uses the finite-n law kstwo.sf(D, round(en)); the limit differs by O(1/sqrt(en)).
    assert p == pytest.approx(expected.pvalue, abs=0.35 / math.sqrt(en))


def test_ks_p_value_extremes() -> None:
    rng = np.random.default_rng(11)
    _, p_far = stats.ks_2samp(rng.normal(3.0, 1.0, size=1000), rng.normal(size=1000))
    assert p_far < 1e-100
    d_near, p_near = stats.ks_2samp(np.arange(1000.0), np.arange(1000.0) + 0.5)
    assert d_near == pytest.approx(0.001)
    assert p_near == 1.0
    d_same, p_same = stats.ks_2samp(np.ones(10), np.ones(3))
    assert (d_same, p_same) == (0.0, 1.0)


def test_ks_p_value_matches_scipy_asymp_closely_for_large_samples() -> None:
    rng = np.random.default_rng(3)
    sample, reference = rng.normal(0.05, 1.0, size=20_000), rng.normal(size=50_000)
    _, p = stats.ks_2samp(sample, reference)
    assert p == pytest.approx(sp.ks_2samp(sample, reference, method="asymp").pvalue, abs=3e-3)


def test_kolmogorov_sf_equals_scipy_on_a_grid() -> None:
    xs = np.concatenate([np.linspace(0.0, 3.0, 601), np.linspace(3.0, 30.0, 55)])
    got = np.array([stats.kolmogorov_sf(float(x)) for x in xs])
    np.testing.assert_allclose(got, special.kolmogorov(xs), rtol=1e-10, atol=1e-14)


def test_chi2_sf_equals_scipy_over_a_grid() -> None:
    grid = [(float(x), dof) for dof in range(1, 201) for x in np.geomspace(1e-6, 3000.0, 120)]
    xs, dofs = np.array(grid).T
    expected = sp.chi2.sf(xs, dofs)
    got = np.array([stats.chi2_sf(x, dof) for x, dof in grid])
    # pytest.approx(expected, rel=1e-9, abs=1e-300) at every point, in one comparison
    off = ~(np.abs(got - expected) <= np.maximum(1e-9 * np.abs(expected), 1e-300))
    assert not off.any(), [grid[i] for i in np.flatnonzero(off)[:5]]
    assert stats.chi2_sf(0.0, 3) == 1.0
    with pytest.raises(ValueError):
        stats.chi2_sf(1.0, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chi_square_equals_scipy_chisquare(seed: int) -> None:
    rng = np.random.default_rng(seed)
    proportions = rng.uniform(0.5, 5.0, size=6)
    observed = rng.multinomial(300, rng.dirichlet(np.ones(6))).astype(float)
    statistic, p_value, dof = stats.chi_square(observed, proportions)
    expected = sp.chisquare(observed, proportions / proportions.sum() * observed.sum())
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert dof == 5


def test_chi_square_of_matching_counts_is_zero_with_p_one() -> None:
    assert stats.chi_square(np.array([10.0, 20.0, 30.0]), np.array([1.0, 2.0, 3.0])) == (0.0, 1.0, 2)


@pytest.mark.parametrize(
    ("observed", "proportions"),
    [
        ([5.0], [1.0]),  # one category: nothing to test
        ([5.0, 5.0], [1.0, 0.0]),  # unsmoothed zero proportion
        ([5.0, 5.0], [1.0, 1.0, 1.0]),  # shape mismatch
        ([0.0, 0.0], [1.0, 1.0]),  # no observations
        ([], []),
    ],
)
def test_chi_square_rejects_bad_input(observed: list[float], proportions: list[float]) -> None:
    with pytest.raises(ValueError):
        stats.chi_square(np.array(observed), np.array(proportions))


def test_psi_equals_symmetrised_kl_on_floored_fractions() -> None:
    actual, expected, eps = np.array([30.0, 0.0, 50.0, 20.0]), np.array([0.25, 0.25, 0.4, 0.1]), 1e-4
    floored = [np.maximum(v / v.sum(), eps) for v in (actual, expected)]
    a, e = (f / f.sum() for f in floored)
    assert stats.psi(actual, expected, eps) == pytest.approx(sp.entropy(a, e) + sp.entropy(e, a), rel=1e-12)
    assert math.isfinite(stats.psi(actual, expected))


def test_psi_is_zero_for_identical_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=5000)
    edges = stats.quantile_edges(reference, 10)
    base = stats.bin_counts(reference, edges)
    assert stats.psi(base, base) == 0.0
    assert stats.psi(base * 3, base) == pytest.approx(0.0, abs=1e-15)  # counts vs fractions
    psis = [stats.psi(stats.bin_counts(reference + shift, edges), base) for shift in (0.1, 0.5, 1.0)]
    assert 0.0 < psis[0] < psis[1] < psis[2]
    assert psis[0] < 0.1 < 0.2 < psis[2]


def test_psi_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        stats.psi(np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError):
        stats.psi(np.zeros(3), np.ones(3))


def test_quantile_edges_and_bin_counts_on_a_constant_feature() -> None:
    reference = np.full(100, 4.2)
    edges = stats.quantile_edges(reference, 10)
    np.testing.assert_array_equal(edges, [4.2])
    np.testing.assert_array_equal(stats.bin_counts(reference, edges), [0, 100])
    np.testing.assert_array_equal(stats.bin_counts(np.array([1.0, 4.2, 9.0]), edges), [1, 2])
    assert stats.psi(stats.bin_counts(reference, edges), stats.bin_counts(reference, edges)) == 0.0


def test_quantile_edges_and_bin_counts_on_integer_data() -> None:
    reference = np.repeat([0.0, 1.0, 2.0, 3.0], [40, 30, 20, 10])
    edges = stats.quantile_edges(reference, 10)
    # np.quantile interpolates linearly, so some edges fall between the integers; the bins they open
    # stay empty on both sides and add nothing to PSI.
    np.testing.assert_allclose(edges, [0.0, 0.6, 1.0, 1.3, 2.0, 2.1])
    np.testing.assert_array_equal(stats.bin_counts(reference, edges), [0, 40, 0, 30, 0, 20, 10])
    np.testing.assert_array_equal(
        stats.bin_counts(np.array([-1.0, 0.0, 0.99, 2.05, 3.0, 7.0]), edges), [1, 1, 1, 0, 0, 1, 2]
    )
    shifted = np.repeat([0.0, 1.0, 2.0, 3.0], [10, 20, 30, 40])
    assert stats.psi(stats.bin_counts(shifted, edges), stats.bin_counts(reference, edges)) > 0.2
    assert len(stats.quantile_edges(np.arange(1000.0), 10)) == 9


def test_empty_and_misshaped_inputs_raise() -> None:
    with pytest.raises(ValueError):
        stats.ks_2samp(np.array([]), np.ones(3))
    with pytest.raises(ValueError):
        stats.ks_2samp(np.ones(3), np.array([]))
    with pytest.raises(ValueError):
        stats.ks_2samp(np.ones((2, 2)), np.ones(3))
    with pytest.raises(ValueError):
        stats.quantile_edges(np.array([]))
    with pytest.raises(ValueError):
        stats.quantile_edges(np.ones(3), bins=0)
