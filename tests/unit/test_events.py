"""Registry events derived from audit records: the detail-type of every action, the version a change
is about, stable event ids, and only new audit records taken from the table's stream."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest

from aimass import events
from aimass.contracts.events import DETAIL_TYPES, GENERIC_DETAIL_TYPE, RegistryEvent
from aimass.contracts.registry import AuditRecord, CanarySplit, TrafficPolicy
from tests.support import REPO
from tests.support import event as sample

# The actions of rollouts and releases (docs/events.md lists them with the others)
LIFECYCLE_ACTIONS = {
    "rollout_step": "Rollout Step",
    "rollback_rollout": "Rollout Rolled Back",
    "request_approval": "Approval Requested",
    "approve_version": "Version Approved",
    "reject_version": "Version Rejected",
    "schedule_release": "Release Scheduled",
    "release_version": "Version Released",
    "release_failed": "Release Failed",
}


def item(record: AuditRecord, sk: str = "AUDIT#2026-12-06T10:00:00.000Z#0a1b2c3d") -> dict[str, Any]:
    """An audit record as the registry stores it (aimass.registry.Registry._audit_put)."""
    return {"pk": {"S": f"MODEL#{record.model}"}, "sk": {"S": sk}, "doc": {"S": record.model_dump_json()}}


def audit(action: str, details: dict[str, Any]) -> AuditRecord:
    return AuditRecord.model_validate(
        {"actor": "ana", "note": "TICKET-42", "action": action, "model": "fraud-eu", "details": details}
    )


@pytest.mark.parametrize("action", get_args(AuditRecord.model_fields["action"].annotation))
def test_every_audit_action_has_a_detail_type_of_its_own(action: str) -> None:
    assert events.detail_type(action) != GENERIC_DETAIL_TYPE
    assert len(set(DETAIL_TYPES.values())) == len(DETAIL_TYPES)


@pytest.mark.parametrize(("action", "detail_type"), sorted(LIFECYCLE_ACTIONS.items()))
def test_the_rollout_and_release_actions_have_their_detail_types(action: str, detail_type: str) -> None:
    assert events.detail_type(action) == detail_type


def test_an_action_this_code_does_not_know_is_published_as_a_generic_registry_change() -> None:
    record = {"at": "2026-12-06T10:00:00.000Z", "actor": "ana", "action": "retire_model", "model": "m"}
    stored = {"pk": {"S": "MODEL#m"}, "sk": {"S": "AUDIT#x"}, "doc": {"S": json.dumps(record)}}

    event = events.event_of(stored)

    assert event.detail_type == "Registry Change"
    assert (event.detail.action, event.detail.version, event.detail.details) == ("retire_model", None, {})


@pytest.mark.parametrize(
    ("action", "details", "detail_type", "version"),
    [
        ("register_version", {"version": 3, "sha256": "ab"}, "Model Version Registered", 3),
        ("set_alias", {"alias": "champion", "version": 3, "previous_version": 2}, "Model Alias Moved", 3),
        ("archive_version", {"version": 1, "latest_active_version": 3}, "Model Version Archived", 1),
        ("set_rules", {"rules_version": 4, "rules": 2}, "Rules Changed", None),
        (
            "start_rollout",
            {
                "policy": TrafficPolicy(canary=CanarySplit(version=3, percent=10)).model_dump(),
                "previous_policy": TrafficPolicy().model_dump(),
            },
            "Rollout Started",
            3,
        ),
        (
            "promote_rollout",
            {
                "policy": TrafficPolicy().model_dump(),
                "previous_policy": TrafficPolicy(canary=CanarySplit(version=3, percent=50)).model_dump(),
            },
            "Rollout Promoted",
            3,
        ),
    ],
)
def test_an_audit_record_becomes_its_event_with_the_version_it_is_about(
    action: str, details: dict[str, Any], detail_type: str, version: int | None
) -> None:
    record = audit(action, details)

    event = events.event_of(item(record))

    assert event.detail_type == detail_type
    assert event.detail == RegistryEvent(
        event_id=event.detail.event_id,
        model="fraud-eu",
        version=version,
        action=action,
        actor="ana",
        note="TICKET-42",
        at=record.at,
        details=json.loads(record.model_dump_json())["details"],
    )
    entry = event.entry("aimass-test-events")
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        "aimass.registry",
        detail_type,
        "aimass-test-events",
    )
    assert json.loads(entry["Detail"])["schema_version"] == 1


def test_the_event_id_is_the_same_for_one_audit_record_and_differs_between_records() -> None:
    record = audit("set_alias", {"alias": "staging", "version": 2})

    first, again = events.event_of(item(record)), events.event_of(item(record))
    other = events.event_of(item(record, sk="AUDIT#2026-12-06T10:00:00.000Z#ffffffff"))

    assert first.detail.event_id == again.detail.event_id != other.detail.event_id


def test_only_inserted_audit_records_of_a_stream_batch_are_events() -> None:
    record = audit("set_alias", {"alias": "staging", "version": 2})
    summary = {"pk": {"S": "MODELS"}, "sk": {"S": "fraud-eu"}, "latest_version": {"N": "2"}}
    batch = [
        {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": "1", "NewImage": summary}},
        {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "2", "NewImage": item(record)}},
        {"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "3", "Keys": {"pk": {"S": "x"}}}},
        {
            "eventName": "INSERT",
            "dynamodb": {"SequenceNumber": "4", "NewImage": {**summary, "sk": {"S": "x"}}},
        },
    ]

    found = events.stream_events(batch)

    assert [(sequence, event.detail_type) for sequence, event in found] == [("2", "Model Alias Moved")]


def test_the_documented_schema_is_the_events_own_and_its_example_is_an_event() -> None:
    documented = json.loads((REPO / "docs" / "events.schema.json").read_text())

    # Regenerate it with: python -c "import json; from aimass.events import schema_document;
    # print(json.dumps(schema_document(), indent=2))" > docs/events.schema.json
    assert documented == events.schema_document()
    for example in documented["examples"]:
        assert RegistryEvent.model_validate(example).model_dump() == example


def test_the_sample_stream_event_becomes_the_sample_bus_event() -> None:
    stream, bus = sample("dynamodb_registry_audit_stream"), sample("eventbridge_registry_event")

    [(sequence, found)] = events.stream_events(stream["Records"])

    assert sequence == stream["Records"][0]["dynamodb"]["SequenceNumber"]
    assert (found.detail_type, found.detail) == (
        bus["detail-type"],
        RegistryEvent.model_validate(bus["detail"]),
    )
