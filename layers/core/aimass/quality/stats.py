"""Drift statistics for the data-quality report: two-sample Kolmogorov-Smirnov, chi-square goodness of
fit and the Population Stability Index over reference-quantile bins.

Pure numpy and math: scipy would not fit in the Lambda layer. Inputs must be finite (NaNs are the
caller's job); nothing is dropped or repaired silently.
"""

from __future__ import annotations

import math

import numpy as np

_EPS = 1e-15
_MAX_ITER = 100_000


def _vector(name: str, values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    return array


def kolmogorov_sf(x: float) -> float:
    """Return P(K > x) for the Kolmogorov distribution (the limit of sqrt(n) * D_n)."""
    if x < 0.1:
        # The CDF is below 1e-50 here, and 1 / x**2 below would overflow as x -> 0.
        return 1.0
    if x < 1.0:
        # The alternating series converges slowly for small x; the other Jacobi-theta form of the CDF
        # converges fast there.
        theta = sum(math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * x * x)) for k in range(1, 21))
        p = 1.0 - math.sqrt(2 * math.pi) / x * theta
    else:
        p = 2 * sum((1.0 if k % 2 else -1.0) * math.exp(-2 * k * k * x * x) for k in range(1, 21))
    return min(max(p, 0.0), 1.0)


def ks_2samp(sample: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Return the two-sample KS statistic D = max |ECDF_sample - ECDF_reference| and its asymptotic
    two-sided p-value, kolmogorov_sf(sqrt(m n / (m + n)) * D).

    D equals scipy.stats.ks_2samp's. The p-value is the Kolmogorov limit (scipy.special.kolmogorov);
    scipy's method="asymp" instead uses the finite-n distribution kstwo.sf(D, round(en)), which differs
    by up to about 0.3 / sqrt(en).
    """
    a = np.sort(_vector("sample", sample))
    b = np.sort(_vector("reference", reference))
    pooled = np.concatenate([a, b])
    # side="right" evaluates both ECDFs after every copy of a tied value, as scipy does.
    diffs = (
        np.searchsorted(a, pooled, side="right") / a.size - np.searchsorted(b, pooled, side="right") / b.size
    )
    d = float(np.max(np.abs(diffs)))
    en = a.size * b.size / (a.size + b.size)
    return d, kolmogorov_sf(math.sqrt(en) * d)


def chi2_sf(x: float, dof: int) -> float:
    """Return P(X > x) for X ~ chi-square(dof): the regularized upper incomplete gamma Q(dof/2, x/2)."""
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    if x <= 0.0:
        return 1.0
    a, z = dof / 2.0, x / 2.0
    log_prefix = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1.0:
        # Series for the lower function P converges fast here, and Q = 1 - P is not small enough to lose
        # precision to the subtraction.
        term = total = 1.0 / a
        for n in range(1, _MAX_ITER):
            term *= z / (a + n)
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        return min(max(1.0 - total * math.exp(log_prefix), 0.0), 1.0)
    # Continued fraction for Q itself (modified Lentz), accurate deep into the tail.
    tiny = 1e-300
    b = z + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for n in range(1, _MAX_ITER):
        an = -n * (n - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return min(max(math.exp(log_prefix) * h, 0.0), 1.0)


def chi_square(observed: np.ndarray, expected_proportions: np.ndarray) -> tuple[float, float, int]:
    """Return (statistic, p_value, dof) of the chi-square goodness-of-fit test of observed counts against
    baseline proportions rescaled to the observed total; dof = number of categories - 1.

    Proportions must all be > 0 (smooth them first) and there must be at least 2 categories.
    """
    obs = _vector("observed", observed)
    props = _vector("expected_proportions", expected_proportions)
    if obs.shape != props.shape or obs.size < 2:
        raise ValueError(f"need >= 2 matching categories, got {obs.shape} and {props.shape}")
    if np.any(props <= 0):
        raise ValueError("expected_proportions must all be > 0")
    if np.any(obs < 0) or obs.sum() <= 0:
        raise ValueError("observed counts must be >= 0 with a positive total")
    expected = props / props.sum() * obs.sum()
    statistic = float(np.sum((obs - expected) ** 2 / expected))
    dof = obs.size - 1
    return statistic, chi2_sf(statistic, dof), dof


def _fractions(name: str, counts: np.ndarray, eps: float) -> np.ndarray:
    array = _vector(name, counts)
    if np.any(array < 0) or array.sum() <= 0:
        raise ValueError(f"{name} must be >= 0 with a positive total")
    # Flooring keeps ln(a/e) finite when a bin is empty on one side.
    floored = np.maximum(array / array.sum(), eps)
    fractions: np.ndarray = floored / floored.sum()
    return fractions


def psi(actual: np.ndarray, expected: np.ndarray, eps: float = 1e-4) -> float:
    """Return the Population Stability Index sum((a - e) * ln(a / e)) over bin counts or fractions,
    each normalised to fractions floored at eps (then renormalised)."""
    a = _fractions("actual", actual, eps)
    e = _fractions("expected", expected, eps)
    if a.shape != e.shape:
        raise ValueError(f"actual and expected must have the same bins, got {a.shape} and {e.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(reference: np.ndarray, bins: int = 10) -> np.ndarray:
    """Return the sorted, distinct interior bin edges at the reference's 1/bins, ..., (bins-1)/bins
    quantiles; constant or few-valued features give fewer edges (a constant one gives one)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    values = _vector("reference", reference)
    edges: np.ndarray = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return edges


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Return the counts of values in the len(edges) + 1 bins (-inf, e0), [e0, e1), ..., [e_last, inf)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    counts: np.ndarray = np.bincount(np.searchsorted(edges, array, side="right"), minlength=len(edges) + 1)
    return counts
