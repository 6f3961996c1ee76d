"""The data-quality gate on a snapshot, before anything is trained on it: every column present in
every file, enough rows, few gaps per feature, labels the model knows, and not most of the features
drifted from the serving version's baseline (a wholesale shift is more often broken data, e.g. a
unit change, than a world that moved). A failure raises DatasetRejected naming each problem: the
file, column and row where known (the first bad row of a column), and what is wrong."""

from __future__ import annotations

from typing import Any

import numpy as np

from aimass.contracts.registry import ModelVersion
from aimass.pipeline.config import TrainingConfig
from aimass.pipeline.data import DatasetRejected, class_index, feature_matrix, problem, read_snapshot
from aimass.quality.columns import Column, parse_number
from aimass.quality.report import quality_report

# Drift is computed on at most this many rows (seeded sample), as for batch files.
DRIFT_SAMPLE_ROWS = 10_000


def validate(
    snapshot: dict[str, Any],
    columns: list[Column],
    config: TrainingConfig,
    serving: ModelVersion,
    checks: Any,
    statistics: dict[str, Any] | None,
) -> dict[str, Any]:
    """The gate's findings; raises DatasetRejected when the snapshot may not be trained on."""
    problems: list[dict[str, Any]] = [
        problem("column is missing from the file", "missing_column", f["key"], column)
        for f in snapshot["files"]
        for column in f["missing"]
    ]
    header, records = read_snapshot(snapshot["uri"], snapshot["sha256"])
    places = _places(header, records)
    count = len(records)
    if count < config.min_rows:
        problems.append(problem(f"{count} rows, at least {config.min_rows} needed", "too_few_rows"))
    matrix = feature_matrix(header, records, columns)
    gaps = _gaps(matrix, header, records, columns, config, problems, places)
    labels = [r[header.index(config.label)].strip() for r in records]
    classes = serving.signature.class_labels
    label_findings = _labels(labels, classes, config, problems, places)
    drift = _drift(matrix, columns, serving, checks, statistics, config, problems)
    findings = {
        "rows": count,
        "missing_fraction": gaps,
        "labels": label_findings,
        "drift": drift,
        "baseline_of": serving.version,
    }
    if problems:
        raise DatasetRejected(
            f"the training data for {serving.name} failed validation ({len(problems)} problems)", problems
        )
    return findings


def _gaps(
    matrix: np.ndarray,
    header: list[str],
    records: list[list[str]],
    columns: list[Column],
    config: TrainingConfig,
    problems: list[dict[str, Any]],
    places: list[tuple[str | None, int]],
) -> dict[str, float]:
    """Each feature's share of rows without a number; a problem, at its first such row, for each over
    the limit."""
    gaps: dict[str, float] = {}
    for j, column in enumerate(columns):
        empty = np.isnan(matrix[:, j])
        gaps[column.name] = float(empty.mean()) if len(records) else 1.0
        if gaps[column.name] <= config.max_missing_fraction:
            continue
        message = (
            f"{gaps[column.name]:.1%} of rows have no number here (at most {config.max_missing_fraction:.1%})"
        )
        first = int(np.argmax(empty)) if len(records) else None
        if first is not None:
            message += f"; the first: {records[first][header.index(column.name)]!r}"
        problems.append(_at(places, first, message, "incomplete", column.name))
    return gaps


def _places(header: list[str], records: list[list[str]]) -> list[tuple[str | None, int]]:
    """Each snapshot row's data file and row in that file (1: the first after the header)."""
    if "source" not in header:
        return [(None, i + 1) for i in range(len(records))]
    where = header.index("source")
    seen: dict[str, int] = {}
    places: list[tuple[str | None, int]] = []
    for record in records:
        seen[record[where]] = seen.get(record[where], 0) + 1
        places.append((record[where], seen[record[where]]))
    return places


def _at(
    places: list[tuple[str | None, int]], index: int | None, message: str, kind: str, column: str
) -> dict[str, Any]:
    """A problem in `column` whose first case is snapshot row `index` (None: no row to point at)."""
    file, row = places[index] if index is not None else (None, None)
    return problem(message, kind, file, column, row)


def _labels(
    labels: list[str],
    classes: list[str] | None,
    config: TrainingConfig,
    problems: list[dict[str, Any]],
    places: list[tuple[str | None, int]],
) -> dict[str, Any]:
    missing = sum(1 for v in labels if not v)
    if labels and missing / len(labels) > config.max_missing_fraction:
        first = next(i for i, v in enumerate(labels) if not v)
        message = f"{missing} of {len(labels)} rows have no label"
        problems.append(_at(places, first, message, "incomplete", config.label))
    if classes is None:
        bad = [i for i, v in enumerate(labels) if v and parse_number(v) is None]
        if bad:
            message = f"not a number: {labels[bad[0]]!r} ({len(bad)} rows)"
            problems.append(_at(places, bad[0], message, "type_error", config.label))
        return {"missing": missing}
    counts = {c: 0 for c in classes}
    unknown: dict[str, int] = {}
    first_unknown: int | None = None
    for i, value in enumerate(labels):
        if not value:
            continue
        index = class_index(value, classes)
        if index is None:
            unknown[value] = unknown.get(value, 0) + 1
            first_unknown = i if first_unknown is None else first_unknown
        else:
            counts[classes[index]] += 1
    if unknown:
        shown = ", ".join(repr(v) for v in list(unknown)[:5])
        rows = sum(unknown.values())
        message = f"labels the model does not know: {shown} ({rows} rows); expected one of {classes}"
        problems.append(_at(places, first_unknown, message, "unknown_label", config.label))
    for name, n in counts.items():
        if n < 2:
            problems.append(
                problem(f"class {name!r} has {n} rows (at least 2)", "too_few_rows", column=config.label)
            )
    return {"missing": missing, "classes": counts, "unknown": sum(unknown.values())}


def _drift(
    matrix: np.ndarray,
    columns: list[Column],
    serving: ModelVersion,
    checks: Any,
    statistics: dict[str, Any] | None,
    config: TrainingConfig,
    problems: list[dict[str, Any]],
) -> dict[str, Any] | None:
    if statistics is None or checks is None or not len(matrix):
        return None
    rng = np.random.default_rng(config.seed)
    picked = matrix[rng.permutation(len(matrix))[:DRIFT_SAMPLE_ROWS]]
    instances = [
        {c.name: (None if np.isnan(v) else float(v)) for c, v in zip(columns, row, strict=True)}
        for row in picked
    ]
    found = quality_report(checks, statistics, None, instances)
    drifted = sorted(d["feature"] for d in found["drift"] if d["drifted"])
    share = len(drifted) / len(columns)
    if share > config.max_drifted_fraction:
        problems.append(
            problem(
                f"{len(drifted)} of {len(columns)} features drifted from v{serving.version}'s baseline "
                f"(at most {config.max_drifted_fraction:.0%}): {', '.join(drifted[:10])}",
                "drifted",
            )
        )
    return {"features": found["drift"], "drifted": drifted, "sample_rows": len(instances)}
