"""One version's captured rows of a window against its baseline: the window's statistics.json, its
constraint_violations.json, drift per feature (Holm-adjusted across the model's features,
aimass.quality.drift), prediction drift against the baseline's predictions, and the anomaly and
quality-flag rates, overall and per hour, computed by the same code as the batch report
(aimass.quality.report); and sample.json, what the run's HTML page is drawn from later
(aimass.monitoring.page)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aimass.contracts.registry import ModelVersion
from aimass.quality import baseline as baselines
from aimass.quality import drift as drifts
from aimass.quality.checks import RequestChecks
from aimass.quality.report import drift_violation, lenient_matrix, matrix_report

# A captured window is read into matrices this many rows at a time: the rows' JSON objects are the
# large part, the matrix of floats a small one.
CHUNK_ROWS = 20_000
PII_SKIP = "personal data (pii): its captured values are erased or tokenised, not comparable"
# sample.json: the values of this many of the window's rows, drawn with a fixed seed (the same window
# gives the same sample). 2,000 draw a feature's histogram against the baseline's as well as the
# whole window would, and keep the file about 1 MB for 30 features whatever the window's size.
SAMPLE_ROWS = 2_000
SAMPLE_SEED = 0


@dataclass
class Rows:
    """A version's captured rows of the window, folded into matrix chunks as they are read."""

    checks: RequestChecks | None
    count: int = 0
    pending: list[Any] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)
    mistyped: np.ndarray | None = None
    extra: Counter[str] = field(default_factory=Counter)
    given: set[str] = field(default_factory=set)
    predictions: list[Any] = field(default_factory=list)
    hours: Counter[str] = field(default_factory=Counter)
    # Each judged row's hour, as its index in `hour_names` (4 bytes a row): the rates per hour
    hour_names: dict[str, int] = field(default_factory=dict)
    pending_hours: list[int] = field(default_factory=list)
    hour_chunks: list[np.ndarray] = field(default_factory=list)

    def add(self, inputs: Any, output: Any, hour: str) -> None:
        self.count += 1
        self.hours[hour] += 1
        if self.checks is None:  # nothing to judge them by: counted only
            return
        self.pending.append(inputs)
        self.pending_hours.append(self.hour_names.setdefault(hour, len(self.hour_names)))
        self.predictions.append(baselines.prediction_value(output))
        if len(self.pending) >= CHUNK_ROWS:
            self.fold()

    def fold(self) -> None:
        if not self.pending or self.checks is None:
            return
        matrix, mistyped, extra, given = lenient_matrix(self.checks, self.pending)
        self.matrices.append(matrix)
        self.mistyped = mistyped if self.mistyped is None else self.mistyped + mistyped
        self.extra.update(extra)
        self.given |= given
        self.hour_chunks.append(np.asarray(self.pending_hours, dtype=np.int32))
        self.pending = []
        self.pending_hours = []

    def matrix(self) -> np.ndarray:
        self.fold()
        return np.concatenate(self.matrices) if len(self.matrices) > 1 else self.matrices[0]

    def row_hours(self) -> np.ndarray:
        """Each row's hour (an index in `hour_names`), in the matrix's order."""
        self.fold()
        return np.concatenate(self.hour_chunks)

    def by_hour(self, mask: np.ndarray) -> dict[str, int]:
        """How many rows in `mask` (one bool a row, in the matrix's order) each hour of the window has."""
        counts = np.bincount(self.row_hours(), weights=mask, minlength=len(self.hour_names))
        return {hour: int(counts[i]) for hour, i in sorted(self.hour_names.items())}


def prediction_drift(reference: dict[str, Any] | None, values: list[Any]) -> dict[str, Any]:
    """The window's predictions against the baseline's (statistics.json's `aimass.prediction`, the
    reference's predictions when the version was pushed): chi-square over the classes, or PSI and KS
    over the values; one test of its own, at the thresholds' level."""
    if reference is None:
        return {
            "status": "no_reference",
            "reason": "the baseline holds no predictions (a version pushed before they were recorded, or "
            "a model whose reference could not be run)",
        }
    present = [v for v in values if v is not None]
    if "numerical_statistics" in reference:
        numbers = np.asarray([v for v in present if isinstance(v, int | float)], dtype=np.float64)
        found = drifts.numeric_drift("prediction", numbers, reference["numerical_statistics"])
    else:
        found = drifts.categorical_drift(
            "prediction", [str(v) for v in present], reference["string_statistics"]
        )
    if found is None:
        return {"status": "too_few", "reason": f"fewer than {drifts.MIN_DRIFT_ROWS} predictions"}
    return {"status": "judged", **drifts.judge([found])[0]}


