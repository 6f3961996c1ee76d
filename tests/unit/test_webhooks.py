"""Webhooks: the signature a receiver checks, which subscriptions an event goes to (by name, by
pattern, all; all versions or the latest), which URLs may be subscribed, and delivery's bounded
retries against a real HTTP receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from aimass import webhooks
from aimass.contracts.events import RegistryEvent, Subscription, SubscriptionCreated
from aimass.errors import ValidationFailed
from aimass.subscriptions import check_url, matches
from tests.support import Receiver

SECRET = "whsec_0123456789abcdef"


def event(model: str = "fraud-eu", version: int | None = 3, **details: Any) -> RegistryEvent:
    return RegistryEvent(
        event_id="5b0c1f4e-8a55-5d1e-9a51-6f3f3a1b2c4d",
        model=model,
        version=version,
        action="set_alias",
        actor="ana",
        at="2026-12-06T10:00:00.000Z",
        details=details,
    )


def subscription(**fields: Any) -> SubscriptionCreated:
    return SubscriptionCreated.model_validate(
        {"id": "s1", "url": "https://hooks.example.com/a", "secret": SECRET, **fields}
    )


def test_the_signature_is_an_hmac_sha256_of_the_timestamp_and_body_with_the_secret() -> None:
    body = b'{"id":"x"}'

    header = webhooks.signature(SECRET, "1765000000", body)

    expected = hmac.new(SECRET.encode(), b"1765000000." + body, hashlib.sha256).hexdigest()
    assert header == f"v1={expected}"


def test_a_receiver_accepts_a_fresh_signature_and_refuses_an_altered_body_or_an_old_timestamp() -> None:
    now = int(time.time())
    body = b'{"id":"x"}'
    header = webhooks.signature(SECRET, str(now), body)

    assert webhooks.verify(SECRET, str(now), body, header)
    assert not webhooks.verify(SECRET, str(now), b'{"id":"y"}', header)
    assert not webhooks.verify("whsec_other", str(now), body, header)
    old = str(now - webhooks.TOLERANCE_S - 1)
    assert not webhooks.verify(SECRET, old, body, webhooks.signature(SECRET, old, body))
    assert not webhooks.verify(SECRET, "soon", body, header)


@pytest.mark.parametrize(
    ("fields", "model", "delivered"),
    [
        ({}, "fraud-eu", True),
        ({"model": "fraud-eu"}, "fraud-eu", True),
        ({"model": "fraud-eu"}, "fraud-us", False),
        ({"model_pattern": "fraud-*"}, "fraud-us", True),
        ({"model_pattern": "fraud-*"}, "churn", False),
        ({"model_pattern": "fraud-??"}, "fraud-eu", True),
        ({"events": ["Model Alias Moved"]}, "fraud-eu", True),
        ({"events": ["Rollout Started", "Version Approved"]}, "fraud-eu", False),
    ],
)
def test_an_event_goes_to_the_subscriptions_of_its_model_and_type(
    fields: dict[str, Any], model: str, delivered: bool
) -> None:
    assert matches(subscription(**fields), "Model Alias Moved", event(model), latest=3) is delivered


@pytest.mark.parametrize(
    ("the_event", "delivered"),
    [
        (event(version=3, alias="staging"), True),  # about the latest version
        (event(version=2, alias="staging"), False),  # about an older one
        (event(version=2, alias="champion"), True),  # champion moved back: always
        (event(version=None, rules_version=4), True),  # model-wide
    ],
)
def test_latest_delivers_only_the_latest_versions_events_champion_moves_and_model_wide_changes(
    the_event: RegistryEvent, delivered: bool
) -> None:
    latest = subscription(versions="latest")

    assert matches(latest, "Model Alias Moved", the_event, latest=3) is delivered
    assert matches(subscription(), "Model Alias Moved", the_event, latest=3)


@pytest.mark.parametrize(
    ("url", "allow_loopback", "kind"),
    [
        ("https://hooks.example.com/a", False, None),
        ("https://8.8.8.8/a", False, None),
        ("http://hooks.example.com/a", False, "https_only"),
        ("http://hooks.example.com/a", True, "https_only"),
        ("http://127.0.0.1:9000/hook", True, None),
        ("http://localhost:9000/hook", True, None),
        ("http://127.0.0.1:9000/hook", False, "https_only"),
        ("https://127.0.0.1/hook", False, "private_address"),
        ("https://10.0.0.7/hook", False, "private_address"),
        ("https://169.254.169.254/latest", False, "private_address"),
        ("https://ana:pw@hooks.example.com/a", False, "bad_url"),
        ("ftp://hooks.example.com/a", False, "bad_url"),
        ("hooks.example.com/a", False, "bad_url"),
    ],
)
def test_a_webhook_url_is_https_to_a_public_host_or_http_to_loopback_where_allowed(
    url: str, allow_loopback: bool, kind: str | None
) -> None:
    if kind is None:
        check_url(url, allow_loopback)
        return
    with pytest.raises(ValidationFailed) as refused:
        check_url(url, allow_loopback)
    assert refused.value.details[0]["loc"] == ["body", "url"]
    assert refused.value.details[0]["type"] == kind


def test_a_delivery_is_a_signed_post_of_the_event_retried_while_the_receiver_is_down() -> None:
    with Receiver(statuses=[503, 502, 204]) as receiver:
        to = subscription(url=receiver.url)

        delivery = webhooks.deliver_to(to, "Model Alias Moved", event(alias="staging"), backoff_s=(0.0, 0.0))

        assert (delivery.delivered, delivery.status, delivery.attempts) == (True, 204, 3)
        for headers, body in receiver.requests:
            assert headers["content-type"] == "application/json"
            assert headers["x-aimass-event-id"] == "5b0c1f4e-8a55-5d1e-9a51-6f3f3a1b2c4d"
            assert headers["x-aimass-event-type"] == "Model Alias Moved"
            assert webhooks.verify(SECRET, headers["x-aimass-timestamp"], body, headers["x-aimass-signature"])
            sent = json.loads(body)
            assert sent["id"] == sent["detail"]["event_id"] and sent["detail-type"] == "Model Alias Moved"
            assert (sent["source"], sent["detail"]["details"]) == ("aimass.registry", {"alias": "staging"})


def test_a_refusal_is_not_retried_and_a_receiver_that_stays_down_gets_a_bounded_number_of_attempts() -> None:
    with Receiver(statuses=[410, 500, 500, 500, 500]) as receiver:
        to = subscription(url=receiver.url)

        refused = webhooks.deliver_to(to, "Model Alias Moved", event(), backoff_s=(0.0, 0.0))
        down = webhooks.deliver_to(to, "Model Alias Moved", event(), backoff_s=(0.0, 0.0))

        assert (refused.delivered, refused.status, refused.attempts) == (False, 410, 1)
        assert (down.delivered, down.status, down.attempts) == (False, 500, 3)
        assert len(receiver.requests) == 4
    # Nothing listens there any more: no answer at all, attempts still bounded
    gone = webhooks.deliver_to(to, "Model Alias Moved", event(), backoff_s=(0.0, 0.0))
    assert (gone.delivered, gone.status, gone.attempts) == (False, 0, 3)


def test_deliver_reads_the_latest_version_only_for_subscriptions_to_it_and_posts_to_the_matching_ones() -> (
    None
):
    asked: list[str] = []

    def latest(model: str) -> int | None:
        asked.append(model)
        return 4

    with Receiver() as receiver:
        every = subscription(url=receiver.url)
        newest = SubscriptionCreated(id="s2", url=receiver.url, secret=SECRET, versions="latest")
        other = SubscriptionCreated(id="s3", url=receiver.url, secret=SECRET, model="churn")

        only_all = webhooks.deliver("Model Alias Moved", event(version=3), [every, other], latest)
        with_latest = webhooks.deliver("Model Alias Moved", event(version=3), [every, newest, other], latest)

    assert [d.subscription for d in only_all] == ["s1"] and asked == ["fraud-eu"]
    assert [d.subscription for d in with_latest] == ["s1"]
    assert len(receiver.requests) == 2
    assert Subscription.model_validate(every.model_dump(exclude={"secret"})).id == "s1"
