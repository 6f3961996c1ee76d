"""Lambda in the local stack: S3 events and Invoke API calls run the real handlers in-process.

For every function in the template with S3 events on the artifacts bucket, `install` creates the
function in the embedded Lambda (placeholder code: it only has to exist so that the notification's
ARN resolves) and puts the bucket's notification configuration (the template's events and
prefix/suffix filters) through the S3 API, so moto matches keys exactly as it would any
configuration. Matching notifications then reach the real handler on a background worker, as S3
invokes Lambda asynchronously: an upload never waits for a batch job, and a handler's exception is
logged, never raised into moto.

`wire` does the same for any template function without the S3 part (aimass.local.statemachines
wires the functions that state machines call). A Lambda Invoke API call on a wired function (what a
Step Functions `lambda:invoke` task makes) is answered as Lambda answers it: `RequestResponse` (the
default) runs the handler synchronously, in the server's request thread, and returns its JSON
result, or, when it raises, Lambda's error payload `{"errorMessage", "errorType", "requestId",
"stackTrace"}` with `X-Amz-Function-Error: Unhandled`; `Event` queues it on the background worker
and answers 202 at once; `DryRun` runs nothing.

The seams into moto's internals (moto is pinned to >=5.1.10,<5.3 in pyproject.toml;
tests/integration/test_local_notifications.py and test_local_statemachines.py check that they
still hold):
- `moto.awslambda.models.LambdaFunction.invoke(self, body: str, request_headers, response_headers)`
  is what moto's S3 calls for a matching LambdaFunctionConfiguration
  (`moto.s3.notifications._invoke_awslambda`, with `json.dumps(event), {}, {}`). For the functions
  wired here it queues the real handler; every other function keeps moto's behaviour.
- `LambdaBackend.invoke(self, function_name, qualifier, body, headers, response_headers)` and its
  override `moto.awslambda_simple.models.LambdaSimpleBackend.invoke` (the backend when the config
  says `lambda.use_docker: False`, which never runs code) are what moto's Lambda Invoke API
  (`LambdaResponse.invoke`) calls with the request's headers; the bytes returned are the payload, and
  `response_headers` become the response's (`x-amz-function-error`). For wired functions they run
  the real handler as above; every other function keeps moto's behaviour.
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
import traceback
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
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
    """A template function that runs in-process, as the embedded Lambda knows it."""

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
    event: Any  # an S3 event, or any JSON value an Invoke API call sent
    request_id: str
    done: bool = False
    result: Any = None
    error: str | None = None
    invocation_type: str = "Event"  # "RequestResponse" for a synchronous Invoke API call

    @property
    def keys(self) -> list[str]:
        records = self.event.get("Records", []) if isinstance(self.event, dict) else []
        return [record["s3"]["object"]["key"] for record in records if "s3" in record]


@dataclass
class _Wiring:
    functions: dict[str, Function]  # by unqualified ARN
    originals: list[tuple[Any, str, Any]]  # (owner, attribute, moto's own value) to put back
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="aimass-s3-lambda")
    )
    pending: set[Future[None]] = field(default_factory=set)
    records: deque[Invocation] = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))
    handlers: dict[str, Handler] = field(default_factory=dict)  # warm "containers", by logical id
    loading: threading.Lock = field(default_factory=threading.Lock)


_lock = threading.Lock()
_wiring: _Wiring | None = None


def install(bucket: str, bucket_logical_id: str = "ArtifactsBucket") -> list[str]:
    """Wire the template's S3 events on `bucket_logical_id` to the real handlers; returns their
    logical ids. Idempotent; `uninstall` undoes it."""
    functions = list(_s3_functions(bucket_logical_id))
    if not functions:
        return []
    wired = wire(function for function, _ in functions)
    configurations = [
        {"LambdaFunctionArn": function.arn} | event
        for function, (_, events) in zip(wired, functions, strict=True)
        for event in events
    ]
    aws.client("s3").put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": configurations}
    )
    return [function.logical_id for function in wired]


def wire(functions: Iterable[Function]) -> list[Function]:
    """Create each function in the embedded Lambda (if it is not there yet) and send its
    invocations to the real handler; returns them with their ARNs. Idempotent; `uninstall` undoes it."""
    global _wiring
    role = service_role_arn(ROLE_NAME, "lambda.amazonaws.com")
    lam = aws.client("lambda")
    wired = []
    for function in functions:
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
    with _lock:
        if _wiring is None:
            _wiring = _patch()
        _wiring.functions.update({function.arn: function for function in wired})
    return wired


def uninstall() -> None:
    """Give moto its own behaviour back; invocations not started yet are dropped. Idempotent."""
    global _wiring
    with _lock:
        wiring, _wiring = _wiring, None
    if wiring is None:
        return
    for owner, attribute, original in wiring.originals:
        setattr(owner, attribute, original)
    wiring.executor.shutdown(wait=False, cancel_futures=True)


def drain(timeout: float = 60.0) -> None:
    """Wait until every invocation queued so far (and any they cause) has finished.
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


