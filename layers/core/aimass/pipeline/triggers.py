"""Retraining asked for by drift: a predicted file whose drift report is over the threshold starts a
run of the training pipeline (the schedules are the other trigger: aimass.cli.pipeline_schedules).

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

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from aimass import aws
from aimass.config import settings

log = logging.getLogger(__name__)

SOURCE = "aimass.monitoring"
DETAIL_TYPE = "Drift detected"
CLAIM_PREFIX = "drift-retraining#"


class PublishFailed(Exception):
    """EventBridge took the request but not the event (PutEvents' FailedEntryCount)."""


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


def drift_of(model: str, report: dict[str, Any]) -> Drift | None:
    """The drift a batch report shows; None when it shows none to judge: a failed file, a model
    version without a baseline, or too few rows for any feature to be checked."""
    section = report.get("drift") or {}
    version = (report.get("model") or {}).get("version")
    checked = section.get("features") or []
    if report.get("status") != "succeeded" or not checked or version is None:
        return None
    return Drift(model, int(version), len(checked), tuple(sorted(section.get("drifted") or [])))


def request_retraining(
    model: str, report: dict[str, Any], report_uri: str, now: float | None = None
) -> dict[str, Any] | None:
    """Ask for a retraining run of `model` when its file's `report` (written to `report_uri`) drifted
    over the threshold, unless one was asked for within the cooldown. Returns the decision:
    `decision` is `below_threshold`, `requested` (with the event's id), `cooldown` (another file
    asked first) or `failed` (with the error; nothing was asked); None when the report has no drift
    to judge."""
    drift = drift_of(model, report)
    if drift is None:
        return None
    s = settings()
    decided: dict[str, Any] = {
        "drifted_fraction": round(drift.drifted_fraction, 4),
        "threshold": s.drift_retraining_fraction,
    }
    if not drift.over(s.drift_retraining_fraction):
        return {"decision": "below_threshold", **decided}
    now = time.time() if now is None else now
    try:
        token, until = claim(model, now, s.drift_retraining_cooldown_hours * 3600)
        if token is None:
            return {"decision": "cooldown", **decided, "next_allowed_at": _iso(until)}
        try:
            event_id = publish(drift, report_uri)
        except (ClientError, BotoCoreError, PublishFailed):
            give_back(model, token)
            raise
    except (ClientError, BotoCoreError, PublishFailed) as error:
        log.exception("drift of %s over %s: could not ask for retraining", model, s.drift_retraining_fraction)
        return {"decision": "failed", **decided, "error": f"{type(error).__name__}: {error}"}
    log.info("drift of %s (%s): retraining requested, event %s", model, decided["drifted_fraction"], event_id)
    return {"decision": "requested", **decided, "event_id": event_id, "next_allowed_at": _iso(until)}


def claim(model: str, now: float, cooldown_s: float) -> tuple[str | None, float]:
    """Claim the model's drift retraining until `now + cooldown_s`: (a token to give it back with,
    that time); or (None, when the standing claim expires) when one is still standing. A claim is an
    item in the idempotency table; DynamoDB's TTL removes it some time after `expiration`, and until
    then the condition treats an expired one as absent."""
    ddb = aws.client("dynamodb")
    token, until = uuid.uuid4().hex, now + cooldown_s
    try:
        ddb.put_item(
            TableName=settings().idempotency_table,
            Item={
                "id": {"S": f"{CLAIM_PREFIX}{model}"},
                "expiration": {"N": str(int(until))},
                "claimed_at": {"S": _iso(now)},
                "token": {"S": token},
            },
            ConditionExpression="attribute_not_exists(id) OR expiration < :now",
            ExpressionAttributeValues={":now": {"N": str(int(now))}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        standing = error.response.get("Item", {}).get("expiration", {}).get("N")
        return None, float(standing) if standing else until
    return token, until


def give_back(model: str, token: str) -> None:
    """Remove the model's claim if it is still the one `token` made."""
    ddb = aws.client("dynamodb")
    try:
        ddb.delete_item(
            TableName=settings().idempotency_table,
            Key={"id": {"S": f"{CLAIM_PREFIX}{model}"}},
            ConditionExpression="#token = :token",
            ExpressionAttributeNames={"#token": "token"},
            ExpressionAttributeValues={":token": {"S": token}},
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise


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
    answer = aws.client("events").put_events(
        Entries=[
            {
                "Source": SOURCE,
                "DetailType": DETAIL_TYPE,
                "Detail": json.dumps(event_detail(drift, report_uri)),
                "Resources": resources,
            }
        ]
    )
    [entry] = answer["Entries"]
    if answer.get("FailedEntryCount") or "EventId" not in entry:
        raise PublishFailed(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
    return str(entry["EventId"])


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
