"""Registry events in template.yaml (docs/events.md): the registry table's stream feeds the publisher
with new audit records only, retried from the first one not published and kept in a queue after a
day; the publisher may put events on the stack's bus, with its source, and nowhere else; the bus's
rule hands every registry event to the webhooks function, whose failed events are kept too."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aimass.contracts.events import EVENT_SOURCE
from aimass.events import event_of, stream_events
from aimass.webhooks import BACKOFF_S, TIMEOUT_S

pytestmark = pytest.mark.infra


def function(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return properties


def test_the_bus_is_named_by_stage_and_its_name_reaches_the_publisher(template: dict[str, Any]) -> None:
    bus = template["Resources"]["AimassEventBus"]

    assert bus["Type"] == "AWS::Events::EventBus"
    assert bus["Properties"]["Name"] == {"Fn::Sub": "aimass-${Stage}-events"}
    variables = function(template, "EventsPublisherFunction")["Environment"]["Variables"]
    assert variables == {"AIMASS_EVENT_BUS": {"Ref": "AimassEventBus"}}


def test_the_stream_gives_the_publisher_new_audit_records_with_their_documents(
    template: dict[str, Any],
) -> None:
    table = template["Resources"]["RegistryTable"]["Properties"]
    source = function(template, "EventsPublisherFunction")["Events"]["AuditRecords"]

    assert table["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert source["Type"] == "DynamoDB"
    props = source["Properties"]
    assert props["Stream"] == {"Fn::GetAtt": ["RegistryTable", "StreamArn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["EventsFailureQueue", "Arn"]},
    }
    [pattern] = [json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"]]
    assert pattern == {"eventName": ["INSERT"], "dynamodb": {"Keys": {"sk": {"S": [{"prefix": "AUDIT#"}]}}}}


def test_the_filter_and_the_publisher_agree_on_what_an_audit_record_is() -> None:
    doc = {"at": "2026-12-06T10:00:00.000Z", "actor": "a", "action": "set_alias", "model": "m"}
    image = {
        "pk": {"S": "MODEL#m"},
        "sk": {"S": "AUDIT#2026-12-06T10:00:00.000Z#00"},
        "doc": {"S": json.dumps(doc)},
    }
    record = {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "1", "NewImage": image, "Keys": image}}

    assert [event for _, event in stream_events([record])] == [event_of(image)]


def test_the_publisher_may_put_events_with_its_source_on_its_bus_only(template: dict[str, Any]) -> None:
    statements = [
        s
        for policy in function(template, "EventsPublisherFunction")["Policies"]
        if "Statement" in policy
        for s in policy["Statement"]
    ]

    assert statements == [
        {
            "Sid": "PublishRegistryEvents",
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": {"Fn::GetAtt": ["AimassEventBus", "Arn"]},
            "Condition": {"StringEquals": {"events:source": EVENT_SOURCE}},
        }
    ]


def test_every_registry_event_reaches_the_webhooks_function_and_its_failures_are_kept(
    template: dict[str, Any],
) -> None:
    webhooks = function(template, "WebhooksFunction")
    rule = webhooks["Events"]["WebhooksRule"]

    assert rule["Type"] == "EventBridgeRule"
    assert rule["Properties"]["EventBusName"] == {"Ref": "AimassEventBus"}
    assert rule["Properties"]["Pattern"] == {"source": [EVENT_SOURCE]}
    # Each invocation retries each subscription itself: a whole-event retry would repeat the others
    assert webhooks["EventInvokeConfig"] == {
        "MaximumRetryAttempts": 0,
        "DestinationConfig": {
            "OnFailure": {"Type": "SQS", "Destination": {"Fn::GetAtt": ["WebhooksFailureQueue", "Arn"]}}
        },
    }
    # Every attempt at its timeout, and the waits between them, fit the function's time
    assert webhooks["Timeout"] >= (len(BACKOFF_S) + 1) * TIMEOUT_S + sum(BACKOFF_S)