def judge(
    record: ModelVersion,
    rows: Rows,
    statistics: dict[str, Any],
    constraints: dict[str, Any] | None,
    personal: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The version's result in the summary, and its files by name (statistics.json,
    constraint_violations.json, drift.json). `personal`: the features whose captured values are
    erased or tokenised (aimass.privacy.personal_features), so nothing about their distribution can
    be judged: they are left out."""
    assert rows.checks is not None
    checks = rows.checks
    matrix = rows.matrix()
    mistyped = rows.mistyped if rows.mistyped is not None else np.zeros(len(checks.columns), dtype=np.int64)
    found = matrix_report(checks, statistics, constraints, matrix, mistyped, dict(rows.extra), rows.given)
    if personal:  # judged without them: their drift would only say that tokens are not numbers
        found = _without(found, personal)
    flagged = np.fromiter(
        (any(v["feature"] not in personal for v in row) for row in checks.violations(matrix)),
        dtype=bool,
        count=len(matrix),
    )
    window_statistics = baselines.statistics(checks.columns, matrix)
    window_statistics["features"] = [f for f in window_statistics["features"] if f["name"] not in personal]
    predicted = baselines.prediction_statistics(rows.predictions)
    if predicted is not None:
        window_statistics["aimass"] = {"prediction": predicted}
    reference = (statistics.get("aimass") or {}).get("prediction")
    predictions = prediction_drift(reference, rows.predictions)
    drift = found["drift"]
    drifted = sorted(d["feature"] for d in drift if d["drifted"])
    anomalies = found["anomalies"]
    result: dict[str, Any] = {
        "drifted_features": drifted,
        "features_checked": [d["feature"] for d in drift],
        "features_skipped": [{"feature": name, "reason": PII_SKIP} for name in sorted(personal)],
        "drift_score": len(drifted) / len(drift) if drift else 0.0,
        "max_psi": max((d["psi"] for d in drift if d.get("psi") is not None), default=None),
        "prediction_drift": predictions,
        "violations": len(found["violations"]),
        "anomaly_rate": anomalies["rate"] if anomalies else None,
        "flag_rate": int(flagged.sum()) / rows.count,
        "rows_by_hour": dict(sorted(rows.hours.items())),
        "flagged_by_hour": rows.by_hour(flagged),
    }
    if anomalies:  # the rows above the threshold, as matrix_report counted them
        scores = checks.anomaly_scores(matrix, may_be_missing=True)
        assert scores is not None and checks.anomaly is not None
        result["anomalies_by_hour"] = rows.by_hour(scores > checks.anomaly.threshold)
    files = {
        "statistics.json": window_statistics,
        "constraint_violations.json": {"violations": found["violations"]},
        "drift.json": {
            "features": drift,
            "prediction": predictions,
            "thresholds": found["thresholds"],
            "correction": drifts.CORRECTION,
            "completeness": found["completeness"],
            "anomalies": anomalies,
        },
        "sample.json": sample(checks, matrix, rows.predictions, personal),
    }
    return result, files


def sample(
    checks: RequestChecks,
    matrix: np.ndarray,
    predictions: list[Any],
    personal: frozenset[str],
    size: int = SAMPLE_ROWS,
    seed: int = SAMPLE_SEED,
) -> dict[str, Any]:
    """sample.json: the values of up to `size` of the window's rows, drawn with `seed`, per feature
    (present and finite ones; categories as text) and their predictions: what the run's page draws
    against the baseline. Each list is shuffled on its own: the page needs each feature's
    distribution only, and the rows cannot be put back together from the file. Personal features are
    left out altogether: no value of theirs is kept."""
    draw = np.random.default_rng(seed)
    count = len(matrix)
    taken = np.arange(count)
    if count > size:
        taken = np.sort(draw.choice(count, size, replace=False))
    rows = matrix[taken]
    features: dict[str, list[Any]] = {}
    for j, column in enumerate(checks.columns):
        if column.name in personal:
            continue
        if rows.dtype == object:
            kept = [str(v) if isinstance(v, str) else float(v) for v in rows[:, j].tolist() if _kept(v)]
        else:
            values = rows[:, j]
            kept = values[np.isfinite(values)].tolist()
        features[column.name] = _shuffled(draw, kept)
    return {
        "rows": len(taken),
        "of": count,
        "seed": seed,
        "features": features,
        "predictions": _shuffled(draw, [p for p in (predictions[i] for i in taken.tolist()) if _kept(p)]),
        "left_out": sorted(personal),
    }


def _shuffled(draw: np.random.Generator, values: list[Any]) -> list[Any]:
    return [values[i] for i in draw.permutation(len(values)).tolist()]


def _kept(value: Any) -> bool:
    """A value sample.json keeps: text, or a finite number (JSON has no NaN)."""
    if isinstance(value, str):
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))


def _without(found: dict[str, Any], personal: frozenset[str]) -> dict[str, Any]:
    """The report with personal features left out of drift (the family re-judged without them) and
    of the violations."""
    drift = drifts.judge([dict(d) for d in found["drift"] if d["feature"] not in personal])
    violations = [
        v
        for v in found["violations"]
        if v["feature_name"] not in personal and v["constraint_check_type"] != "baseline_drift_check"
    ]
    violations += [drift_violation(d["feature"], d) for d in drift if d["drifted"]]
    completeness = {k: v for k, v in found["completeness"].items() if k not in personal}
    return found | {"drift": drift, "violations": violations, "completeness": completeness}
