"""In the local stack, an object created under incoming/ runs the template's S3-triggered handler.

This is also the guard on the seams into moto's internals that aimass.local.notifications patches
(LambdaFunction.invoke and s3.notifications._get_s3_event): a moto upgrade that moves them fails here.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from aimass import aws
from aimass.local import notifications, template
from tests.conftest import running_stack
from tests.support import REPO

# A handler that answers with the keys it was given and fails on demand: the test's stand-in for
# the batch function, loaded from its CodeUri as the real one is.
HANDLER = """
def handler(event, context):
    keys = [record["s3"]["object"]["key"] for record in event["Records"]]
    if any("boom" in key for key in keys):
        raise RuntimeError("the handler failed")
    return {"keys": keys, "function": context.function_name}
"""


@dataclass
class Stack:
    bucket: str
    s3: Any

    def put(self, key: str, body: bytes = b"a,b\n1,2\n") -> dict[str, Any]:
        response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        notifications.drain(timeout=5)
        return response  # type: ignore[no-any-return]


def invoked(key: str) -> list[notifications.Invocation]:
    return [i for i in notifications.invocations() if i.function == "BatchFunction" and key in i.keys]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The local stack on a copy of template.yaml whose BatchFunction is the stand-in handler."""
    root = tmp_path_factory.mktemp("notifications")
    (root / "functions" / "batch").mkdir(parents=True)
    (root / "functions" / "batch" / "app.py").write_text(HANDLER)
    document = copy.deepcopy(template.load(REPO / "template.yaml"))
    document["Resources"]["BatchFunction"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": "functions/batch/",
            "Handler": "app.handler",
            # The template's own S3 events and filters: what the stack wires is what AWS would
            "Events": document["Resources"]["BatchFunction"]["Properties"]["Events"],
        },
    }
    # Only the S3 wiring is under test here: no state machine (nor its task functions) to install
    resources = document["Resources"]
    for logical_id in [k for k, v in resources.items() if v["Type"] == "AWS::Serverless::StateMachine"]:
        del resources[logical_id]
    for logical_id in ("BatchStepsFunction", "PipelineFunction"):
        del resources[logical_id]
    (root / "template.yaml").write_text(yaml.safe_dump(document))
    with running_stack(root, "aimass-notifications", root / "template.yaml") as local:
        yield Stack(local.bucket, aws.client("s3"))


def test_a_put_under_incoming_invokes_the_handler_once_with_an_s3_event(stack: Stack) -> None:
    # Given the local stack, when a CSV is put under incoming/
    response = stack.put("incoming/x/y.csv")

    # Then the handler ran once, with the S3 event naming the object as AWS does
    [invocation] = invoked("incoming/x/y.csv")
    record = invocation.event["Records"][0]
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["bucket"]["name"] == stack.bucket
    assert record["s3"]["object"]["eTag"] == response["ETag"].strip('"')
    assert record["s3"]["object"]["versionId"] == response["VersionId"]  # the bucket is versioned
    assert record["s3"]["object"]["size"] == len(b"a,b\n1,2\n")
    assert record["s3"]["object"]["sequencer"]
    assert invocation.error is None
    assert invocation.result == {"keys": ["incoming/x/y.csv"], "function": "BatchFunction"}


@pytest.mark.parametrize("key", ["models/x/y.csv", "incomingx/y.csv", "predictions/x/y.csv"])
def test_a_put_outside_the_prefix_invokes_nothing(stack: Stack, key: str) -> None:
    stack.put(key)

    assert invoked(key) == []


@pytest.mark.parametrize(
    "key", ["incoming/x/Y.CSV", "incoming/x/y.ndjson", "incoming/x/y.txt", "incoming/x/y"]
)
def test_a_put_under_incoming_invokes_the_handler_whatever_the_name(stack: Stack, key: str) -> None:
    stack.put(key)

    assert len(invoked(key)) == 1


def test_a_gzipped_file_under_incoming_invokes_the_handler(stack: Stack) -> None:
    stack.put("incoming/x/y.csv.gz", b"\x1f\x8b")

    assert len(invoked("incoming/x/y.csv.gz")) == 1


def test_a_key_reaches_the_handler_url_encoded_as_s3_sends_it(stack: Stack) -> None:
    stack.put("incoming/x/my file.jsonl", b"{}\n")

    assert len(invoked("incoming/x/my+file.jsonl")) == 1


def test_a_failing_handler_does_not_fail_the_put_and_is_logged(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="aimass.local.notifications"):
        response = stack.put("incoming/x/boom.csv")

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    [invocation] = invoked("incoming/x/boom.csv")
    assert invocation.done
    assert invocation.error == "RuntimeError: the handler failed"
    [logged] = [r for r in caplog.records if r.name == "aimass.local.notifications"]
    assert "BatchFunction failed on incoming/x/boom.csv" in logged.getMessage()
    assert logged.exc_info is not None


def test_an_upload_does_not_wait_for_the_handler(stack: Stack) -> None:
    # The one worker is kept busy; a put still returns, and the invocation runs after it.
    from threading import Event

    release = Event()
    notifications._wiring.executor.submit(release.wait, 5)  # type: ignore[union-attr]
    stack.s3.put_object(Bucket=stack.bucket, Key="incoming/x/queued.csv", Body=b"a\n")
    [queued] = invoked("incoming/x/queued.csv")
    assert not queued.done

    release.set()
    notifications.drain(timeout=5)
    assert queued.done and queued.error is None


def test_installing_again_does_not_invoke_twice(stack: Stack) -> None:
    assert notifications.install(stack.bucket) == ["BatchFunction"]

    stack.put("incoming/x/again.parquet")

    assert len(invoked("incoming/x/again.parquet")) == 1


def test_uninstalling_gives_moto_its_own_behaviour_back_and_installing_again_wires_it(stack: Stack) -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.s3 import notifications as moto_notifications

    # When the wiring is undone (as LocalStack.stop does), twice
    notifications.uninstall()
    notifications.uninstall()

    # Then moto's own functions are back, and a put invokes nothing
    assert LambdaFunction.invoke.__module__ == "moto.awslambda.models"
    assert moto_notifications._get_s3_event.__module__ == "moto.s3.notifications"
    stack.s3.put_object(Bucket=stack.bucket, Key="incoming/x/unwired.csv", Body=b"a\n")
    assert notifications.invocations() == []

    # And installing again wires it again
    notifications.install(stack.bucket)
    stack.put("incoming/x/rewired.csv")
    assert len(invoked("incoming/x/rewired.csv")) == 1
