"""Fixtures shared by every layer of tests: fake AWS credentials, demo models, a moto-backed stack."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from aimass.local.stack import FAKE_CREDENTIALS

# Never reach a real AWS account from a test, whatever the machine has configured.
os.environ.update(
    {
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "aimass",
        "POWERTOOLS_METRICS_NAMESPACE": "aimass",
        "AIMASS_BUCKET": "aimass-test",
        "AIMASS_REGISTRY_TABLE": "aimass-test",
    }
)
for variable in ("AWS_PROFILE", "AIMASS_AWS_ENDPOINT_URL", "AIMASS_API_KEY"):
    os.environ.pop(variable, None)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("aimass-state")


@pytest.fixture(scope="session")
def demos(state_dir: Path) -> dict[str, Any]:
    from aimass.local import demo

    return {name: demo.load_or_train(name, state_dir) for name in demo.BUILDERS}


@cache
def one_botocore_loader() -> None:
    """Every boto3 session made from now on shares one botocore loader. Each test starts on a new
    session (aws.reset, as a new container would), and a new session parses the same service and
    endpoint JSON files again: ~30 ms a client, several clients a test."""
    import botocore.loaders
    import botocore.session

    botocore.session.create_loader = cache(botocore.loaders.create_loader)


def reset_caches() -> None:
    from aimass import aws, wiring
    from aimass.config import settings

    one_botocore_loader()
    settings.cache_clear()
    aws.reset()
    wiring.reset()


@contextmanager
def running_stack(
    root: Path,
    bucket: str,
    template: Path | None = None,
    environment: dict[str, str] | None = None,
    **options: Any,
) -> Iterator[Any]:
    """A started LocalStack on free ports (on `template`, or the real template.yaml), with
    `environment` set and LocalStack's other `options`; the process environment and the caches are
    put back afterwards."""
    from moto.moto_api._internal import moto_api_backend

    from aimass.local import template as templates
    from aimass.local.stack import LocalStack
    from gpu_endpoints.process import free_port

    # moto's backends live in this process, past the server that served them: without a reset, a stack
    # would start with what an earlier module's stack made. `aimass serve` starts on an empty one.
    moto_api_backend.reset()
    environ = dict(os.environ)
    if template is None:
        os.environ.pop("AIMASS_TEMPLATE", None)
    else:
        os.environ["AIMASS_TEMPLATE"] = str(template)
    os.environ.update(environment or {})
    templates.parsed.cache_clear()
    local = LocalStack(aws_port=free_port(), state_dir=root / "state", bucket=bucket, **options)
    try:
        local.start()
        yield local
    finally:
        local.stop()
        os.environ.clear()
        os.environ.update(environ)
        templates.parsed.cache_clear()
        reset_caches()


@contextmanager
def mocked_aws(model_cache: Path) -> Iterator[None]:
    """moto in-process, with the bucket and table made from template.yaml's own properties; the
    caches are reset on the way in and out, and the environment put back."""
    from moto import mock_aws

    from aimass.local.resources import create_bucket, create_table

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIMASS_MODEL_CACHE_DIR", str(model_cache))
        reset_caches()
        with mock_aws():
            create_table("aimass-test")
            create_bucket("aimass-test")
            yield
            reset_caches()  # captures still in flight are written to moto, not past it
        reset_caches()


@pytest.fixture
def moto_aws(tmp_path: Path) -> Iterator[None]:
    with mocked_aws(tmp_path / "model-cache"):
        yield


@dataclass
class Registered:
    versions: dict[str, int]


def register_demos(demos: dict[str, Any]) -> Registered:
    """Every demo model registered as v1 and set as champion, as the local stack does."""
    from aimass import wiring
    from aimass.local.demo import register

    return Registered(
        {
            name: register(wiring.registry(), "aimass-test", demo, "test").version
            for name, demo in demos.items()
        }
    )


@dataclass(frozen=True)
class Snapshot:
    """What the bucket and the table hold, to put into another moto: each object's key, bytes,
    content type and whether it was stored with a SHA-256 checksum; each item as DynamoDB types it."""

    objects: list[tuple[str, bytes, str, bool]]
    items: list[dict[str, Any]]


def snapshot(bucket: str, table: str) -> Snapshot:
    from aimass import aws

    s3, ddb = aws.client("s3"), aws.client("dynamodb")
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            found = s3.get_object(Bucket=bucket, Key=entry["Key"], ChecksumMode="ENABLED")
            objects.append(
                (entry["Key"], found["Body"].read(), found["ContentType"], "ChecksumSHA256" in found)
            )
    items = [item for page in ddb.get_paginator("scan").paginate(TableName=table) for item in page["Items"]]
    return Snapshot(objects, items)


def restore(state: Snapshot, bucket: str, table: str) -> None:
    from aimass import aws

    s3, ddb = aws.client("s3"), aws.client("dynamodb")
    for key, body, content_type, checksum in state.objects:
        extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, **extra)
    for start in range(0, len(state.items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in state.items[start : start + 25]]
        unprocessed = ddb.batch_write_item(RequestItems={table: requests})["UnprocessedItems"]
        assert not unprocessed, unprocessed


@dataclass
class RegisteredOnce:
    """The demos registered for real by the first test that asks, and what that left in moto; later
    tests get the same bucket and table back without computing the baselines again."""

    registered: Registered | None = None
    state: Snapshot | None = None


@pytest.fixture(scope="session")
def registered_once() -> RegisteredOnce:
    return RegisteredOnce()


@pytest.fixture
def registered(moto_aws: None, demos: dict[str, Any], registered_once: RegisteredOnce) -> Registered:
    if registered_once.registered is None or registered_once.state is None:
        registered_once.registered = register_demos(demos)
        registered_once.state = snapshot("aimass-test", "aimass-test")
    else:
        restore(registered_once.state, "aimass-test", "aimass-test")
    return Registered(dict(registered_once.registered.versions))


def stopped(sfn: Any, arn: str, timeout: float = 120) -> dict[str, Any]:
    """describe_execution's answer once the execution has stopped (a test fails after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn}: still running after {timeout:.0f} s"
        time.sleep(0.1)
    return execution  # type: ignore[no-any-return]


def drained(sqs: Any, queue_url: str) -> list[Any]:
    """The JSON bodies of the messages on a queue, which is left empty."""
    found = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


def subscribed_queue(topic_arn: str, name: str) -> str:
    """A new SQS queue subscribed to an SNS topic (the embedded AWS's): its URL, for `drained`."""
    from aimass import aws

    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    aws.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=attributes["QueueArn"])
    return str(queue)
