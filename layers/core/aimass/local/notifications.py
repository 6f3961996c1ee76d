"""S3 → Lambda in the local stack: an object created in the bucket runs the real handler in-process.

For every function in the template with S3 events on the artifacts bucket, `install` creates the
function in the embedded Lambda (placeholder code: it only has to exist so that the notification's
ARN resolves) and puts the bucket's notification configuration (the template's events and
prefix/suffix filters) through the S3 API, so moto matches keys exactly as it would any
configuration. Matching notifications then reach the real handler on a background worker, as S3
invokes Lambda asynchronously: an upload never waits for a batch job, and a handler's exception is
logged, never raised into moto.

The seams into moto's internals (moto is pinned to >=5.1.10,<5.3 in pyproject.toml;
tests/integration/test_local_notifications.py checks that they still hold):
- `moto.awslambda.models.LambdaFunction.invoke(self, body: str, request_headers, response_headers)`
  is what moto's S3 calls for a matching LambdaFunctionConfiguration
  (`moto.s3.notifications._invoke_awslambda`, with `json.dumps(event), {}, {}`). For the functions
  wired here it queues the real handler (a Lambda Invoke API call on one is queued too, as an
  `Event` invocation, and answers an empty payload); every other function keeps moto's behaviour.
- `moto.s3.notifications._get_s3_event(event_name, bucket, key, notification_id)` builds the event
  without `versionId` and `sequencer`, and with the key's slashes encoded (%2F); the wrapper adds
  them from the key and keeps the slashes, as S3 does.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from aimass import aws
from aimass.local import template
from aimass.local.lambda_runtime import Handler, LambdaContext, load_function

logger = logging.getLogger(__name__)

ROLE_NAME = "aimass-local-lambda"
MAX_RECORDS = 1000  # invocations remembered for `invocations()`; a long `serve` keeps the latest

# Nothing runs this: the real handler is dispatched in-process instead.
_PLACEHOLDER = "def handler(event, context):\n    raise NotImplementedError('dispatched in-process')\n"


@dataclass(frozen=True)
class Function:
    """A template function that S3 notifications invoke, as the embedded Lambda knows it."""

    logical_id: str
    code_uri: Path
    handler: str
    memory_mb: int
    timeout_s: float
    arn: str = ""


@dataclass
class Invocation:
    """One dispatched invocation: what was invoked with what, and how it ended."""

    function: str  # the template's logical id
    event: dict[str, Any]
    request_id: str
    done: bool = False
    result: Any = None
    error: str | None = None

    @property
    def keys(self) -> list[str]:
        return [record["s3"]["object"]["key"] for record in self.event.get("Records", []) if "s3" in record]


@dataclass
class _Wiring:
    functions: dict[str, Function]  # by unqualified ARN
    original_invoke: Callable[..., Any]
    original_s3_event: Callable[..., dict[str, Any]]
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="aimass-s3-lambda")
    )
    pending: set[Future[None]] = field(default_factory=set)
    records: deque[Invocation] = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))
    handlers: dict[str, Handler] = field(default_factory=dict)  # warm "containers", by logical id


_lock = threading.Lock()
_wiring: _Wiring | None = None


def install(bucket: str, bucket_logical_id: str = "ArtifactsBucket") -> list[str]:
    """Wire the template's S3 events on `bucket_logical_id` to the real handlers; returns their
    logical ids. Idempotent; `uninstall` undoes it."""
    global _wiring
    functions = list(_s3_functions(bucket_logical_id))
    if not functions:
        return []
    role = _role_arn()
    lam = aws.client("lambda")
    wired, configurations = [], []
    for function, events in functions:
        try:
            arn = lam.create_function(
                FunctionName=function.logical_id,
                Runtime="python3.12",
                Role=role,
                Handler=function.handler,
                Code={"ZipFile": _placeholder_zip()},
                MemorySize=function.memory_mb,
            )["FunctionArn"]
        except lam.exceptions.ResourceConflictException:
            arn = lam.get_function(FunctionName=function.logical_id)["Configuration"]["FunctionArn"]
        wired.append(replace(function, arn=arn))
        configurations += [{"LambdaFunctionArn": arn} | event for event in events]
    aws.client("s3").put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": configurations}
    )
    with _lock:
        if _wiring is None:
            _wiring = _patch()
        _wiring.functions.update({function.arn: function for function in wired})
    return [function.logical_id for function in wired]


def uninstall() -> None:
    """Give moto its own behaviour back; invocations not started yet are dropped. Idempotent."""
    global _wiring
    with _lock:
        wiring, _wiring = _wiring, None
    if wiring is None:
        return
    from moto.awslambda.models import LambdaFunction
    from moto.s3 import notifications

    LambdaFunction.invoke = wiring.original_invoke  # type: ignore[method-assign]
    notifications._get_s3_event = wiring.original_s3_event
    wiring.executor.shutdown(wait=False, cancel_futures=True)


def drain(timeout: float = 60.0) -> None:
    """Wait until every invocation dispatched so far (and any they cause) has finished.
    Raises TimeoutError if some are still queued or running after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with _lock:
            pending = set(_wiring.pending) if _wiring else set()
        if not pending:
            return
        _, running = wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        if running:
            raise TimeoutError(f"{len(running)} S3-triggered invocation(s) unfinished after {timeout} s")


