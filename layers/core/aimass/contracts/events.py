"""Registry events (one per audit record, published on the stack's EventBridge bus) and the webhook
subscriptions they are delivered to (docs/events.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from aimass.contracts.common import MODEL_NAME_PATTERN, Contract, utcnow

# Raised when the detail's shape changes in a way a receiver must know about; additions of fields
# do not change it (docs/events.schema.json).
SCHEMA_VERSION = 1
EVENT_SOURCE = "aimass.registry"

# The detail-type of each audit action (aimass.events.detail_type). An action not named here (one
# added later) is published as GENERIC_DETAIL_TYPE with its action in the detail, never dropped.
DETAIL_TYPES: dict[str, str] = {
    "register_version": "Model Version Registered",
    "set_alias": "Model Alias Moved",
    "remove_alias": "Model Alias Removed",
    "archive_version": "Model Version Archived",
    "unarchive_version": "Model Version Unarchived",
    "set_rules": "Rules Changed",
    "set_quality_policy": "Quality Policy Changed",
    "set_traffic_policy": "Traffic Policy Changed",
    "start_rollout": "Rollout Started",
    "rollout_step": "Rollout Step",
    "promote_rollout": "Rollout Promoted",
    "rollback_rollout": "Rollout Rolled Back",
    "abort_rollout": "Rollout Aborted",
    "request_approval": "Approval Requested",
    "approve_version": "Version Approved",
    "reject_version": "Version Rejected",
    "schedule_release": "Release Scheduled",
    "set_release_policy": "Release Policy Changed",
    "release_version": "Version Released",
    "release_failed": "Release Failed",
    "set_card": "Model Card Changed",
}
GENERIC_DETAIL_TYPE = "Registry Change"
DetailType = str  # one of DETAIL_TYPES' values or GENERIC_DETAIL_TYPE (checked where it is taken in)
EVENT_TYPES: tuple[str, ...] = (*dict.fromkeys(DETAIL_TYPES.values()), GENERIC_DETAIL_TYPE)

# A model name pattern: a model name's characters with `*` (any run of them) and `?` (one of them).
MODEL_PATTERN = r"^[a-z0-9.*?_-][a-z0-9._*?-]{0,62}$"
MAX_SUBSCRIPTIONS = 100


class RegistryEvent(Contract):
    """An event's `detail`: one change of the registry, as its audit record says."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "event_id": "5b0c1f4e-8a55-5d1e-9a51-6f3f3a1b2c4d",
                    "model": "breast-cancer",
                    "version": 2,
                    "action": "set_alias",
                    "actor": "arn:aws:iam::123456789012:user/ana",
                    "note": "TICKET-42",
                    "at": "2026-12-06T15:34:15.708Z",
                    "details": {"alias": "champion", "version": 2, "previous_version": 1},
                }
            ]
        }
    )

    schema_version: int = SCHEMA_VERSION
    event_id: str = Field(
        description="unique per change and the same on every delivery of it: receivers drop repeats by it"
    )
    model: str
    version: int | None = Field(description="the version the change is about; null for model-wide ones")
    action: str = Field(description="the audit record's action (register_version, set_alias, ...)")
    actor: str
    note: str | None = None
    at: str = Field(description="when the change was made (UTC, ms)")
    details: dict[str, Any] = Field(default_factory=dict, description="the audit record's details")


VersionsFilter = Literal["all", "latest"]


class SubscriptionRequest(Contract):
    """What `POST /v1/subscriptions` takes: where to POST, and which events."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://hooks.example.com/aimass", "model_pattern": "fraud-*"},
                {"url": "https://hooks.example.com/aimass", "model": "breast-cancer", "versions": "latest"},
            ]
        },
    )

    url: str = Field(min_length=1, max_length=2048, description="https (http to loopback in the local stack)")
    model: str | None = Field(default=None, pattern=MODEL_NAME_PATTERN, description="one model by name")
    model_pattern: str | None = Field(
        default=None, pattern=MODEL_PATTERN, description="models whose name matches a glob (`*`, `?`)"
    )
    events: list[str] | None = Field(
        default=None, min_length=1, description="detail-types to deliver; unset: all of them"
    )
    versions: VersionsFilter = Field(
        default="all",
        description="`latest`: of the events that name a version, only those about the model's latest "
        "registered version, and every `champion` move; model-wide events (rules, policies) still come",
    )

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: list[str] | None) -> list[str] | None:
        if events is None:
            return None
        unknown = [event for event in events if event not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event type(s) {unknown}; known: {list(EVENT_TYPES)}")
        return sorted(set(events))


class Subscription(Contract):
    """A stored subscription, as listed (its secret is never shown again)."""

    id: str
    url: str
    model: str | None = None
    model_pattern: str | None = None
    events: list[str] | None = None
    versions: VersionsFilter = "all"
    created_at: str = Field(default_factory=utcnow)
    created_by: str = ""


class SubscriptionCreated(Subscription):
    secret: str = Field(
        description="signs every delivery (x-aimass-signature); shown once, at creation: keep it"
    )


class SubscriptionList(Contract):
    subscriptions: list[Subscription]
