"""Registry events on `aimass serve`: a webhook subscribed with the CLI receives a signed `Model Alias
Moved` event after an alias is moved with the CLI, from the local stack's own delivery, at a real
HTTP receiver on loopback."""

from __future__ import annotations

import json

import pytest

from aimass import webhooks
from tests.e2e.conftest import Stack
from tests.support import Receiver

pytestmark = pytest.mark.e2e


def test_a_subscribed_webhook_receives_a_signed_event_when_an_alias_moves(stack: Stack) -> None:
    with Receiver() as receiver:
        # Given a webhook subscribed to breast-cancer's events (http to loopback: the local stack)
        added = stack.cli("subscriptions", "add", receiver.url, "--model", "breast-cancer", "--json")
        assert added.returncode == 0, added.stderr
        subscription = json.loads(added.stdout)
        listed = json.loads(stack.cli("subscriptions", "list", "--json").stdout)["subscriptions"]
        assert [s["id"] for s in listed] == [subscription["id"]] and "secret" not in listed[0]

        # When an alias is moved with the CLI
        moved = stack.cli("models", "alias", "breast-cancer", "staging", "1")
        assert moved.returncode == 0, moved.stderr

        # Then the receiver gets that change as a signed Model Alias Moved event
        def is_the_move(headers: dict[str, str], body: bytes) -> bool:
            return json.loads(body)["detail"]["details"].get("alias") == "staging"

        headers, body = receiver.first(is_the_move)
        secret = subscription["secret"]
        assert webhooks.verify(secret, headers["x-aimass-timestamp"], body, headers["x-aimass-signature"])
        event = json.loads(body)
        assert headers["x-aimass-event-type"] == event["detail-type"] == "Model Alias Moved"
        assert headers["x-aimass-event-id"] == event["id"] == event["detail"]["event_id"]
        assert (event["source"], event["detail"]["model"], event["detail"]["version"]) == (
            "aimass.registry",
            "breast-cancer",
            1,
        )
        # And only breast-cancer's events came
        assert {json.loads(b)["detail"]["model"] for _, b in receiver.requests} == {"breast-cancer"}

        removed = stack.cli("subscriptions", "remove", subscription["id"])
        assert removed.returncode == 0, removed.stderr
        assert json.loads(stack.cli("subscriptions", "list", "--json").stdout) == {"subscriptions": []}
