"""EventBridge: events on a bus (the default one, or the registry events' bus)."""

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


def put_entries(entries: list[dict[str, Any]]) -> dict[int, str]:
    """Put up to 10 entries (each naming its bus) in one call; the index and reason of each entry
    EventBridge refused. AwsCallFailed when the call itself failed (none of them is on the bus)."""
    try:
        answer = aws.client("events").put_events(Entries=entries)
    except (ClientError, BotoCoreError) as error:
        raise AwsCallFailed(f"{type(error).__name__}: {error}") from error
    return {
        index: f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}"
        for index, entry in enumerate(answer["Entries"])
        if "EventId" not in entry
    }
