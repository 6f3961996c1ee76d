"""Baselines from a reference dataset: statistics.json and constraints.json in the SageMaker Model
Monitor formats (docs/quality.md shows both), and the anomaly model.

Three aimass extensions, each under an `aimass` key so Model Monitor's own fields keep their meaning:
a numeric feature's constraints carry the reference's `min` and `max` (the request-time range check),
`monitoring_config.aimass` the drift thresholds of the quality report, and statistics.json's
`aimass.prediction` the distribution of the model's predictions on the reference (a feature named
`prediction`: categorical for labels, numeric for values), what a monitor run's prediction drift
compares the captured answers with.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass.errors import UnsupportedMediaType, ValidationFailed, field_error
from aimass.quality import anomaly
from aimass.quality.columns import Column, table_from_records
from aimass.quality.drift import DRIFT_THRESHOLDS

SKETCH_SIZE = 2048
HISTOGRAM_BUCKETS = 10
MAX_DOMAIN = 1000


# The most reference rows kept as the background `:explain` runs against (docs/explain.md).
BACKGROUND_ROWS = 100


@dataclass(frozen=True)
class Baseline:
    statistics: dict[str, Any]
    constraints: dict[str, Any]
    anomaly: dict[str, Any] | None
    background: dict[str, Any] | None = None


def background(columns: list[Column], matrix: np.ndarray, seed: int = 0) -> dict[str, Any] | None:
    """background.json: up to BACKGROUND_ROWS rows of the reference, drawn with `seed` in a random
    order (so the first k of them are a sample too), over the model's columns; a missing value is
    null. Real rows rather than a k-means summary: every value is one the model was given (integral
    and one-hot features stay whole), and no clustering runs at registration. None when a column is
    not numeric (Kernel SHAP here mixes numeric rows only)."""
    if any(column.kind != "numeric" for column in columns) or len(matrix) == 0:
        return None
    chosen = np.random.default_rng(seed).permutation(len(matrix))[:BACKGROUND_ROWS]
    rows = matrix[chosen].astype(np.float64)
    return {
        "features": [column.name for column in columns],
        "rows": [[None if np.isnan(v) else float(v) for v in row] for row in rows],
        "seed": seed,
        "item_count": len(matrix),
    }


def read_reference(data: bytes, filename: str, columns: list[Column]) -> np.ndarray:
    """A reference dataset (CSV with a header row, or Parquet; either may be gzipped) as a matrix
    over the model's columns."""
    name = filename.lower()
    if name.endswith(".gz") or data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise _unreadable(filename, f"not a whole gzip file ({error})") from error
        name = name.removesuffix(".gz")
    if name.endswith(".parquet") or data[:4] == b"PAR1":
        return _read_parquet(data, filename, columns)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnsupportedMediaType("the reference dataset is neither UTF-8 CSV nor Parquet") from error
    # A blank line is no record (a one-column file writes an empty value as "").
    records = [r for r in csv.reader(io.StringIO(text)) if r]
    if len(records) < 2:
        raise ValidationFailed(
            "the reference dataset has no rows",
            [field_error(["reference"], "expected a header row and at least one data row", "empty")],
        )
    return table_from_records(columns, [h.strip() for h in records[0]], records[1:])


def _unreadable(filename: str, why: str) -> ValidationFailed:
    """The caller's file, not the service, is at fault: 422 naming it and why."""
    return ValidationFailed(
        f"the reference dataset {filename} cannot be read: {why}",
        [field_error(["reference"], f"{filename}: {why}", "unreadable")],
    )


def _read_parquet(data: bytes, filename: str, columns: list[Column]) -> np.ndarray:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise UnsupportedMediaType(
            "Parquet needs pyarrow, which this deployment does not ship; send CSV (the aimass CLI "
            "converts Parquet for you)"
        ) from error
    import pyarrow as pa

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(filename, f"not a Parquet file ({str(error)[:200]})") from error
    header = table.column_names
    rows = [
        ["" if v is None else str(v) for v in row] for row in zip(*table.to_pydict().values(), strict=True)
    ]
    return table_from_records(columns, header, rows)


def _numeric_statistics(values: np.ndarray) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    common = {"num_present": int(present.size), "num_missing": int(values.size - present.size)}
    if present.size == 0:
        return {"common": common}
    lo, hi = float(present.min()), float(present.max())
    counts, edges = np.histogram(present, bins=HISTOGRAM_BUCKETS, range=(lo, hi))
    ordered = np.sort(present)
    # The "sketch" keeps the reference's sorted values, or its quantiles when there are more: what
    # KS and PSI compare a batch against.
    sketch = ordered if ordered.size <= SKETCH_SIZE else np.quantile(ordered, np.linspace(0, 1, SKETCH_SIZE))
    return {
        "common": common,
        "mean": float(present.mean()),
        "sum": float(present.sum()),
        "std_dev": float(present.std()),
        "min": lo,
        "max": hi,
        "distribution": {
            "kll": {
                "buckets": [
                    {"lower_bound": float(a), "upper_bound": float(b), "count": float(c)}
                    for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
                ],
                "sketch": {"parameters": {"c": 0.64, "k": float(SKETCH_SIZE)}, "data": [sketch.tolist()]},
            }
        },
    }