def template_function(logical_id: str, path: Path | None = None) -> Function:
    """The template's AWS::Serverless::Function `logical_id`, with the Globals' defaults."""
    path = path or template.template_path()
    document = template.load(path)
    resource = document["Resources"][logical_id]
    if resource.get("Type") != "AWS::Serverless::Function":
        raise ValueError(f"{logical_id} is a {resource.get('Type')}, not an AWS::Serverless::Function")
    return _function(logical_id, document, path)


def _function(logical_id: str, document: dict[str, Any], path: Path) -> Function:
    defaults = document.get("Globals", {}).get("Function", {})
    resource = document["Resources"][logical_id]
    properties = defaults | resource.get("Properties", {})
    if properties.get("PackageType") == "Image":
        # An image function's code sits next to its Dockerfile (Metadata, read by sam build from
        # the template's folder) and its handler is the image's command.
        code_uri = path.parent / Path(resource["Metadata"]["Dockerfile"]).parent
        handler = properties["ImageConfig"]["Command"][0]
    else:
        # SAM reads a relative CodeUri from the template's folder.
        code_uri, handler = path.parent / properties["CodeUri"], properties["Handler"]
    return Function(
        logical_id=logical_id,
        code_uri=code_uri,
        handler=handler,
        memory_mb=int(properties.get("MemorySize", 128)),
        timeout_s=float(properties.get("Timeout", 3)),
    )


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
            yield _function(logical_id, document, path), events


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


def service_role_arn(name: str, service: str) -> str:
    """An IAM role `service` may assume, made in the embedded AWS once (moto checks that a function's
    or a state machine's role exists)."""
    iam = aws.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }
    try:
        return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])
    except iam.exceptions.EntityAlreadyExistsException:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", _PLACEHOLDER)
    return buffer.getvalue()


def _unqualified(arn: str) -> str:
    return ":".join(arn.split(":")[:7])


def _header(headers: Any, name: str, default: str) -> str:
    """A request header, whatever the case: moto passes werkzeug's headers or a plain dict."""
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return default


def _patch() -> _Wiring:
    """Put this module's seams in moto's place; the wiring keeps moto's own to put back."""
    from moto.awslambda.models import LambdaBackend, LambdaFunction
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.s3 import notifications

    seams: list[tuple[Any, str, Callable[[Any], Any]]] = [
        (LambdaFunction, "invoke", _notified),
        (notifications, "_get_s3_event", _s3_event),
        # Each backend's own (the simple one, used without Docker, has its own invoke).
        (LambdaBackend, "invoke", _invoke_api),
        (LambdaSimpleBackend, "invoke", _invoke_api),
    ]
    originals: list[tuple[Any, str, Any]] = []
    for owner, attribute, seam in seams:
        original = vars(owner)[attribute]
        originals.append((owner, attribute, original))
        setattr(owner, attribute, seam(original))
    return _Wiring({}, originals)


