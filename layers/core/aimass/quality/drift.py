"""Drift of a feature's values against its baseline statistics, and the multiple-testing control over
a model's features: what the batch report, `quality:check` and the monitor runs all judge drift by.

Each feature is one test of the window against the baseline's sample: two-sample KS for a numeric
feature (with PSI over the baseline's deciles as a second distance), chi-square test of homogeneity
for a categorical one. A model with 30 features
is 30 tests per window: at 1 % each, a clean window would flag some feature about 26 % of the time.
So the p-values of one model's features are adjusted together with Holm's step-down
(Holm-Bonferroni), which keeps the chance that a clean window flags ANY feature at most the
thresholds' 1 % (the family-wise error rate), whatever the features' dependence. Holm rather than
Benjamini-Hochberg: BH bounds the share of false findings among the findings, so a window with one
truly drifted feature may flag clean ones beside it; what people act on here ("drift in feature X,
retrain") needs each named feature to be right. A numeric feature drifts only when its adjusted
p-value is below the threshold AND its distance is large (PSI or KS): a large window finds
negligible shifts significant, a small one large distances by chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aimass.quality import stats

# Drift thresholds (docs/quality.md, docs/monitoring.md): a numeric feature drifts when KS is
# significant at the 1% level (family-wise, after Holm's adjustment across the model's features) and
# either PSI is above 0.2 (the usual "significant shift") or the KS distance is above 0.1 (Model
# Monitor's default comparison_threshold); a categorical one when chi-square is significant at 1%
# (family-wise).
DRIFT_THRESHOLDS = {"psi": 0.2, "ks_statistic": 0.1, "ks_p_value": 0.01, "chi_square_p_value": 0.01}
# Fewer present values than this give no drift figures: PSI over ten bins means little below it.
MIN_DRIFT_ROWS = 30
PSI_BINS = 10
CORRECTION = "holm"


def numeric_drift(feature: str, values: np.ndarray, statistics: dict[str, Any]) -> dict[str, Any] | None:
    """PSI and KS of a numeric feature's present values against its baseline's sketch (the
    `numerical_statistics` of statistics.json); None without a sketch or with too few values. Not
    yet judged: `judge` sets `drifted` over all of a model's features."""
    sketch = statistics.get("distribution", {}).get("kll", {}).get("sketch", {}).get("data")
    if not sketch or values.size < MIN_DRIFT_ROWS:
        return None
    values = np.asarray(values, dtype=np.float64)
    reference = np.asarray(sketch[0], dtype=np.float64)
    edges = stats.quantile_edges(reference, PSI_BINS)
    psi = stats.psi(stats.bin_counts(values, edges), stats.bin_counts(reference, edges))
    ks_statistic, ks_p_value = stats.ks_2samp(values, reference)
    return {
        "feature": feature,
        "method": "psi+ks",
        "psi": psi,
        "ks_statistic": ks_statistic,
        "ks_p_value": ks_p_value,
    }


def categorical_drift(
    feature: str, values: Sequence[Any], statistics: dict[str, Any]
) -> dict[str, Any] | None:
    """Chi-square of a categorical feature's present values against its baseline's buckets (the
    `string_statistics` of statistics.json); None without buckets or with too few values."""
    buckets = statistics.get("distribution", {}).get("categorical", {}).get("buckets")
    if not buckets or len(values) < MIN_DRIFT_ROWS:
        return None
    statistic, p_value = class_shift([b["value"] for b in buckets], [b["count"] for b in buckets], values)
    return {
        "feature": feature,
        "method": "chi_square",
        "chi_square": statistic,
        "chi_square_p_value": p_value,
    }


def class_shift(
    categories: Sequence[Any], counts: Sequence[float], values: Sequence[Any]
) -> tuple[float, float]:
    """Chi-square statistic and p-value of `values` against the reference's `counts` of `categories`
    (one more category for values the reference never held): the test of homogeneity of the two
    samples' 2 x k table. Not goodness of fit against the reference's proportions as if they were
    exact: the reference is a sample too, and a window as large as it would then be found drifted
    about twice as often as the level says (a clean window of 1,000 rows against 5,000 reference
    rows: its statistic 1.2 times too large)."""
    where = {c: k for k, c in enumerate(categories)}
    observed = np.zeros(len(categories) + 1)
    for value in values:
        observed[where.get(value, len(categories))] += 1
    reference = np.array([*counts, 0.0], dtype=np.float64)
    held = (observed + reference) > 0
    observed, reference = observed[held], reference[held]
    if observed.size < 2:
        return 0.0, 1.0
    pooled = (observed + reference) / (observed.sum() + reference.sum())
    expected, expected_reference = pooled * observed.sum(), pooled * reference.sum()
    statistic = float(
        np.sum((observed - expected) ** 2 / expected)
        + np.sum((reference - expected_reference) ** 2 / expected_reference)
    )
    return statistic, stats.chi2_sf(statistic, observed.size - 1)


def p_value(found: dict[str, Any]) -> float:
    return float(found["ks_p_value"] if found["method"] == "psi+ks" else found["chi_square_p_value"])


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order: a feature is significant at family-wise
    level alpha when its adjusted p-value is below alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def judge(
    found: list[dict[str, Any]], thresholds: dict[str, float] = DRIFT_THRESHOLDS
) -> list[dict[str, Any]]:
    """Set each result's `p_value_adjusted` (Holm over all of `found`: one model's features) and
    `drifted`; returns `found`."""
    for result, adjusted in zip(found, holm([p_value(f) for f in found]), strict=True):
        result["p_value_adjusted"] = adjusted
        if result["method"] == "psi+ks":
            result["drifted"] = adjusted < thresholds["ks_p_value"] and (
                result["psi"] > thresholds["psi"] or result["ks_statistic"] > thresholds["ks_statistic"]
            )
        else:
            result["drifted"] = adjusted < thresholds["chi_square_p_value"]
    return found


def feature_drift(
    feature: str, values: Any, baseline: dict[str, Any] | None, numeric: bool
) -> dict[str, Any] | None:
    """A feature's drift figures against its entry in the baseline's statistics.json (None: no
    entry, no distribution, or too few values)."""
    if baseline is None:
        return None
    if numeric:
        return numeric_drift(feature, values, baseline.get("numerical_statistics", {}))
    return categorical_drift(feature, list(values), baseline.get("string_statistics", {}))
