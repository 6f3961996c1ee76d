"""Registry events with moto: the registry table's stream (as the template specifies it) through the
publisher function onto the events bus, read back through an EventBridge rule into an SQS queue; the
webhooks function delivering an event from the bus to a real receiver on loopback; the local stack's
audit feed publishing and delivering the same events; the subscription routes and their bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import aws, events, subscriptions, webhooks, wiring
from aimass.api.app import create_app
from aimass.config import settings
from aimass.contracts.events import SubscriptionRequest
from aimass.local.events import AuditFeed, create_bus
from aimass.local.lambda_runtime import LambdaContext, load_handler
from aimass.local.template import resource_properties
from tests.conftest import drained
from tests.support import Receiver, error_of

BUS = "aimass-test-events"
TABLE = "aimass-test"


def bus_queue() -> str:
    """The events bus with a rule sending every aimass.registry event to a new queue: its URL."""
    create_bus(BUS)
    sqs, bridge = aws.client("sqs"), aws.client("events")
    queue = sqs.create_queue(QueueName="registry-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bridge.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["aimass.registry"]}))
    bridge.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])
    return str(queue)


def stream_records() -> list[dict[str, Any]]:
    """Everything on the registry table's stream so far, as Lambda hands it to the function."""
    streams = aws.client("dynamodbstreams")
    arn = aws.client("dynamodb").describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return list(streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"])


@pytest.fixture
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_ALLOW_HTTP_WEBHOOKS", "true")
    settings.cache_clear()


def test_the_publisher_puts_each_new_audit_record_on_the_bus_once_and_nothing_else(
    registered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the table's stream as the template specifies it, and the bus read back through a queue
    stream = resource_properties("RegistryTable")["StreamSpecification"]
    aws.client("dynamodb").update_table(
        TableName=TABLE, StreamSpecification={"StreamEnabled": True, **stream}
    )
    queue = bus_queue()
    monkeypatch.setenv("AIMASS_EVENT_BUS", BUS)
    settings.cache_clear()
    # When an alias moves and the rules change (an audit record and a summary update each)
    wiring.registry().set_alias("breast-cancer", "staging", 1, "ana", note="TICKET-42")
    wiring.registry().set_quality_policy(
        "breast-cancer", wiring.registry().get_model("breast-cancer").quality_policy, "bo"
    )
    records = stream_records()
    publisher = load_handler("events")
    answer = publisher({"Records": records}, LambdaContext(function_name="aimass-events"))

    # Then every record is accounted for and the bus got exactly the two audit records' events
    assert answer == {"batchItemFailures": []}
    assert {r["eventName"] for r in records} == {"INSERT", "MODIFY"}
    got = drained(aws.client("sqs"), queue)
    assert [(e["source"], e["detail-type"]) for e in got] == [
        ("aimass.registry", "Model Alias Moved"),
        ("aimass.registry", "Quality Policy Changed"),
    ]
    moved = got[0]["detail"]
    assert (moved["model"], moved["version"], moved["action"], moved["actor"], moved["note"]) == (
        "breast-cancer",
        1,
        "set_alias",
        "ana",
        "TICKET-42",
    )
    assert moved["details"] == {"alias": "staging", "version": 1, "previous_version": None}
    audit_keys = [r["dynamodb"]["Keys"] for r in records if r["eventName"] == "INSERT"]
    assert moved["event_id"] == events.event_id(audit_keys[0]["pk"]["S"], audit_keys[0]["sk"]["S"])


def test_the_webhooks_function_posts_a_signed_event_to_each_matching_subscription(
    registered: Any, allow_loopback: None
) -> None:
    with Receiver() as receiver, Receiver(statuses=[500, 500, 500]) as broken:
        registry = wiring.registry()
        mine = subscriptions.add(
            registry, SubscriptionRequest(url=receiver.url, model="breast-cancer"), "ana", True
        )
        subscriptions.add(
            registry, SubscriptionRequest(url=receiver.url, model_pattern="digits*"), "ana", True
        )
        wiring.registry().set_alias("breast-cancer", "staging", 1, "ana")
        [item] = [i for i in audit_items("breast-cancer") if "staging" in i["doc"]["S"]]
        event = events.event_of(item)
        envelope = {
            "source": "aimass.registry",
            "detail-type": event.detail_type,
            "detail": json.loads(event.detail.model_dump_json()),
        }
        deliver = load_handler("webhooks")

        assert deliver(envelope, LambdaContext(function_name="aimass-webhooks")) == {"delivered": 1}
        [(headers, body)] = receiver.requests
        assert webhooks.verify(
            mine.secret, headers["x-aimass-timestamp"], body, headers["x-aimass-signature"]
        )
        assert json.loads(body)["detail"]["event_id"] == event.detail.event_id

        # A subscription whose receiver stays down fails the invocation: Lambda keeps the event
        subscriptions.add(registry, SubscriptionRequest(url=broken.url), "ana", True)
        backoff = webhooks.BACKOFF_S
        webhooks.BACKOFF_S = (0.0, 0.0)
        try:
            with pytest.raises(webhooks.NotDelivered, match=event.detail.event_id):
                deliver(envelope, LambdaContext(function_name="aimass-webhooks"))
        finally:
            webhooks.BACKOFF_S = backoff
        assert len(broken.requests) == 3


def audit_items(model: str) -> list[dict[str, Any]]:
    answer = aws.client("dynamodb").query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :audit)",
        ExpressionAttributeValues={":pk": {"S": f"MODEL#{model}"}, ":audit": {"S": "AUDIT#"}},
    )
    return list(answer["Items"])


