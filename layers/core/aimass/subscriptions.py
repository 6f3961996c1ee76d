"""Webhook subscriptions to registry events: which URLs may be subscribed, which events go to a
subscription, and adding, listing and removing them (stored by the registry: aimass.registry).

They belong to no model, so they have no audit trail of their own: adding and removing one is logged
with the caller (docs/events.md).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import secrets
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aimass.contracts.events import (
    MAX_SUBSCRIPTIONS,
    RegistryEvent,
    Subscription,
    SubscriptionCreated,
    SubscriptionRequest,
)
from aimass.errors import Conflict, ValidationFailed, field_error

if TYPE_CHECKING:
    from aimass.registry import Registry

log = logging.getLogger(__name__)

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


def add(
    registry: Registry, request: SubscriptionRequest, actor: str, allow_http_loopback: bool
) -> SubscriptionCreated:
    """Store a subscription with a new id and signing secret (returned here, and never again)."""
    if request.model is not None and request.model_pattern is not None:
        raise ValidationFailed(
            "name a model or a model_pattern, not both",
            [field_error(["body", "model_pattern"], "model is given too", "model_and_pattern")],
        )
    check_url(request.url, allow_http_loopback)
    if len(registry.list_subscriptions()) >= MAX_SUBSCRIPTIONS:
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
    registry.put_subscription(created)
    log.info(
        "subscription added",
        extra={"subscription": created.id, "url": created.url, "model": created.model, "actor": actor},
    )
    return created


def listed(registry: Registry) -> list[Subscription]:
    """The subscriptions as shown: without their secrets."""
    return [
        Subscription.model_validate(s.model_dump(exclude={"secret"})) for s in registry.list_subscriptions()
    ]


def remove(registry: Registry, subscription_id: str, actor: str) -> None:
    registry.delete_subscription(subscription_id)
    log.info("subscription removed", extra={"subscription": subscription_id, "actor": actor})
