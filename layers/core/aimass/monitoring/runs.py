"""A monitor run of one model over a window, its files, and the runs so far.

A run (`run`) reads the window's captured lines (aimass.monitoring.window), folds each version's rows
into matrices, judges every version that has a baseline and enough rows (aimass.monitoring.judge),
writes `monitoring/<model>/<run>/v<version>/{statistics,constraint_violations,drift,sample}.json`, acts on
what it found (aimass.monitoring.actions, passed in), and writes `monitoring/<model>/<run>/summary.json`
LAST: a summary is the mark of a finished run. A run that fails writes a `failed` summary with its
error when it still can, and raises; earlier runs are other prefixes, never touched.

The run id is the UTC start time to the millisecond and a short random part,
`20261206T160000123Z-1a2b3c`, so that runs list newest first by name.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aimass import artifacts
from aimass.contracts.common import iso_utc
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import ModelVersion
from aimass.errors import NotFound
from aimass.gateways.s3 import Bucket, KeyMissing
from aimass.monitoring.judge import Rows, judge
from aimass.monitoring.window import Tally, Window, captured
from aimass.privacy import personal_features
from aimass.quality.checks import RequestChecks
from aimass.registration import baseline_files
from aimass.registry import Registry

log = logging.getLogger(__name__)

PREFIX = "monitoring/"
SUMMARY = "summary.json"
# A judged version's files, under v<version>/ (docs/monitoring.md, "Outputs")
FILES = ("statistics.json", "constraint_violations.json", "drift.json", "sample.json")
# Written without indentation: thousands of numbers, read by programs (the page), not by people
_COMPACT = frozenset({"sample.json"})

# What the actions do with a finished run's summary; they return what they did (kept in the summary).
Actions = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class MonitorSettings:
    """A run's settings: the bucket, the rows a version needs to be judged, and the most rows a run
    reads (None: all; the newest hours are read first, so a capped run judges the latest traffic)."""

    bucket: str
    min_rows: int = 100
    max_rows: int | None = None


def run_id(at: datetime) -> str:
    # To the millisecond: two runs in one second still list in the order they started
    at = at.astimezone(UTC)
    return f"{at:%Y%m%dT%H%M%S}{at.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def run_prefix(model: str, run: str) -> str:
    return f"{PREFIX}{model}/{run}/"


@dataclass
class _Version:
    record: ModelVersion | None
    rows: Rows
    statistics: dict[str, Any] | None = None
    constraints: dict[str, Any] | None = None


def run(
    registry: Registry,
    settings: MonitorSettings,
    model: str,
    since_s: float,
    actions: Actions | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Monitor `model` over the `since_s` seconds before `now`; the run's summary (as written).
    NotFound for a model the registry does not know; any other error is the run's failure."""
    registry.get_model(model)
    started = now or datetime.now(UTC)
    window = Window.ending(started, since_s)
    run = run_id(started)
    bucket = Bucket(settings.bucket)
    summary: dict[str, Any] = {
        "model": model,
        "run": run,
        "window": window.describe(),
        "started_at": iso_utc(started),
    }
    try:
        summary |= _judged(registry, settings, bucket, model, window, run)
        summary["actions"] = actions(summary) if actions is not None else {}
    except Exception as error:
        log.exception("monitor run %s of %s failed", run, model)
        failed = summary | {
            "status": "failed",
            "outcome": "failed",
            "error": f"{type(error).__name__}: {error}",
            "finished_at": iso_utc(datetime.now(UTC)),
        }
        try:
            _put(bucket, run_prefix(model, run) + SUMMARY, failed)
        except Exception:
            log.exception("the failed summary of monitor run %s of %s could not be written", run, model)
        raise
    summary["finished_at"] = iso_utc(datetime.now(UTC))
    _put(bucket, run_prefix(model, run) + SUMMARY, summary)
    return summary


def _judged(
    registry: Registry, settings: MonitorSettings, bucket: Bucket, model: str, window: Window, run: str
) -> dict[str, Any]:
    tally = Tally()
    versions: dict[int, _Version] = {}
    rows = 0
    truncated = False
    for line in captured(bucket, model, window, tally):
        if settings.max_rows is not None and rows >= settings.max_rows:
            truncated = True
            break
        found = versions.get(line.version)
        if found is None:
            found = versions[line.version] = _version(registry, model, line.version)
        found.rows.add(line.inputs, line.output, line.hour)
        rows += 1
    # Live accuracy is the feedback counters' (all labels so far, not the window's): the same figures
    # as GET .../feedback, beside the window's drift
    accuracy = {a.version: a.model_dump(exclude={"version"}) for a in registry.live_accuracy(model)}
    policy = registry.get_model(model).quality_policy
    results = []
    for number in sorted(versions):
        version = versions[number]
        result, files = _result(settings, version, policy)
        for name, document in files.items():
            _put(bucket, f"{run_prefix(model, run)}v{number}/{name}", document, compact=name in _COMPACT)
        if files:
            result["files"] = {
                name: bucket.uri(f"{run_prefix(model, run)}v{number}/{name}") for name in files
            }
        if number in accuracy:
            result["live_accuracy"] = accuracy[number]
        results.append({"version": number, **result})
    return {
        "status": "succeeded",
        "outcome": _outcome(results),
        "rows": rows,
        "truncated": truncated,
        "max_rows": settings.max_rows,
        "min_rows": settings.min_rows,
        **{k: v for k, v in vars(tally).items()},
        "versions": results,
    }