def test_the_local_feed_publishes_new_audit_records_once_and_delivers_them(
    registered: Any, allow_loopback: None
) -> None:
    queue = bus_queue()
    feed = AuditFeed(TABLE, BUS)
    try:
        with Receiver() as receiver:
            sub = subscriptions.add(
                wiring.registry(), SubscriptionRequest(url=receiver.url, versions="latest"), "ana", True
            )
            # Records written before the feed started (a kept state) are not sent again
            assert feed.poll() == []
            wiring.registry().set_alias("breast-cancer", "champion", 1, "ana", note="again")
            wiring.registry().set_alias("digits", "staging", 1, "bo")

            published = feed.poll()

            assert [(e.detail_type, e.detail.model) for e in published] == [
                ("Model Alias Moved", "breast-cancer"),
                ("Model Alias Moved", "digits"),
            ]
            assert feed.poll() == []  # seen once
            got = drained(aws.client("sqs"), queue)
            assert sorted(e["detail"]["event_id"] for e in got) == sorted(
                e.detail.event_id for e in published
            )
            arrived = receiver.wait_for(2)
            for headers, body in arrived:
                assert webhooks.verify(
                    sub.secret, headers["x-aimass-timestamp"], body, headers["x-aimass-signature"]
                )
    finally:
        feed.stop()


@pytest.fixture
def client(moto_aws: None) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def test_subscriptions_are_added_listed_without_their_secret_and_removed(client: TestClient) -> None:
    added = client.post(
        "/v1/subscriptions",
        json={
            "url": "https://hooks.example.com/a",
            "model_pattern": "fraud-*",
            "events": ["Rollout Started"],
        },
    )

    assert added.status_code == 201, added.text
    created = added.json()
    assert created["secret"].startswith("whsec_") and created["versions"] == "all"
    listed = client.get("/v1/subscriptions").json()["subscriptions"]
    assert listed == [{k: v for k, v in created.items() if k != "secret"}]
    assert client.delete(f"/v1/subscriptions/{created['id']}").status_code == 204
    assert client.get("/v1/subscriptions").json() == {"subscriptions": []}
    gone = client.delete(f"/v1/subscriptions/{created['id']}")
    assert gone.status_code == 404 and error_of(gone)["details"][0]["loc"] == ["path", "id"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "http://hooks.example.com/a"}, ["body", "url"]),
        ({"url": "http://127.0.0.1:9000/hook"}, ["body", "url"]),  # loopback only where allowed
        ({"url": "https://hooks.example.com/a", "model_pattern": "Fraud-[eu]"}, ["body", "model_pattern"]),
        ({"url": "https://hooks.example.com/a", "model": "Fraud EU"}, ["body", "model"]),
        ({"url": "https://hooks.example.com/a", "events": ["Model Deleted"]}, ["body", "events"]),
        (
            {"url": "https://hooks.example.com/a", "model": "a", "model_pattern": "a*"},
            ["body", "model_pattern"],
        ),
        ({"url": "https://hooks.example.com/a", "versions": "newest"}, ["body", "versions"]),
        ({"url": "https://hooks.example.com/a", "secret": "mine"}, ["body", "secret"]),
        ({"model": "fraud-eu"}, ["body", "url"]),
    ],
)
def test_a_bad_subscription_is_a_422_naming_the_field_and_nothing_is_stored(
    client: TestClient, body: dict[str, Any], loc: list[str]
) -> None:
    refused = client.post("/v1/subscriptions", json=body)

    assert refused.status_code == 422, refused.text
    assert loc in [detail["loc"] for detail in error_of(refused)["details"]]
    assert client.get("/v1/subscriptions").json() == {"subscriptions": []}


def test_records_the_bus_does_not_take_are_returned_for_lambda_to_retry(registered: Any) -> None:
    # Given a stream batch of two audit records and a bus that does not exist (PutEvents refuses)
    wiring.registry().set_alias("breast-cancer", "staging", 1, "ana")
    wiring.registry().set_alias("breast-cancer", "canary", 1, "bo")
    items = [i for i in audit_items("breast-cancer") if "set_alias" in i["doc"]["S"]][-2:]
    records = [
        {"eventName": "INSERT", "dynamodb": {"SequenceNumber": str(n), "NewImage": item, "Keys": item}}
        for n, item in enumerate(items, start=1)
    ]

    failed = events.publish_stream("no-such-bus", records)

    assert failed == ["1", "2"]