def invocations() -> list[Invocation]:
    """The invocations dispatched since `install` (the latest MAX_RECORDS), oldest first."""
    with _lock:
        return list(_wiring.records) if _wiring else []


def _s3_functions(bucket_logical_id: str) -> Iterator[tuple[Function, list[dict[str, Any]]]]:
    """Each function with S3 events on the bucket, with those events as S3 API notification configs."""
    path = template.template_path()
    document = template.load(path)
    defaults = document.get("Globals", {}).get("Function", {})
    for logical_id, resource in document["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = defaults | resource.get("Properties", {})
        events = [
            _notification(f"{logical_id}-{event_id}", event.get("Properties", {}))
            for event_id, event in (properties.get("Events") or {}).items()
            if event.get("Type") == "S3"
            and event.get("Properties", {}).get("Bucket") == {"Ref": bucket_logical_id}
        ]
        if events:
            yield (
                Function(
                    logical_id=logical_id,
                    # SAM reads a relative CodeUri from the template's folder.
                    code_uri=path.parent / properties["CodeUri"],
                    handler=properties["Handler"],
                    memory_mb=int(properties.get("MemorySize", 128)),
                    timeout_s=float(properties.get("Timeout", 3)),
                ),
                events,
            )


def _notification(config_id: str, properties: dict[str, Any]) -> dict[str, Any]:
    """A SAM S3 event's properties as an S3 API LambdaFunctionConfiguration (less the ARN)."""
    events = properties["Events"]
    configuration: dict[str, Any] = {
        "Id": config_id,
        "Events": [events] if isinstance(events, str) else events,
    }
    if rules := properties.get("Filter", {}).get("S3Key", {}).get("Rules"):
        configuration["Filter"] = {
            "Key": {"FilterRules": [{"Name": rule["Name"], "Value": rule["Value"]} for rule in rules]}
        }
    return configuration


def _role_arn() -> str:
    iam = aws.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    try:
        return str(
            iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        )
    except iam.exceptions.EntityAlreadyExistsException:
        return str(iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"])


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", _PLACEHOLDER)
    return buffer.getvalue()


def _patch() -> _Wiring:
    from moto.awslambda.models import LambdaFunction
    from moto.s3 import notifications

    original_invoke = LambdaFunction.invoke
    original_s3_event = notifications._get_s3_event

    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> str | bytes:
        unqualified = ":".join(self.function_arn.split(":")[:7])
        wiring = _wiring
        function = wiring.functions.get(unqualified) if wiring else None
        if wiring is None or function is None:
            return original_invoke(self, body, request_headers, response_headers)
        _dispatch(wiring, function, json.loads(body) if body else {})
        return b""

    def s3_event(event_name: Any, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = original_s3_event(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            s3_object = record["s3"]["object"]
            # S3 URL-encodes the key but keeps its slashes; moto encodes them too (%2F).
            s3_object["key"] = quote_plus(key.name, safe="/")
            if key.version_id and key.version_id != "null":
                s3_object["versionId"] = key.version_id
            s3_object["sequencer"] = f"{time.time_ns():018X}"
        return event

    LambdaFunction.invoke = invoke  # type: ignore[method-assign]
    notifications._get_s3_event = s3_event
    return _Wiring({}, original_invoke, original_s3_event)


def _dispatch(wiring: _Wiring, function: Function, event: dict[str, Any]) -> None:
    invocation = Invocation(function.logical_id, event, str(uuid.uuid4()))
    with _lock:
        wiring.records.append(invocation)
        future = wiring.executor.submit(_run, wiring, function, invocation)
        wiring.pending.add(future)
    future.add_done_callback(lambda done: _forget(wiring, done))


def _forget(wiring: _Wiring, future: Future[None]) -> None:
    with _lock:
        wiring.pending.discard(future)


def _run(wiring: _Wiring, function: Function, invocation: Invocation) -> None:
    try:
        if (handler := wiring.handlers.get(function.logical_id)) is None:
            # Loaded at the first invocation, as a cold start: a handler written after `install`
            # (or fixed after an import error) is picked up.
            handler = wiring.handlers[function.logical_id] = load_function(
                function.code_uri, function.handler
            )
        context = LambdaContext(
            function_name=function.logical_id,
            memory_limit_in_mb=function.memory_mb,
            invoked_function_arn=function.arn,
            aws_request_id=invocation.request_id,
            timeout_s=function.timeout_s,
        )
        invocation.result = handler(invocation.event, context)
    except Exception as error:
        invocation.error = f"{type(error).__name__}: {error}"
        logger.exception("%s failed on %s", function.logical_id, ", ".join(invocation.keys))
    finally:
        invocation.done = True
