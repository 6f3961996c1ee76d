"""The data-quality report of a batch of rows against a version's baseline: constraint violations
in Model Monitor's constraint_violations.json shape, completeness, drift per feature, anomalies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aimass.quality import stats
from aimass.quality.baseline import DRIFT_THRESHOLDS
from aimass.quality.checks import RequestChecks
from aimass.quality.columns import Column, holds_strings

# Fewer present values than this give no drift figures: PSI over ten bins means little below it.
MIN_DRIFT_ROWS = 30
PSI_BINS = 10


def lenient_matrix(
    checks: RequestChecks, instances: list[Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, int], set[str]]:
    """Rows as a matrix where a missing or mistyped value is missing (NaN / None), with the count of
    mistyped values per column, the keys no column has, and which columns were ever given."""
    columns = checks.columns
    string = holds_strings(columns)
    matrix = np.full(
        (len(instances), len(columns)), None if string else np.nan, dtype=object if string else np.float64
    )
    mistyped = np.zeros(len(columns), dtype=np.int64)
    extra: dict[str, int] = {}
    given: set[str] = set()
    names = [c.name for c in columns]
    known = checks.names
    for i, instance in enumerate(instances):
        if checks.tabular and isinstance(instance, dict):
            values = [instance.get(n) for n in names]
            for key in instance:
                if key in known:
                    given.add(key)
                else:
                    extra[key] = extra.get(key, 0) + 1
        else:
            try:
                values = np.asarray(instance, dtype=object).reshape(-1).tolist()
            except ValueError:
                values = []
            if len(values) != len(columns):
                mistyped += 1
                continue
            given.update(names)
        for j, value in enumerate(values):
            if value is None:
                continue
            if string:
                if isinstance(value, str):
                    matrix[i, j] = value
                else:
                    mistyped[j] += 1
            elif (
                type(value) in (int, float) or (type(value) is bool and columns[j].integral)
            ) and math.isfinite(value):
                matrix[i, j] = value
            else:
                mistyped[j] += 1
    return matrix, mistyped, extra, given


def _violation(feature: str, check: str, description: str) -> dict[str, str]:
    return {"feature_name": feature, "constraint_check_type": check, "description": description}


def _numeric_drift(column: Column, values: np.ndarray, statistics: dict[str, Any]) -> dict[str, Any] | None:
    sketch = statistics.get("distribution", {}).get("kll", {}).get("sketch", {}).get("data")
    if not sketch or values.size < MIN_DRIFT_ROWS:
        return None
    reference = np.asarray(sketch[0], dtype=np.float64)
    edges = stats.quantile_edges(reference, PSI_BINS)
    psi = stats.psi(stats.bin_counts(values, edges), stats.bin_counts(reference, edges))
    ks_statistic, ks_p_value = stats.ks_2samp(values, reference)
    return {
        "feature": column.name,
        "method": "psi+ks",
        "psi": psi,
        "ks_statistic": ks_statistic,
        "ks_p_value": ks_p_value,
        # Significant and large: a small clean batch often has a large distance by chance, and a
        # large batch a significant but negligible one.
        "drifted": ks_p_value < DRIFT_THRESHOLDS["ks_p_value"]
        and (psi > DRIFT_THRESHOLDS["psi"] or ks_statistic > DRIFT_THRESHOLDS["ks_statistic"]),
    }


def _categorical_drift(
    column: Column, values: list[Any], statistics: dict[str, Any]
) -> dict[str, Any] | None:
    buckets = statistics.get("distribution", {}).get("categorical", {}).get("buckets")
    if not buckets or len(values) < MIN_DRIFT_ROWS:
        return None
    categories = {b["value"]: k for k, b in enumerate(buckets)}
    observed = np.zeros(len(buckets) + 1)
    for value in values:
        observed[categories.get(value, len(buckets))] += 1
    # Half a count of smoothing: a category the reference never held is unlikely, not impossible.
    expected = np.array([b["count"] for b in buckets] + [0.0]) + 0.5
    statistic, p_value, _ = stats.chi_square(observed, expected)
    return {
        "feature": column.name,
        "method": "chi_square",
        "chi_square": statistic,
        "chi_square_p_value": p_value,
        "drifted": p_value < DRIFT_THRESHOLDS["chi_square_p_value"],
    }


def quality_report(
    checks: RequestChecks,
    statistics: dict[str, Any] | None,
    constraints: dict[str, Any] | None,
    instances: list[Any],
) -> dict[str, Any]:
    """Everything but the model reference of a QualityReport."""
    matrix, mistyped, extra, given = lenient_matrix(checks, instances)
    count = len(instances)
    learned = {f["name"]: f for f in (constraints or {}).get("features", [])}
    described = {f["name"]: f for f in (statistics or {}).get("features", [])}
    violations = [
        _violation(key, "extra_column_check", f"{key!r} is not a feature of the model ({n} of {count} rows)")
        for key, n in sorted(extra.items())
    ]
    completeness: dict[str, float] = {}
    drift: list[dict[str, Any]] = []
    numeric = matrix.dtype != object
    present_mask = (
        ~np.isnan(matrix) if numeric else np.vectorize(lambda v: v is not None, otypes=[bool])(matrix)
    )
    outside = ((matrix < checks.low) | (matrix > checks.high)).sum(axis=0) if numeric else None
    for j, column in enumerate(checks.columns):
        present = int(present_mask[:, j].sum())
        completeness[column.name] = present / count
        if column.name not in given:
            violations.append(_violation(column.name, "missing_column_check", "no row has this feature"))
            continue
        if mistyped[j]:
            violations.append(
                _violation(
                    column.name,
                    "data_type_check",
                    f"{mistyped[j]} of {count} values are not of type {column.kind}",
                )
            )
        expected = learned.get(column.name, {}).get("completeness", 0.0 if column.nullable else 1.0)
        if completeness[column.name] < expected:
            violations.append(
                _violation(
                    column.name,
                    "completeness_check",
                    f"completeness {completeness[column.name]:.4g} is below the baseline's {expected:.4g}",
                )
            )
        if outside is not None and outside[j]:
            violations.append(
                _violation(
                    column.name,
                    "value_range_check",
                    f"{outside[j]} of {count} values are outside [{checks.low[j]:g}, {checks.high[j]:g}]",
                )
            )
        if j in checks.domains:
            known = checks.domains[j]
            strangers = sum(1 for v in matrix[present_mask[:, j], j] if v not in known)
            if strangers:
                violations.append(
                    _violation(
                        column.name,
                        "categorical_values_check",
                        f"{strangers} of {present} values are not in the baseline's domain",
                    )
                )
        baseline = described.get(column.name)
        if baseline is None:
            continue
        values = matrix[present_mask[:, j], j]
        result = (
            _numeric_drift(column, values, baseline.get("numerical_statistics", {}))
            if numeric
            else _categorical_drift(column, list(values), baseline.get("string_statistics", {}))
        )
        if result is not None:
            drift.append(result)
            if result["drifted"]:
                figures = ", ".join(
                    f"{k}={result[k]:.4g}"
                    for k in ("psi", "ks_statistic", "chi_square_p_value")
                    if k in result
                )
                violations.append(
                    _violation(column.name, "baseline_drift_check", f"drift from the baseline: {figures}")
                )
    scores = checks.anomaly_scores(matrix, may_be_missing=True) if numeric else None
    anomalies = None
    if scores is not None and checks.anomaly is not None:
        flagged = int((scores > checks.anomaly.threshold).sum())
        anomalies = {"count": flagged, "rate": flagged / count, "threshold": checks.anomaly.threshold}
    return {
        "item_count": count,
        "completeness": completeness,
        "violations": violations,
        "drift": drift,
        "anomalies": anomalies,
        "thresholds": {**DRIFT_THRESHOLDS, "min_drift_rows": MIN_DRIFT_ROWS},
    }
