"""Retraining asked for by drift (aimass.pipeline.triggers) against moto: a report over the threshold
publishes one "Drift detected" event, one under it publishes none, and a burst of drifted files asks
once per model per cooldown (the claim in the idempotency table). The events are read from an SQS
queue that an EventBridge rule with the template's pattern delivers to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from aimass import aws, wiring
from aimass.config import settings
from aimass.local.lambda_runtime import LambdaContext, load_handler
from aimass.local.resources import create_table
from aimass.local.template import resource_properties
from aimass.pipeline import triggers
from tests.conftest import drained
from tests.integration.test_batch_drop import drop
from tests.integration.test_batch_job import csv_bytes, holdout

TABLE = "aimass-test-idempotency"
FEATURES = [f"f{i}" for i in range(30)]
HOUR = 3600.0
NOW = 1_800_000_000.0


def report(drifted: int, model: str = "churn") -> dict[str, Any]:
    return {
        "status": "succeeded",
        "model": {"name": model, "version": 2, "backend": "onnx"},
        "drift": {
            "features": [{"feature": f, "drifted": i < drifted} for i, f in enumerate(FEATURES)],
            "drifted": FEATURES[:drifted],
        },
    }


class Bus:
    """The default bus's drift events, as a rule with the template's pattern delivers them."""

    def __init__(self) -> None:
        sqs = aws.client("sqs")
        self.queue = sqs.create_queue(QueueName="drift-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        pattern = resource_properties("DriftRetrainingRule")["EventPattern"]
        events = aws.client("events")
        events.put_rule(Name="drift-capture", EventPattern=json.dumps(pattern))
        events.put_targets(Rule="drift-capture", Targets=[{"Id": "queue", "Arn": arn}])

    def received(self) -> list[dict[str, Any]]:
        return drained(aws.client("sqs"), self.queue)


@pytest.fixture
def bus(registered: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    monkeypatch.setenv("AIMASS_IDEMPOTENCY_TABLE", TABLE)
    settings.cache_clear()
    create_table(TABLE, "IdempotencyTable")
    yield Bus()
    settings.cache_clear()


def test_a_report_drifted_over_the_threshold_publishes_a_drift_event(bus: Bus) -> None:
    uri = "s3://aimass-test/reports/churn/day.csv.json"

    decided = triggers.request_retraining(
        wiring.drift_retraining(), "churn", report(drifted=12), uri, now=NOW
    )

    assert decided is not None and decided["decision"] == "requested"
    assert decided["drifted_fraction"] == 0.4 and decided["threshold"] == 0.3
    [event] = bus.received()
    assert event["id"] == decided["event_id"]
    assert event["source"] == "aimass.monitoring" and event["detail-type"] == "Drift detected"
    assert event["detail"] == {
        "model": "churn",
        "version": 2,
        "drifted_fraction": 0.4,
        "drifted_features": sorted(FEATURES[:12]),
        "features_checked": 30,
        "report": uri,
    }
    assert event["resources"] == ["arn:aws:s3:::aimass-test/reports/churn/day.csv.json"]


def test_a_report_under_the_threshold_publishes_nothing(bus: Bus) -> None:
    decided = triggers.request_retraining(
        wiring.drift_retraining(), "churn", report(drifted=9), "s3://b/r.json", now=NOW
    )

    assert decided == {"decision": "below_threshold", "drifted_fraction": 0.3, "threshold": 0.3}
    assert bus.received() == []
    # and claims nothing: a drifted file after it still asks
    assert triggers.request_retraining(
        wiring.drift_retraining(), "churn", report(drifted=20), "s3://b/r.json", now=NOW
    )["decision"] == ("requested")


def test_drifted_files_within_the_cooldown_ask_once_per_model(bus: Bus) -> None:
    def ask(model: str, at: float) -> dict[str, Any] | None:
        return triggers.request_retraining(
            wiring.drift_retraining(), model, report(20, model), "s3://b/r.json", now=at
        )

    first = ask("churn", NOW)
    later = [ask("churn", NOW + h * HOUR) for h in (0.01, 1, 23.9)]
    other = ask("fraud", NOW + HOUR)  # another model has its own cooldown
    after = ask("churn", NOW + 24 * HOUR + 1)

    assert first is not None and first["decision"] == "requested"
    assert [d["decision"] for d in later if d] == ["cooldown"] * 3
    assert {d["next_allowed_at"] for d in later if d} == {first["next_allowed_at"]}
    assert first["next_allowed_at"] == "2027-01-16T08:00:00+00:00"  # NOW + 24 h
    assert other is not None and other["decision"] == "requested"
    assert after is not None and after["decision"] == "requested"
    assert [(e["detail"]["model"], e["id"]) for e in bus.received()] == [
        ("churn", first["event_id"]),
        ("fraud", other["event_id"]),
        ("churn", after["event_id"]),
    ]


def test_the_cooldown_and_threshold_are_settings(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_DRIFT_RETRAINING_COOLDOWN_HOURS", "2")
    monkeypatch.setenv("AIMASS_DRIFT_RETRAINING_FRACTION", "0.5")
    settings.cache_clear()

    under = triggers.request_retraining(
        wiring.drift_retraining(), "churn", report(15), "s3://b/r.json", now=NOW
    )
    asked = triggers.request_retraining(
        wiring.drift_retraining(), "churn", report(16), "s3://b/r.json", now=NOW
    )
    again = triggers.request_retraining(
        wiring.drift_retraining(), "churn", report(16), "s3://b/r.json", now=NOW + 2 * HOUR + 1
    )

    assert under is not None and under["decision"] == "below_threshold"
    assert asked is not None and asked["decision"] == "requested"
    assert again is not None and again["decision"] == "requested"
    monkeypatch.setenv("AIMASS_DRIFT_RETRAINING_FRACTION", "1")  # off
    settings.cache_clear()
    off = triggers.request_retraining(
        wiring.drift_retraining(), "fraud", report(30, "fraud"), "s3://b/r.json", now=NOW
    )
    assert off is not None and off["decision"] == "below_threshold"


def test_a_request_that_cannot_publish_gives_its_claim_back(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = aws.client("events")
    refused = {
        "FailedEntryCount": 1,
        "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try later"}],
    }
    monkeypatch.setattr(events, "put_events", lambda **_: refused)

    failed = triggers.request_retraining(
        wiring.drift_retraining(), "churn", report(20), "s3://b/r.json", now=NOW
    )

    assert failed is not None and failed["decision"] == "failed"
    assert "InternalFailure: try later" in failed["error"]
    monkeypatch.undo()
    monkeypatch.setenv("AIMASS_IDEMPOTENCY_TABLE", TABLE)
    settings.cache_clear()
    # The next drifted file asks, the cooldown not held by the request that published nothing
    retried = triggers.request_retraining(
        wiring.drift_retraining(), "churn", report(20), "s3://b/r.json", now=NOW + 60
    )
    assert retried is not None and retried["decision"] == "requested"
    assert len(bus.received()) == 1


def test_a_guard_table_that_cannot_be_reached_fails_the_request_not_the_file(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMASS_IDEMPOTENCY_TABLE", "no-such-table")
    settings.cache_clear()

    failed = triggers.request_retraining(
        wiring.drift_retraining(), "churn", report(20), "s3://b/r.json", now=NOW
    )

    assert (
        failed is not None
        and failed["decision"] == "failed"
        and "ResourceNotFoundException" in failed["error"]
    )
    assert bus.received() == []


def test_a_drifted_dropped_file_asks_for_retraining_and_its_report_says_so(
    bus: Bus, demos: dict[str, Any]
) -> None:
    handler = load_handler("batch")
    shifted = [{k: v * 1.3 for k, v in row.items()} for row in holdout(demos, 100)]

    clean = handler(drop("incoming/breast-cancer/clean.csv", csv_bytes(holdout(demos, 100))), LambdaContext())
    drifted = handler(drop("incoming/breast-cancer/shifted.csv", csv_bytes(shifted)), LambdaContext())

    s3 = aws.client("s3")
    read = lambda key: json.loads(s3.get_object(Bucket="aimass-test", Key=key)["Body"].read())  # noqa: E731
    clean_report = read("reports/breast-cancer/clean.csv.json")
    drifted_report = read("reports/breast-cancer/shifted.csv.json")
    assert clean["files"][0]["status"] == drifted["files"][0]["status"] == "succeeded"
    assert clean_report["retraining"]["decision"] == "below_threshold"
    assert drifted_report["retraining"]["decision"] == "requested"
    [event] = bus.received()
    assert event["detail"]["model"] == "breast-cancer" and event["detail"]["version"] == 1
    assert event["detail"]["report"] == drifted["files"][0]["report"]
    assert event["detail"]["drifted_features"] == drifted_report["drift"]["drifted"]
    assert event["id"] == drifted_report["retraining"]["event_id"]
