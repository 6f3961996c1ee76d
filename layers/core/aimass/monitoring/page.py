"""A monitor run's HTML page (aimass.quality.page): one page per run, a section per version seen in
its window (one version: the page of that version alone).

Built from what the API returns, so that it is drawn where matplotlib is (the CLI), never in a
function: the run's summary, each judged version's drift.json, constraint_violations.json and
sample.json (the seeded sample of the window's values and predictions, aimass.monitoring.judge), and
the version's baseline statistics.json. A version the run did not judge (no baseline, too few rows)
gets its section with the reason and its rows, and nothing drawn.

Data in, a str out; matplotlib is imported when the page is rendered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from aimass.quality.page import (
    DriftPage,
    PredictionDistribution,
    RateBucket,
    page_from_quality_report,
    render_versions,
)

JUDGED = ("ok", "drift")
# What the page needs of a judged version's files (aimass.monitoring.runs.FILES)
PAGE_FILES = ("drift.json", "constraint_violations.json", "sample.json")


def run_pages(
    summary: Mapping[str, Any],
    files: Mapping[int, Mapping[str, Any]],
    baselines: Mapping[int, Mapping[str, Any] | None],
) -> list[DriftPage]:
    """A DriftPage per version of the run: `files` holds each judged version's PAGE_FILES by name,
    `baselines` its baseline's statistics.json (by version)."""
    window = summary.get("window") or {}
    subject = f"window {window.get('start', '?')} to {window.get('end', '?')}"
    generated = str(summary.get("finished_at") or summary.get("started_at") or "")
    pages = []
    for version in summary.get("versions", []):
        number = int(version["version"])
        model = str(summary["model"])
        if version["status"] not in JUDGED or number not in files:
            reason = version.get("reason") or "the run judged nothing of this version"
            pages.append(
                DriftPage(
                    model=model,
                    versions=[number],
                    observed="window",
                    subject=subject,
                    rows=int(version["rows"]),
                    features=[],
                    violations=[],
                    generated_at=generated,
                    note=f"v{number} was not judged: {reason}",
                )
            )
            continue
        pages.append(_judged(model, subject, generated, version, files[number], baselines.get(number)))
    return pages


def _judged(
    model: str,
    subject: str,
    generated: str,
    version: Mapping[str, Any],
    files: Mapping[str, Any],
    statistics: Mapping[str, Any] | None,
) -> DriftPage:
    drift, sample = files["drift.json"], files["sample.json"]
    report = {
        "item_count": version["rows"],
        "drift": drift["features"],
        "violations": files["constraint_violations.json"]["violations"],
        "completeness": drift.get("completeness"),
        "anomalies": drift.get("anomalies"),
        "thresholds": drift.get("thresholds"),
    }
    if sample["rows"] < sample["of"]:
        subject += f"; plots from a seeded sample of {sample['rows']:,} of its {sample['of']:,} rows"
    accuracy = version.get("live_accuracy") or {}
    return page_from_quality_report(
        report,
        model=model,
        versions=[int(version["version"])],
        observed="window",
        subject=subject,
        values=sample["features"],
        statistics=statistics,
        generated_at=generated,
        predictions=predictions(sample["predictions"], statistics, drift.get("prediction") or {}),
        rates=rates(version),
        flag_rate=version.get("flag_rate"),
        live_accuracy=accuracy.get("accuracy"),
        labelled=accuracy.get("labelled") if accuracy.get("accuracy") is not None else None,
        skipped=list(version.get("features_skipped") or []),
    )


def predictions(
    values: list[Any], statistics: Mapping[str, Any] | None, scores: Mapping[str, Any]
) -> PredictionDistribution | None:
    """The sample's predictions against the baseline's (statistics.json's `aimass.prediction`: its
    classes' counts, or its values' sketch)."""
    if not values:
        return None
    reference = ((statistics or {}).get("aimass") or {}).get("prediction") or {}
    classes = (reference.get("string_statistics") or {}).get("distribution", {}).get("categorical", {})
    kll = (reference.get("numerical_statistics") or {}).get("distribution", {}).get("kll", {})
    sketch = (kll.get("sketch") or {}).get("data") or []
    return PredictionDistribution(
        values=values,
        baseline_classes={str(b["value"]): float(b["count"]) for b in classes["buckets"]}
        if classes.get("buckets")
        else None,
        baseline_values=np.asarray(sketch[0], dtype=np.float64) if sketch and sketch[0] else None,
        scores={k: v for k, v in scores.items() if k not in ("feature", "status", "reason")},
    )


def rates(version: Mapping[str, Any]) -> list[RateBucket]:
    """The version's rows, anomalies and flagged rows per hour of the window (its summary's
    `rows_by_hour`, `anomalies_by_hour`, `flagged_by_hour`). A version without an anomaly model has
    no anomalies per hour: None, not 0."""
    anomalies = version.get("anomalies_by_hour")
    flagged = version.get("flagged_by_hour") or {}
    return [
        RateBucket(
            f"{hour}:00:00Z",
            int(rows),
            None if anomalies is None else int(anomalies.get(hour, 0)),
            int(flagged.get(hour, 0)),
        )
        for hour, rows in sorted((version.get("rows_by_hour") or {}).items())
    ]


def render_run(
    summary: Mapping[str, Any],
    files: Mapping[int, Mapping[str, Any]],
    baselines: Mapping[int, Mapping[str, Any] | None],
) -> str:
    """The run's page, whole."""
    pages = run_pages(summary, files, baselines)
    window = summary.get("window") or {}
    title = f"Monitor run {summary['run']}: {summary['model']}"
    subject = f"window {window.get('start', '?')} to {window.get('end', '?')}, outcome {summary['outcome']}"
    if not pages:  # nothing captured in the window: a page that says so
        pages = [
            DriftPage(
                model=str(summary["model"]),
                versions=[],
                subject=subject,
                rows=0,
                features=[],
                violations=[],
                observed="window",
                generated_at=str(summary.get("finished_at") or ""),
                note=f"The run's outcome is {summary['outcome']}: "
                + str(summary.get("error") or "no captured rows in the window"),
            )
        ]
    return render_versions(pages, title, subject)