def _string_statistics(values: np.ndarray) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    counts = Counter(present)
    return {
        "common": {"num_present": len(present), "num_missing": int(values.size - len(present))},
        "distinct_count": float(len(counts)),
        "distribution": {
            "categorical": {"buckets": [{"value": v, "count": float(c)} for v, c in counts.most_common()]}
        },
    }


def _inferred_type(column: Column) -> str:
    return "String" if column.kind == "string" else "Integral" if column.integral else "Fractional"


def feature_statistics(column: Column, values: np.ndarray) -> dict[str, Any]:
    """One feature's entry of statistics.json, from its column of a matrix."""
    entry: dict[str, Any] = {"name": column.name, "inferred_type": _inferred_type(column)}
    if column.kind == "string":
        entry["string_statistics"] = _string_statistics(values)
    else:
        entry["numerical_statistics"] = _numeric_statistics(values.astype(np.float64))
    return entry


def statistics(columns: list[Column], matrix: np.ndarray) -> dict[str, Any]:
    """statistics.json of a matrix (rows by columns): a reference's, or a monitored window's."""
    return {
        "version": 0.0,
        "dataset": {"item_count": len(matrix)},
        "features": [feature_statistics(column, matrix[:, j]) for j, column in enumerate(columns)],
    }


def compute(columns: list[Column], matrix: np.ndarray, seed: int = 0) -> Baseline:
    """Statistics, constraints and the anomaly model of a reference matrix (rows by columns)."""
    if len(matrix) == 0:
        raise ValidationFailed(
            "the reference dataset has no rows", [field_error(["reference"], "no rows", "empty")]
        )
    described = statistics(columns, matrix)
    constraints = []
    for column, entry in zip(columns, described["features"], strict=True):
        constraint: dict[str, Any] = {"name": entry["name"], "inferred_type": entry["inferred_type"]}
        if column.kind == "string":
            stats = entry["string_statistics"]
            buckets = stats["distribution"]["categorical"]["buckets"]
            if len(buckets) <= MAX_DOMAIN:
                constraint["string_constraints"] = {"domains": sorted(b["value"] for b in buckets)}
        else:
            stats = entry["numerical_statistics"]
            if "min" in stats:
                constraint["num_constraints"] = {"is_non_negative": stats["min"] >= 0}
                constraint["aimass"] = {"min": stats["min"], "max": stats["max"]}
        common = stats["common"]
        constraint["completeness"] = common["num_present"] / len(matrix)
        constraints.append(constraint)
    numeric = [j for j, c in enumerate(columns) if c.kind == "numeric"]
    return Baseline(
        statistics=described,
        constraints={
            "version": 0.0,
            "features": constraints,
            "monitoring_config": {
                "evaluate_constraints": "Enabled",
                "emit_metrics": "Enabled",
                "datatype_check_threshold": 1.0,
                "domain_content_threshold": 1.0,
                "distribution_constraints": {
                    "perform_comparison": "Enabled",
                    "comparison_threshold": DRIFT_THRESHOLDS["ks_statistic"],
                    "comparison_method": "Robust",
                    "categorical_comparison_threshold": 0.1,
                    "categorical_drift_method": "LInfinity",
                },
                "aimass": {"drift_thresholds": DRIFT_THRESHOLDS},
            },
        },
        anomaly=anomaly.fit(matrix[:, numeric].astype(np.float64), [columns[j].name for j in numeric], seed),
        background=background(columns, matrix, seed),
    )


def prediction_value(output: Any) -> Any:
    """What a V1 prediction predicted: a classifier's label (as text: a class, even when it is a
    number), a regressor's value (a bare number, or `value` when the answer was annotated); None for
    anything else."""
    if isinstance(output, dict):
        if output.get("label") is not None:
            return str(output["label"])
        output = output.get("value")
    if isinstance(output, bool) or output is None:
        return None
    if isinstance(output, int | float | str):
        return output
    return None


def prediction_statistics(values: list[Any]) -> dict[str, Any] | None:
    """The predictions' entry of statistics.json (a feature named `prediction`): numeric for values,
    categorical for labels (as text); None without any."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, int | float) for v in present):
        column = Column("prediction", "numeric")
        return feature_statistics(column, np.asarray(present, dtype=np.float64))
    column = Column("prediction", "string")
    return feature_statistics(column, np.asarray([str(v) for v in present], dtype=object))
