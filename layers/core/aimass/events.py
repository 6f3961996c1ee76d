"""Registry events: every audit record the registry writes, as an EventBridge event (docs/events.md).

Events are derived from the audit records, never from the code that makes a change: an audit record
is written in the same transaction as the change (aimass.registry), so an event exists exactly for
the changes that happened, whichever code path (API, pipeline, rollout tick) made them. In AWS the
registry table's stream feeds the publisher function (functions/events), which puts the events on
the stack's bus; the local stack reads new audit records from its table instead
(aimass.local.events). Both turn a table item into an event here.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from aimass.contracts.events import (
    DETAIL_TYPES,
    EVENT_SOURCE,
    GENERIC_DETAIL_TYPE,
    RegistryEvent,
)

log = logging.getLogger(__name__)

AUDIT_PREFIX = "AUDIT#"
MODEL_PREFIX = "MODEL#"
# Names event ids: uuid5 of an audit item's key, so every delivery of one change has the same id.
_EVENT_NAMESPACE = uuid.UUID("0d8a3f52-6f0b-4d5e-9a57-3a1c2b7e9e11")
# PutEvents takes at most 10 entries per call.
PUT_EVENTS_BATCH = 10


@dataclass(frozen=True)
class Event:
    detail_type: str
    detail: RegistryEvent

    def entry(self, bus: str) -> dict[str, Any]:
        """The PutEvents entry that puts it on `bus`."""
        return {
            "Source": EVENT_SOURCE,
            "DetailType": self.detail_type,
            "Detail": self.detail.model_dump_json(),
            "Resources": [],
            "EventBusName": bus,
        }


def detail_type(action: str) -> str:
    return DETAIL_TYPES.get(action, GENERIC_DETAIL_TYPE)


def _version(details: dict[str, Any]) -> int | None:
    """The version a change is about: the one it names, else the canary or shadow of the traffic
    policy it wrote (a rollout's version), else none (a model-wide change)."""
    for key in ("version", "candidate_version"):
        if isinstance(details.get(key), int):
            return int(details[key])
    policy = details.get("policy")
    if isinstance(policy, dict):
        for split in ("canary", "shadow"):
            if isinstance(policy.get(split), dict) and isinstance(policy[split].get("version"), int):
                return int(policy[split]["version"])
    previous = details.get("previous_policy")
    if isinstance(previous, dict) and isinstance(previous.get("canary"), dict):
        # a promotion or abort empties the policy: it is about the canary it had
        version = previous["canary"].get("version")
        return int(version) if isinstance(version, int) else None
    return None


def event_id(pk: str, sk: str) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{pk}|{sk}"))


def is_audit_item(item: dict[str, Any]) -> bool:
    """Whether a registry item (DynamoDB JSON) is an audit record."""
    return item.get("pk", {}).get("S", "").startswith(MODEL_PREFIX) and item.get("sk", {}).get(
        "S", ""
    ).startswith(AUDIT_PREFIX)


def event_of(item: dict[str, Any]) -> Event:
    """The event of an audit item as stored (DynamoDB JSON: pk, sk, doc). The record is read as plain
    JSON, not as the AuditRecord contract: an action added after this code was deployed is still
    published (as a generic Registry Change)."""
    record = json.loads(item["doc"]["S"])
    details = record.get("details") or {}
    return Event(
        detail_type=detail_type(record["action"]),
        detail=RegistryEvent(
            event_id=event_id(item["pk"]["S"], item["sk"]["S"]),
            model=record["model"],
            version=_version(details),
            action=record["action"],
            actor=record.get("actor", ""),
            note=record.get("note"),
            at=record["at"],
            details=details,
        ),
    )


def stream_events(records: list[dict[str, Any]]) -> list[tuple[str, Event]]:
    """The events in a batch of the registry table's stream records (NEW_IMAGE), each with its
    record's sequence number: audit records' inserts only (the event source's filter already keeps
    to them in AWS; checked here again, as a filter is configuration)."""
    found = []
    for record in records:
        image = record.get("dynamodb", {}).get("NewImage")
        if record.get("eventName") == "INSERT" and image and is_audit_item(image):
            found.append((record["dynamodb"]["SequenceNumber"], event_of(image)))
    return found


def publish(bus: str, events: list[Event]) -> list[Event]:
    """Put events on the bus, in batches; the events EventBridge did not take, each logged (the
    publisher function has Lambda retry them; the local stack lets them go)."""
    from aimass.gateways import AwsCallFailed
    from aimass.gateways.events import put_entries

    failed: list[Event] = []
    for start in range(0, len(events), PUT_EVENTS_BATCH):
        batch = events[start : start + PUT_EVENTS_BATCH]
        try:
            refused = put_entries([event.entry(bus) for event in batch])
        except AwsCallFailed as error:  # none of the batch is on the bus
            refused = dict.fromkeys(range(len(batch)), str(error))
        for index, reason in refused.items():
            log.warning(
                "event not published",
                extra={"event_id": batch[index].detail.event_id, "reason": reason},
            )
            failed.append(batch[index])
    return failed


def publish_stream(bus: str, records: list[dict[str, Any]]) -> list[str]:
    """Publish the audit records in a stream batch; the sequence numbers of those not published (for
    the function's partial batch response: Lambda retries from the first of them, so an event may be
    published again, with the same event_id, never skipped)."""
    found = stream_events(records)
    failed = {id(event) for event in publish(bus, [event for _, event in found])}
    return [sequence for sequence, event in found if id(event) in failed]


def schema_document() -> dict[str, Any]:
    """The JSON Schema of an event's detail, as docs/events.schema.json holds it (a unit test keeps the
    two equal)."""
    from aimass.contracts.events import EVENT_TYPES, SCHEMA_VERSION

    schema = RegistryEvent.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://aimass.dev/schemas/registry-event/v{SCHEMA_VERSION}.json",
        **schema,
        "title": "aimass registry event detail",
        "description": f"The `detail` of an EventBridge event with source {EVENT_SOURCE!r}; its "
        f"detail-type is one of: {', '.join(EVENT_TYPES)}.",
    }
