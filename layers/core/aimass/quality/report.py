"""The data-quality report of a batch of rows against a version's baseline: constraint violations
in Model Monitor's constraint_violations.json shape, completeness, drift per feature, anomalies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aimass.quality import drift as drifts
from aimass.quality.checks import RequestChecks
from aimass.quality.columns import Column, holds_strings
from aimass.quality.drift import DRIFT_THRESHOLDS, MIN_DRIFT_ROWS

__all__ = ["MIN_DRIFT_ROWS", "features_matrix", "lenient_matrix", "matrix_report", "quality_report"]


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
    for i, instance in enumerate(instances):
        if checks.tabular and isinstance(instance, dict):
            values = [instance.get(n) for n in names]
            _note_keys(instance, checks.names, given, extra)
        else:
            values = _row_values(instance)
            if len(values) != len(columns):
                mistyped += 1  # a row of another shape: none of its values can be placed
                continue
            given.update(names)
        _place(matrix[i], values, columns, string, mistyped)
    return matrix, mistyped, extra, given


def features_matrix(
    checks: RequestChecks, names: list[str], rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, int], set[str]]:
    """lenient_matrix of rows given as a float64 matrix over the features `names` (NaN where
    missing) rather than as instances: what lenient_matrix gives for the dicts of those rows (every
    feature a key, None where missing), without making them. Checks over strings take the dicts."""
    if holds_strings(checks.columns) or not checks.tabular:
        instances = [
            {name: None if v != v else v for name, v in zip(names, row, strict=True)} for row in rows.tolist()
        ]
        return lenient_matrix(checks, instances)
    where = {name: j for j, name in enumerate(names)}
    matrix = np.full((len(rows), len(checks.columns)), np.nan)
    mistyped = np.zeros(len(checks.columns), dtype=np.int64)
    for j, column in enumerate(checks.columns):
        if column.name in where:
            values = rows[:, where[column.name]]
            infinite = np.isinf(values)  # not finite: counted as mistyped and left missing
            mistyped[j] = int(infinite.sum())
            matrix[:, j] = np.where(infinite, np.nan, values)
    extra = {name: len(rows) for name in names if name not in checks.names} if len(rows) else {}
    given = {name for name in names if name in checks.names} if len(rows) else set()
    return matrix, mistyped, extra, given


def _note_keys(
    instance: dict[str, Any], known: frozenset[str], given: set[str], extra: dict[str, int]
) -> None:
    for key in instance:
        if key in known:
            given.add(key)
        else:
            extra[key] = extra.get(key, 0) + 1


def _row_values(instance: Any) -> list[Any]:
    """A row given as a (nested) list, flat; nothing when it has no shape (ragged)."""
    try:
        values: list[Any] = np.asarray(instance, dtype=object).reshape(-1).tolist()
    except ValueError:
        return []
    return values


def _place(
    row: np.ndarray, values: list[Any], columns: list[Column], string: bool, mistyped: np.ndarray
) -> None:
    """Each value into its column of the matrix's row when it is of the column's type, else counted."""
    for j, value in enumerate(values):
        if value is None:
            continue
        # Exact types, as requests are checked: a bool is a number only in an integral column.
        fits = (
            isinstance(value, str)
            if string
            else (type(value) in (int, float) or (type(value) is bool and columns[j].integral))
            and math.isfinite(value)
        )
        if fits:
            row[j] = value
        else:
            mistyped[j] += 1


def violation(feature: str, check: str, description: str) -> dict[str, str]:
    """An item of Model Monitor's constraint_violations.json."""
    return {"feature_name": feature, "constraint_check_type": check, "description": description}


def quality_report(
    checks: RequestChecks,
    statistics: dict[str, Any] | None,
    constraints: dict[str, Any] | None,
    instances: list[Any],
) -> dict[str, Any]:
    """Everything but the model reference of a QualityReport."""
    matrix, mistyped, extra, given = lenient_matrix(checks, instances)
    return matrix_report(checks, statistics, constraints, matrix, mistyped, extra, given)


