"""Retraining asked for by drift: a predicted file whose drift report is over the threshold starts a
run of the training pipeline (the schedules are the other trigger: aimass.cli.pipeline_schedules).
A monitor run of captured traffic asks the same way, with the same cooldown claim
(aimass.monitoring.actions: its most drifted version as the report, its summary.json as the URI).

A batch report (aimass.batch.job) has a `drift` section: the features checked against the serving
version's baseline and those that drifted. When more than `drift_retraining_fraction` of the
checked features drifted, `request_retraining` publishes a "Drift detected" event (source
`aimass.monitoring`) on the default EventBridge bus, and template.yaml's DriftRetrainingRule starts
the pipeline with `{"model", "trigger": "drift", "report", "drift"}`.

One drifted file is usually followed by more (a drifted source keeps sending), so a model is
retrained for drift at most once per `drift_retraining_cooldown_hours`: before publishing, a request
claims the model in the idempotency table (`drift-retraining#<model>`, expiring with the cooldown)
with a conditional put, which only one of any number of concurrent requests wins. A request that
cannot publish gives its claim back, so the next drifted file asks again.

Never raises for AWS: retraining is a side effect of predicting a file and must not fail it. What was
decided is returned, and the batch report keeps it under `retraining`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aimass.gateways import AwsCallFailed, events
from aimass.gateways.claims import ClaimTable

log = logging.getLogger(__name__)

SOURCE = "aimass.monitoring"
DETAIL_TYPE = "Drift detected"
CLAIM_PREFIX = "drift-retraining#"


@dataclass(frozen=True)
class DriftRetraining:
    """The drift trigger's settings: the fraction of checked features that must drift, how long a
    model's claim stands, and the table that holds the claims (the idempotency table)."""

    fraction: float
    cooldown_hours: float
    claims_table: str


@dataclass(frozen=True)
class Drift:
    """What a report says about a model's drift: how many features were checked, which drifted."""

    model: str
    version: int
    checked: int
    drifted_features: tuple[str, ...]

    @property
    def drifted_fraction(self) -> float:
        return len(self.drifted_features) / self.checked if self.checked else 0.0

    def over(self, threshold: float) -> bool:
        """More than `threshold` of the checked features drifted (a threshold of 1 is never passed)."""
        return bool(self.drifted_features) and self.drifted_fraction > threshold


def drift_of(model: str, report: Mapping[str, Any]) -> Drift | None:
    """The drift a batch report shows; None when it shows none to judge: a failed file, a model
    version without a baseline, or too few rows for any feature to be checked."""
    section = report.get("drift") or {}
    version = (report.get("model") or {}).get("version")
    checked = section.get("features") or []
    if report.get("status") != "succeeded" or not checked or version is None:
        return None
    return Drift(model, int(version), len(checked), tuple(sorted(section.get("drifted") or [])))


def request_retraining(
    settings: DriftRetraining,
    model: str,
    report: Mapping[str, Any],
    report_uri: str,
    now: float | None = None,
) -> dict[str, Any] | None:
    """Ask for a retraining run of `model` when its file's `report` (written to `report_uri`) drifted
    over the threshold, unless one was asked for within the cooldown. Returns the decision:
    `decision` is `below_threshold`, `requested` (with the event's id), `cooldown` (another file
    asked first) or `failed` (with the error; nothing was asked); None when the report has no drift
    to judge."""
    drift = drift_of(model, report)
    if drift is None:
        return None
    decided: dict[str, Any] = {
        "drifted_fraction": round(drift.drifted_fraction, 4),
        "threshold": settings.fraction,
    }
    if not drift.over(settings.fraction):
        return {"decision": "below_threshold", **decided}
    now = time.time() if now is None else now
    claims = ClaimTable(settings.claims_table)
    try:
        token, until = claims.claim(f"{CLAIM_PREFIX}{model}", now, now + settings.cooldown_hours * 3600)
        if token is None:
            return {"decision": "cooldown", **decided, "next_allowed_at": _iso(until)}
        try:
            event_id = publish(drift, report_uri)
        except AwsCallFailed:
            claims.give_back(f"{CLAIM_PREFIX}{model}", token)
            raise
    except AwsCallFailed as error:
        log.exception("drift of %s over %s: could not ask for retraining", model, settings.fraction)
        return {"decision": "failed", **decided, "error": str(error)}
    log.info("drift of %s (%s): retraining requested, event %s", model, decided["drifted_fraction"], event_id)
    return {"decision": "requested", **decided, "event_id": event_id, "next_allowed_at": _iso(until)}


def event_detail(drift: Drift, report_uri: str) -> dict[str, Any]:
    """The "Drift detected" event's detail, what DriftRetrainingRule's input transformer reads."""
    return {
        "model": drift.model,
        "version": drift.version,
        "drifted_fraction": round(drift.drifted_fraction, 4),
        "drifted_features": list(drift.drifted_features),
        "features_checked": drift.checked,
        "report": report_uri,
    }


def publish(drift: Drift, report_uri: str) -> str:
    """Put the "Drift detected" event on the default bus; its id."""
    resources = []
    if report_uri.startswith("s3://"):
        resources.append(f"arn:aws:s3:::{report_uri.removeprefix('s3://')}")
    return events.put_event(SOURCE, DETAIL_TYPE, event_detail(drift, report_uri), resources)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