def _version(registry: Registry, model: str, number: int) -> _Version:
    """A version seen in the window, with what it is judged by: its signature's checks and baseline."""
    try:
        record = registry.get_version(model, number)
    except NotFound:
        return _Version(None, Rows(None))
    ref = record.baseline
    if ref is None:
        return _Version(record, Rows(None))
    files = baseline_files(record)
    anomaly = None
    if ref.anomaly_uri:
        anomaly = json.loads(artifacts.verified(ref.anomaly_uri, ref.sha256["anomaly.json"]))
    checks = RequestChecks.build(record.signature, files["constraints"], anomaly)
    return _Version(record, Rows(checks), files["statistics"], files["constraints"])


def _result(
    settings: MonitorSettings, version: _Version, policy: QualityPolicy
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A version's status and figures, and its files (none unless it was judged). The model's quality
    policy may mark more features personal than the version's signature does."""
    count = version.rows.count
    if version.record is None:
        return {"status": "no_baseline", "rows": count, "reason": "the version is not in the registry"}, {}
    if version.rows.checks is None or version.statistics is None:
        return {
            "status": "no_baseline",
            "rows": count,
            "reason": "the version has no baseline: push it with a reference dataset (--reference) "
            "to monitor it",
        }, {}
    if count < settings.min_rows:
        return {
            "status": "insufficient_data",
            "rows": count,
            "reason": f"{count} captured rows in the window, fewer than the {settings.min_rows} "
            "a judgement needs",
        }, {}
    personal = personal_features(version.record.signature, policy)
    result, files = judge(version.record, version.rows, version.statistics, version.constraints, personal)
    drifted = bool(result["drifted_features"]) or bool(result["prediction_drift"].get("drifted"))
    return {"status": "drift" if drifted else "ok", "rows": count, **result}, files


def _outcome(results: list[dict[str, Any]]) -> str:
    """The run's outcome: `drift` when a version drifted, `no_drift` when one was judged and none
    drifted, else why nothing was judged (`insufficient_data`, `no_baseline`, `no_data`)."""
    statuses = {r["status"] for r in results}
    for outcome, status in (
        ("drift", "drift"),
        ("no_drift", "ok"),
        ("insufficient_data", "insufficient_data"),
    ):
        if status in statuses:
            return outcome
    return "no_baseline" if statuses else "no_data"


def _put(bucket: Bucket, key: str, document: dict[str, Any], compact: bool = False) -> None:
    text = json.dumps(document, indent=None if compact else 1, allow_nan=False)
    bucket.put(key, text.encode(), "application/json")


def list_runs(registry: Registry, bucket: str, model: str, limit: int = 20) -> list[dict[str, Any]]:
    """The model's runs, newest first: each one's summary (a run without one is under way, or its
    process died before it could write even a failed summary: shown as `unfinished`)."""
    registry.get_model(model)
    where = Bucket(bucket)
    runs = sorted(where.folders(f"{PREFIX}{model}/"), reverse=True)[:limit]
    return [_summary_or_unfinished(where, model, r) for r in runs]


def describe(registry: Registry, bucket: str, model: str, run: str) -> dict[str, Any]:
    """A run's summary; NotFound for a run there is no trace of."""
    registry.get_model(model)
    where = Bucket(bucket)
    found = _summary_or_unfinished(where, model, run)
    if found["status"] == "unfinished" and not any(where.keys(run_prefix(model, run))):
        raise NotFound(f"model {model!r} has no monitor run {run!r}")
    return found


def read_file(registry: Registry, bucket: str, model: str, run: str, version: int, name: str) -> Any:
    """One of a run's files of a judged version (FILES), as JSON; NotFound for a model, run, version
    or file there is none of (a version not judged has no files)."""
    registry.get_model(model)
    if name not in FILES:
        raise NotFound(f"a monitor run has no file {name!r}: only {', '.join(FILES)}")
    try:
        return json.loads(Bucket(bucket).get(f"{run_prefix(model, run)}v{version}/{name}"))
    except KeyMissing:
        raise NotFound(f"monitor run {run!r} of {model!r} has no {name} for version {version}") from None


def _summary_or_unfinished(bucket: Bucket, model: str, run: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = json.loads(bucket.get(run_prefix(model, run) + SUMMARY))
        return found
    except KeyMissing:
        return {"model": model, "run": run, "status": "unfinished", "outcome": "unfinished"}


def run_models(
    registry: Registry,
    settings: MonitorSettings,
    since_s: float,
    actions: Actions | None = None,
    only: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The schedule's runs: every registered model's (or those in `only`), one after another; one
    model's failed run is reported and the others still run. Each item: the model, its run, status
    and outcome (and error)."""
    names = [m.name for m in registry.list_models()]
    if only:
        names = [n for n in names if n in set(only)]
    done = []
    for name in names:
        try:
            summary = run(registry, settings, name, since_s, actions)
        except Exception as error:
            done.append({"model": name, "status": "failed", "outcome": "failed", "error": str(error)})
            continue
        done.append({k: summary[k] for k in ("model", "run", "status", "outcome", "rows")})
    return done
