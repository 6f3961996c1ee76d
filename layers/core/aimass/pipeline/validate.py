"""The data-quality gate on a snapshot, before anything is trained on it: every column present in
every file, enough rows, few gaps per feature, labels the model knows, and not most of the features
drifted from the serving version's baseline (a wholesale shift is more often broken data, e.g. a
unit change, than a world that moved). A failure raises DatasetRejected naming each problem."""

from __future__ import annotations

from typing import Any

import numpy as np

from aimass.contracts.registry import ModelVersion
from aimass.errors import field_error
from aimass.pipeline.config import TrainingConfig
from aimass.pipeline.data import DatasetRejected, class_index, feature_matrix, read_snapshot
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
        field_error(["datasets", f["key"], column], "column is missing from the file", "missing_column")
        for f in snapshot["files"]
        for column in f["missing"]
    ]
    header, records = read_snapshot(snapshot["uri"], snapshot["sha256"])
    count = len(records)
    if count < config.min_rows:
        problems.append(
            field_error(["datasets"], f"{count} rows, at least {config.min_rows} needed", "too_few_rows")
        )
    matrix = feature_matrix(header, records, columns)
    gaps = {
        column.name: float(np.isnan(matrix[:, j]).mean()) if count else 1.0
        for j, column in enumerate(columns)
    }
    for name, share in gaps.items():
        if share > config.max_missing_fraction:
            problems.append(
                field_error(
                    ["datasets", name],
                    f"{share:.1%} of rows have no number here (at most {config.max_missing_fraction:.1%})",
                    "incomplete",
                )
            )
    labels = [r[header.index(config.label)].strip() for r in records]
    classes = serving.signature.class_labels
    label_findings = _labels(labels, classes, config, problems)
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


def _labels(
    labels: list[str], classes: list[str] | None, config: TrainingConfig, problems: list[dict[str, Any]]
) -> dict[str, Any]:
    missing = sum(1 for v in labels if not v)
    if labels and missing / len(labels) > config.max_missing_fraction:
        problems.append(
            field_error(
                ["datasets", config.label], f"{missing} of {len(labels)} rows have no label", "incomplete"
            )
        )
    if classes is None:
        bad = [v for v in labels if v and parse_number(v) is None]
        if bad:
            problems.append(
                field_error(
                    ["datasets", config.label], f"not a number: {bad[0]!r} ({len(bad)} rows)", "type_error"
                )
            )
        return {"missing": missing}
    counts = {c: 0 for c in classes}
    unknown: dict[str, int] = {}
    for value in labels:
        if not value:
            continue
        index = class_index(value, classes)
        if index is None:
            unknown[value] = unknown.get(value, 0) + 1
        else:
            counts[classes[index]] += 1
    if unknown:
        shown = ", ".join(repr(v) for v in list(unknown)[:5])
        problems.append(
            field_error(
                ["datasets", config.label],
                f"labels the model does not know: {shown} ({sum(unknown.values())} rows); "
                f"expected one of {classes}",
                "unknown_label",
            )
        )
    for name, n in counts.items():
        if n < 2:
            problems.append(
                field_error(
                    ["datasets", config.label, name],
                    f"class {name!r} has {n} rows (at least 2)",
                    "too_few_rows",
                )
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
            field_error(
                ["datasets"],
                f"{len(drifted)} of {len(columns)} features drifted from v{serving.version}'s baseline "
                f"(at most {config.max_drifted_fraction:.0%}): {', '.join(drifted[:10])}",
                "drifted",
            )
        )
    return {"features": found["drift"], "drifted": drifted, "sample_rows": len(instances)}