def matrix_report(
    checks: RequestChecks,
    statistics: dict[str, Any] | None,
    constraints: dict[str, Any] | None,
    matrix: np.ndarray,
    mistyped: np.ndarray,
    extra: dict[str, int],
    given: set[str],
) -> dict[str, Any]:
    """quality_report of rows already read into a lenient matrix (lenient_matrix's four values): the
    monitor reads a window's captured rows in chunks and judges them at once."""
    count = len(matrix)
    learned = {f["name"]: f for f in (constraints or {}).get("features", [])}
    described = {f["name"]: f for f in (statistics or {}).get("features", [])}
    violations = [
        violation(key, "extra_column_check", f"{key!r} is not a feature of the model ({n} of {count} rows)")
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
        values = matrix[present_mask[:, j], j]
        completeness[column.name] = len(values) / count
        if column.name not in given:
            violations.append(violation(column.name, "missing_column_check", "no row has this feature"))
            continue
        violations += _value_violations(
            column,
            values,
            count,
            mistyped=int(mistyped[j]),
            expected=learned.get(column.name, {}).get("completeness", 0.0 if column.nullable else 1.0),
            outside=0 if outside is None else int(outside[j]),
            bounds=(checks.low[j], checks.high[j]),
            domain=checks.domains.get(j),
        )
        found = drifts.feature_drift(column.name, values, described.get(column.name), numeric)
        if found is not None:
            drift.append(found)
    # Judged together: the model's features are one family of tests (aimass.quality.drift)
    for found in drifts.judge(drift):
        if found["drifted"]:
            violations.append(drift_violation(found["feature"], found))
    return {
        "item_count": count,
        "completeness": completeness,
        "violations": violations,
        "drift": drift,
        "anomalies": _anomalies(checks, matrix) if numeric else None,
        "thresholds": {**DRIFT_THRESHOLDS, "min_drift_rows": MIN_DRIFT_ROWS},
    }


def _value_violations(
    column: Column,
    values: np.ndarray,
    count: int,
    *,
    mistyped: int,
    expected: float,
    outside: int,
    bounds: tuple[float, float],
    domain: frozenset[Any] | None,
) -> list[dict[str, str]]:
    """A given column's values (those present) against its type, the baseline's completeness, range
    and domain."""
    found: list[dict[str, str]] = []
    if mistyped:
        found.append(
            violation(
                column.name, "data_type_check", f"{mistyped} of {count} values are not of type {column.kind}"
            )
        )
    completeness = len(values) / count
    if completeness < expected:
        found.append(
            violation(
                column.name,
                "completeness_check",
                f"completeness {completeness:.4g} is below the baseline's {expected:.4g}",
            )
        )
    if outside:
        low, high = bounds
        found.append(
            violation(
                column.name,
                "value_range_check",
                f"{outside} of {count} values are outside [{low:g}, {high:g}]",
            )
        )
    strangers = sum(1 for v in values if v not in domain) if domain is not None else 0
    if strangers:
        found.append(
            violation(
                column.name,
                "categorical_values_check",
                f"{strangers} of {len(values)} values are not in the baseline's domain",
            )
        )
    return found


def drift_violation(feature: str, drift: dict[str, Any]) -> dict[str, str]:
    """A drifted feature as a constraint_violations.json item."""
    figures = ", ".join(
        f"{k}={drift[k]:.4g}"
        for k in ("psi", "ks_statistic", "chi_square_p_value", "p_value_adjusted")
        if k in drift
    )
    return violation(feature, "baseline_drift_check", f"drift from the baseline: {figures}")


def _anomalies(checks: RequestChecks, matrix: np.ndarray) -> dict[str, Any] | None:
    scores = checks.anomaly_scores(matrix, may_be_missing=True)
    if scores is None or checks.anomaly is None:
        return None
    flagged = int((scores > checks.anomaly.threshold).sum())
    return {"count": flagged, "rate": flagged / len(matrix), "threshold": checks.anomaly.threshold}