def _notified(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto's LambdaFunction.invoke, which an S3 notification calls: a wired function's event goes
    to the background worker."""

    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> str | bytes:
        wiring = _wiring
        function = wiring.functions.get(_unqualified(self.function_arn)) if wiring else None
        if wiring is None or function is None:
            return original(self, body, request_headers, response_headers)
        _dispatch(wiring, function, json.loads(body) if body else {})
        return b""

    return invoke


def _invoke_api(original: Callable[..., Any]) -> Callable[..., Any]:
    """A Lambda backend's invoke, behind the Invoke API: a wired function answers as Lambda does
    for each invocation type."""

    def invoke(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> str | bytes | None:
        wired = _wired(self, function_name, qualifier)
        if wired is None:
            return original(self, function_name, qualifier, body, headers, response_headers)
        wiring, function = wired
        event = json.loads(body) if body else {}
        invocation_type = _header(headers, "x-amz-invocation-type", "RequestResponse")
        if invocation_type == "Event":
            _dispatch(wiring, function, event)
            return b""
        if invocation_type == "DryRun":
            return b""
        return _call(wiring, function, event, response_headers)

    return invoke


def _wired(backend: Any, function_name: str, qualifier: str | None) -> tuple[_Wiring, Function] | None:
    """The wiring and the function it runs in-process for this name, or None: moto answers."""
    wiring = _wiring
    if wiring is None:
        return None
    try:
        arn = backend.get_function(function_name, qualifier).function_arn
    except Exception:  # unknown function: moto answers it
        return None
    function = wiring.functions.get(_unqualified(arn))
    return None if function is None else (wiring, function)


def _s3_event(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto's S3 event, with what S3 sends and moto leaves out."""

    def s3_event(event_name: Any, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event: dict[str, Any] = original(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            s3_object = record["s3"]["object"]
            # S3 URL-encodes the key but keeps its slashes; moto encodes them too (%2F).
            s3_object["key"] = quote_plus(key.name, safe="/")
            if key.version_id and key.version_id != "null":
                s3_object["versionId"] = key.version_id
            s3_object["sequencer"] = f"{time.time_ns():018X}"
        return event

    return s3_event


def _dispatch(wiring: _Wiring, function: Function, event: Any) -> None:
    invocation = Invocation(function.logical_id, event, str(uuid.uuid4()))
    with _lock:
        wiring.records.append(invocation)
        future = wiring.executor.submit(_run, wiring, function, invocation)
        wiring.pending.add(future)
    future.add_done_callback(lambda done: _forget(wiring, done))


def _forget(wiring: _Wiring, future: Future[None]) -> None:
    with _lock:
        wiring.pending.discard(future)


def _handler(wiring: _Wiring, function: Function) -> Handler:
    with wiring.loading:
        if (handler := wiring.handlers.get(function.logical_id)) is None:
            # Loaded at the first invocation, as a cold start: a handler written after `install`
            # (or fixed after an import error) is picked up.
            handler = wiring.handlers[function.logical_id] = load_function(
                function.code_uri, function.handler
            )
        return handler


def _execute(wiring: _Wiring, function: Function, invocation: Invocation) -> None:
    """Run the handler on the invocation's event, leaving its result in the invocation; raises what
    the handler (or its import) raises."""
    try:
        context = LambdaContext(
            function_name=function.logical_id,
            memory_limit_in_mb=function.memory_mb,
            invoked_function_arn=function.arn,
            aws_request_id=invocation.request_id,
            timeout_s=function.timeout_s,
        )
        invocation.result = _handler(wiring, function)(invocation.event, context)
    except Exception as error:
        invocation.error = f"{type(error).__name__}: {error}"
        raise
    finally:
        invocation.done = True


def _run(wiring: _Wiring, function: Function, invocation: Invocation) -> None:
    try:
        _execute(wiring, function, invocation)
    except Exception:
        logger.exception("%s failed on %s", function.logical_id, ", ".join(invocation.keys))


def _call(wiring: _Wiring, function: Function, event: Any, response_headers: dict[str, str]) -> bytes:
    """A synchronous invocation, answered as Lambda answers it: the result as JSON, or the error
    payload with `x-amz-function-error` (which Step Functions turns into the task's error)."""
    invocation = Invocation(function.logical_id, event, str(uuid.uuid4()), invocation_type="RequestResponse")
    with _lock:
        wiring.records.append(invocation)
    try:
        _execute(wiring, function, invocation)
    except Exception as error:
        logger.exception("%s failed (request %s)", function.logical_id, invocation.request_id)
        # The handler's frames, as the runtime reports them (not this module's).
        frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != __file__]
        stack = traceback.format_list(frames)
        return _error(response_headers, invocation, type(error).__name__, str(error), stack)
    try:
        return json.dumps(invocation.result).encode()
    except (TypeError, ValueError) as error:  # what the runtime answers for a result JSON cannot hold
        invocation.error = f"Runtime.MarshalError: {error}"
        return _error(
            response_headers, invocation, "Runtime.MarshalError", f"Unable to marshal response: {error}", []
        )


def _error(
    response_headers: dict[str, str], invocation: Invocation, kind: str, message: str, stack: list[str]
) -> bytes:
    response_headers["x-amz-function-error"] = "Unhandled"
    payload = {
        "errorMessage": message,
        "errorType": kind,
        "requestId": invocation.request_id,
        "stackTrace": stack,
    }
    return json.dumps(payload).encode()
