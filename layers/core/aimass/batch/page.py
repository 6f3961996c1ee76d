"""A batch file's report as the data-quality page (aimass.quality.page): the report's drift scores,
violations and rates, drawn with the file's rows against the version's baseline and with the
predictions the file got.

The batch function does not draw it: it ships as a zip with the runtime and Arrow layers, which hold
no matplotlib (and should not: every batch file would pay for importing it). `aimass batch FILE
--html PAGE` draws it on the machine that sent the file, which has the file, the predictions it
downloaded and matplotlib.

The histograms are of a uniform sample (reservoir, seeded) of the file's rows that parse as the
model's instances, `sample_rows` of them; the scores are the report's, computed by the batch on its
own sample of the predicted rows: both are samples of the same rows, less the few refused.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aimass.batch.formats import BadRecord, FileFormat, read_chunks
from aimass.batch.rows import RowParser
from aimass.contracts.registry import ModelVersion
from aimass.quality.checks import RequestChecks
from aimass.quality.page import DriftPage, PredictionDistribution, page_from_quality_report, values_by_feature

CHUNK_ROWS = 5000
SAMPLE_ROWS = 10_000


def file_page(
    report: Mapping[str, Any],
    file: Path,
    record: ModelVersion,
    baseline: Mapping[str, Any] | None,
    predictions: Path | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> DriftPage:
    """The page of a succeeded file's report (reports/<model>/<file>.json): `file` the rows it was
    sent, `record` the version that predicted them, `baseline` that version's
    {"statistics", "constraints"} (None without one), `predictions` the predictions file written
    for it (CSV, JSON Lines or Parquet, as the file)."""
    drift = report.get("drift") or {}
    quality = report.get("quality") or {}
    rows = report.get("rows") or {}
    predicted = int(rows.get("predicted", 0))
    statistics = (baseline or {}).get("statistics")
    checks = RequestChecks.build(record.signature, (baseline or {}).get("constraints"), None)
    instances = _sample(file, record, sample_rows)
    violations = [
        {
            "feature_name": v["feature"],
            "constraint_check_type": v["check"],
            "description": f"{v['rows']} of {predicted} predicted rows",
        }
        for v in quality.get("violations", [])
    ] + [
        {
            "feature_name": d["feature"],
            "constraint_check_type": "baseline_drift_check",
            "description": "drift from the baseline: "
            + ", ".join(f"{k}={d[k]:.4g}" for k in ("psi", "ks_statistic", "chi_square_p_value") if k in d),
        }
        for d in drift.get("features", [])
        if d.get("drifted")
    ]
    anomalies = int(quality.get("anomalies", 0))
    model = report.get("model") or {}
    return page_from_quality_report(
        {
            "item_count": rows.get("in", 0),
            "drift": drift.get("features", []),
            "violations": violations,
            "completeness": drift.get("completeness", {}),
            "thresholds": drift.get("thresholds", {}),
            # The report counts anomalies, without the threshold they were judged by.
            "anomalies": {"count": anomalies, "rate": anomalies / predicted} if predicted else None,
        },
        model=str(model.get("name", record.name)),
        versions=[int(model.get("version", record.version))],
        subject=f"batch file {(report.get('file') or {}).get('key') or file.name}",
        observed="batch",
        values=values_by_feature(checks, instances) if checks is not None else {},
        statistics=statistics,
        flag_rate=int(quality.get("rows_flagged", 0)) / predicted if predicted else None,
        predictions=_predictions(predictions) if predictions is not None else None,
        note=None
        if statistics is not None
        else f"Version {record.version} has no baseline: no drift to show.",
    )


def _sample(file: Path, record: ModelVersion, size: int) -> list[dict[str, Any]]:
    """A uniform sample of the file's rows that parse as instances (reservoir sampling, seeded)."""
    fmt = FileFormat.of(file.name)
    parser = RowParser(record.signature, fmt.text)
    sampler = random.Random(0)
    sample: list[dict[str, Any]] = []
    seen = 0
    for chunk in read_chunks(file, fmt, CHUNK_ROWS):
        for raw in chunk.records:
            if isinstance(raw, BadRecord):
                continue
            instance, _ = parser.instance(chunk.as_dict(raw))
            if instance is None:
                continue
            if len(sample) < size:
                sample.append(instance)
            elif (slot := sampler.randrange(seen + 1)) < size:
                sample[slot] = instance
            seen += 1
    return sample


def _predictions(path: Path) -> PredictionDistribution | None:
    """The predicted classes (`label`) or values (`prediction`, a bare output) of a predictions
    file: flattened columns (CSV, Parquet) or a nested `prediction` (JSON Lines)."""
    found: list[Any] = []
    for chunk in read_chunks(path, FileFormat.of(path.name), CHUNK_ROWS):
        for raw in chunk.records:
            if isinstance(raw, BadRecord):
                continue
            row = chunk.as_dict(raw)
            item = row.get("prediction")
            answer = item if isinstance(item, dict) else row
            if answer.get("label") not in (None, ""):
                found.append(str(answer["label"]))
            elif isinstance(answer.get("value"), int | float):
                found.append(answer["value"])
            elif isinstance(item, int | float) or (isinstance(item, str) and _number(item) is not None):
                found.append(float(item))
    return PredictionDistribution(values=found) if found else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
