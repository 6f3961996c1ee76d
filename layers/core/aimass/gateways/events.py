"""EventBridge: an event on the default bus."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from aimass import aws
from aimass.gateways import AwsCallFailed


class PublishFailed(AwsCallFailed):
    """EventBridge took the request but not the event (PutEvents' FailedEntryCount)."""


def put_event(source: str, detail_type: str, detail: dict[str, Any], resources: list[str]) -> str:
    """Put one event on the default bus; its id. AwsCallFailed when it is not on the bus."""
    try:
        answer = aws.client("events").put_events(
            Entries=[
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "Resources": resources,
                }
            ]
        )
    except (ClientError, BotoCoreError) as error:
        raise AwsCallFailed(f"{type(error).__name__}: {error}") from error
    [entry] = answer["Entries"]
    if answer.get("FailedEntryCount") or "EventId" not in entry:
        raise PublishFailed(f"PublishFailed: {entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
    return str(entry["EventId"])
