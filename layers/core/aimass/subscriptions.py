"""Webhook subscriptions to registry events: stored in the registry table, matched against events.

  SUBSCRIPTIONS / <id>    a subscription (SubscriptionCreated as JSON, its signing secret included)

They belong to no model, so they have no audit trail of their own: adding and removing one is logged
with the caller (docs/events.md).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import secrets
import uuid
from typing import Any
from urllib.parse import urlsplit

from aimass import aws
from aimass.contracts.events import (
    MAX_SUBSCRIPTIONS,
    RegistryEvent,
    Subscription,
    SubscriptionCreated,
    SubscriptionRequest,
)
from aimass.errors import Conflict, NotFound, ValidationFailed, field_error

log = logging.getLogger(__name__)

PARTITION = "SUBSCRIPTIONS"
CHAMPION = "champion"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, allow_http_loopback: bool) -> None:
    """A webhook URL is https to a named host or a public address; with `allow_http_loopback` (the
    local stack: AIMASS_ALLOW_HTTP_WEBHOOKS) http and https to this machine's loopback too.
    ValidationFailed (422) naming the field otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""

    def refuse(message: str, kind: str) -> ValidationFailed:
        return ValidationFailed(f"url {url!r}: {message}", [field_error(["body", "url"], message, kind)])

    if parts.scheme not in ("http", "https") or not host:
        raise refuse("not an http(s) URL with a host", "bad_url")
    if parts.username or parts.password:
        raise refuse("credentials in the URL would be stored and logged: leave them out", "bad_url")
    if allow_http_loopback and _loopback(host):
        return
    if parts.scheme != "https":
        raise refuse("webhooks are https only (http only to loopback in the local stack)", "https_only")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if not address.is_global:
        raise refuse("a private, loopback or link-local address is not a webhook's", "private_address")


def matches(subscription: Subscription, event_type: str, event: RegistryEvent, latest: int | None) -> bool:
    """Whether an event goes to a subscription. `latest` is the model's latest registered version when
    the event is delivered (it matters only to subscriptions to the latest version)."""
    return in_scope(subscription, event_type, event) and (
        subscription.versions == "all" or about_latest(event, latest)
    )


def in_scope(subscription: Subscription, event_type: str, event: RegistryEvent) -> bool:
    """Whether an event is of a type and about a model the subscription asks for."""
    if subscription.events is not None and event_type not in subscription.events:
        return False
    if subscription.model is not None and subscription.model != event.model:
        return False
    return subscription.model_pattern is None or fnmatch.fnmatchcase(event.model, subscription.model_pattern)


def about_latest(event: RegistryEvent, latest: int | None) -> bool:
    """What `versions: latest` lets through: an event about no version (a model-wide change), a move
    or removal of `champion`, or one about the model's latest registered version."""
    if event.version is None or event.details.get("alias") == CHAMPION:
        return True
    return event.version == latest


class Subscriptions:
    """The stored subscriptions (registry table)."""

    def __init__(self, table: str) -> None:
        self.table = table

    @property
    def _ddb(self) -> Any:
        return aws.client("dynamodb")

    def add(self, request: SubscriptionRequest, actor: str, allow_http_loopback: bool) -> SubscriptionCreated:
        if request.model is not None and request.model_pattern is not None:
            raise ValidationFailed(
                "name a model or a model_pattern, not both",
                [field_error(["body", "model_pattern"], "model is given too", "model_and_pattern")],
            )
        check_url(request.url, allow_http_loopback)
        if len(self._items()) >= MAX_SUBSCRIPTIONS:
            raise Conflict(
                f"there are already {MAX_SUBSCRIPTIONS} subscriptions, the most kept: remove one first",
                [field_error(["body"], "too many subscriptions", "too_many")],
            )
        created = SubscriptionCreated(
            **request.model_dump(),
            id=uuid.uuid4().hex[:16],
            created_by=actor,
            secret="whsec_" + secrets.token_hex(24),
        )
        self._ddb.put_item(
            TableName=self.table,
            Item={"pk": {"S": PARTITION}, "sk": {"S": created.id}, "doc": {"S": created.model_dump_json()}},
            ConditionExpression="attribute_not_exists(pk)",
        )
        log.info(
            "subscription added",
            extra={"subscription": created.id, "url": created.url, "model": created.model, "actor": actor},
        )
        return created

    def _items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": PARTITION}},
        }
        while True:
            page = self._ddb.query(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def with_secrets(self) -> list[SubscriptionCreated]:
        """Every subscription with its secret (for delivery only), oldest first."""
        found = [SubscriptionCreated.model_validate_json(item["doc"]["S"]) for item in self._items()]
        return sorted(found, key=lambda s: s.created_at)

    def list(self) -> list[Subscription]:
        return [Subscription.model_validate(s.model_dump(exclude={"secret"})) for s in self.with_secrets()]

    def remove(self, subscription_id: str, actor: str) -> None:
        try:
            self._ddb.delete_item(
                TableName=self.table,
                Key={"pk": {"S": PARTITION}, "sk": {"S": subscription_id}},
                ConditionExpression="attribute_exists(pk)",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException as error:
            raise NotFound(
                f"no subscription {subscription_id!r}",
                [field_error(["path", "id"], "unknown subscription", "unknown_subscription")],
            ) from error
        log.info("subscription removed", extra={"subscription": subscription_id, "actor": actor})
