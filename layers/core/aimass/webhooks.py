"""Delivering registry events to webhook subscriptions: signed POSTs, retried a bounded number of
times (docs/events.md). The one delivery implementation: the webhooks function runs it in AWS (an
EventBridge rule on the events bus), the local stack on a worker thread of `aimass serve`.

Each POST carries the event as JSON and
  x-aimass-event-id     the event's id (the same on every delivery of one change: drop repeats by it)
  x-aimass-event-type   its detail-type
  x-aimass-timestamp    seconds since the epoch when this attempt was signed
  x-aimass-signature    v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with the subscription's secret>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aimass.contracts.events import EVENT_SOURCE, RegistryEvent, SubscriptionCreated
from aimass.subscriptions import about_latest, in_scope

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
# Waits before the 2nd and 3rd attempts: three attempts within ~20 s at worst (3 x 5 s + 5 s).
BACKOFF_S = (1.0, 4.0)
# Statuses worth another attempt: the receiver was busy or down. Any other 4xx is its answer.
RETRIED = {408, 425, 429, 500, 502, 503, 504}
# Subscriptions delivered to at once, so that one slow receiver does not hold up the others.
PARALLEL = 8
# How far a receiver should trust a timestamp (docs/events.md's verification snippet uses it).
TOLERANCE_S = 300

Send = Callable[[str, bytes, dict[str, str], float], int]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(secret: str, timestamp: str, body: bytes, header: str, now: float | None = None) -> bool:
    """What a receiver checks: the signature is ours and was made within TOLERANCE_S."""
    try:
        fresh = abs((time.time() if now is None else now) - int(timestamp)) <= TOLERANCE_S
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), header)


def body_of(event_type: str, event: RegistryEvent) -> bytes:
    """What is POSTed: the event in EventBridge's envelope, its id the event's own."""
    envelope = {
        "id": event.event_id,
        "source": EVENT_SOURCE,
        "detail-type": event_type,
        "time": event.at,
        "detail": event.model_dump(mode="json"),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the receiver's answer (a 3xx, not delivered), never followed: it could lead to an
    address that check_url refused."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """POST with the standard library; the status, or 0 when no answer came (refused, timed out)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout_s) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, TimeoutError, OSError):
        return 0


@dataclass(frozen=True)
class Delivery:
    subscription: str
    url: str
    status: int  # the last attempt's (0: no answer)
    attempts: int

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300


def deliver_to(
    subscription: SubscriptionCreated,
    event_type: str,
    event: RegistryEvent,
    send: Send = post,
    sleep: Callable[[float], None] = time.sleep,
    backoff_s: tuple[float, ...] = BACKOFF_S,
) -> Delivery:
    """POST one event to one subscription, signed afresh for each attempt, until a 2xx, an answer
    not worth retrying, or the attempts are spent."""
    body = body_of(event_type, event)
    status, attempts = 0, 0
    for wait in (0.0, *backoff_s):
        if wait:
            sleep(wait)
        attempts += 1
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "user-agent": "aimass-webhooks/1",
            "x-aimass-event-id": event.event_id,
            "x-aimass-event-type": event_type,
            "x-aimass-timestamp": timestamp,
            "x-aimass-signature": signature(subscription.secret, timestamp, body),
        }
        status = send(subscription.url, body, headers, TIMEOUT_S)
        if 200 <= status < 300 or (status and status not in RETRIED):
            break
    delivery = Delivery(subscription.id, subscription.url, status, attempts)
    if not delivery.delivered:
        log.warning(
            "webhook not delivered",
            extra={
                "subscription": subscription.id,
                "url": subscription.url,
                "event_id": event.event_id,
                "status": status,
                "attempts": attempts,
            },
        )
    return delivery


def deliver(
    event_type: str,
    event: RegistryEvent,
    subscriptions: list[SubscriptionCreated],
    latest: Callable[[str], int | None],
    send: Send = post,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    """Deliver an event to every subscription it matches, at most PARALLEL at once. `latest(model)`
    is read once, and only when a matching subscription is to the latest version."""
    candidates = [s for s in subscriptions if in_scope(s, event_type, event)]
    if any(s.versions == "latest" for s in candidates):
        newest = latest(event.model)
        candidates = [s for s in candidates if s.versions == "all" or about_latest(event, newest)]
    if not candidates:
        return []
    with ThreadPoolExecutor(min(PARALLEL, len(candidates)), thread_name_prefix="webhook") as pool:
        return list(pool.map(lambda s: deliver_to(s, event_type, event, send, sleep), candidates))


class NotDelivered(Exception):
    """Some subscriptions did not take an event after every attempt (the webhooks function fails, so
    that Lambda sends the event to its dead-letter queue)."""


def deliver_envelope(
    envelope: dict[str, Any],
    subscriptions: list[SubscriptionCreated],
    latest: Callable[[str], int | None],
) -> list[Delivery]:
    """Deliver an event as EventBridge hands it to a target (`detail-type`, `detail`)."""
    return deliver(
        envelope["detail-type"], RegistryEvent.model_validate(envelope["detail"]), subscriptions, latest
    )
