"""SnapStart's runtime hooks for the online function (docs/deploy.md, "Cold starts").

Lambda snapshots a published version's initialised environment and starts new environments from it. So
that a restored environment answers its first request as a warm one does, the snapshot holds what
requests use, made once: before the snapshot, the AWS clients, the request pipeline and every
registered model's default version (champion, else latest) with its canary, rules and checks.
Whatever must not be shared by every environment restored from one snapshot, or does not survive a
restore, is made again after it: the AWS session and its clients (credentials, open connections), the
random generators' seeds (canary and shadow draws, capture sampling), and the models' summaries, whose
read times are the snapshot's on another machine's clock.

Both hooks then prime the function's request path (`prime`): a synthetic request per local model sent
through the function's own handler, Powertools' decorators and all (less the tracer's), under
aimass.serving.pipeline.priming so that nothing records it, with its EMF lines sent nowhere and
Powertools' cold-start flags set back (`unrecorded`): the first real invocation still reports itself cold.
Before the snapshot that makes what a first request makes once; after a restore it touches the
memory the first request would otherwise fault in, then runs the predictions once more as the hook's
last step, with that memory in place (bench/RESULTS.md, "The first request after a SnapStart restore"
and "A second priming pass, last in the after-restore hook").

The hooks come from `snapshot_restore_py`, which the Lambda Python runtimes include. Where it is absent
(the local stack, tests, this package's CLI) they are kept here and run only when asked
(`run_before_snapshot`, `run_after_restore`), as the benchmark of a restore does.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aimass.config import settings

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

    from aimass.contracts.registry import ModelVersion
    from aimass.serving.store import LoadedModel

log = logging.getLogger(__name__)

Hook = Callable[..., Any]
_before: list[tuple[Hook, tuple[Any, ...], dict[str, Any]]] = []
_after: list[tuple[Hook, tuple[Any, ...], dict[str, Any]]] = []

try:
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:  # not on Lambda: kept, in the library's order, for run_before_snapshot/after_restore

    def register_before_snapshot(func: Hook, *args: Any, **kwargs: Any) -> Hook:
        _before.append((func, args, kwargs))
        return func

    def register_after_restore(func: Hook, *args: Any, **kwargs: Any) -> Hook:
        _after.append((func, args, kwargs))
        return func


def run_before_snapshot() -> None:
    """What Lambda does before it takes the snapshot: the hooks in the reverse order of registration."""
    for func, args, kwargs in reversed(_before):
        func(*args, **kwargs)


def run_after_restore() -> None:
    """What Lambda does after a restore: the hooks in the order of registration."""
    for func, args, kwargs in _after:
        func(*args, **kwargs)


def prepare_models() -> list[str]:
    """Every registered model's default version (at most AIMASS_SNAPSHOT_MAX_MODELS of them) made ready
    to answer (ModelStore.prepare) and, where this process runs it, run once; a model that cannot be is
    logged and left to its first request, so that one bad model never fails a snapshot. A version on a
    SageMaker endpoint is not run: that would be a request to the endpoint (its capture and metrics
    would count it), and nothing of it is in this process to warm."""
    from aimass import wiring

    store = wiring.serving().store
    prepared = []
    for summary in wiring.registry().list_models()[: settings().snapshot_max_models]:
        try:
            for loaded in store.prepare(summary.name):
                if store.runs_locally(loaded.version.name, loaded.version.version):
                    run_once(loaded)
        except Exception as error:  # any: the snapshot must be taken whatever one model holds
            log.warning("%s is not in the snapshot, its first request loads it: %s", summary.name, error)
        else:
            prepared.append(summary.name)
    return prepared


def run_once(loaded: LoadedModel) -> None:
    """One run on zeros of the signature's shapes: a session's first run allocates what the next
    ones reuse (ONNX Runtime's arena). Nothing is answered, captured or counted. A version whose
    inputs zeros cannot stand for (strings) is left to its first request."""
    from aimass.protocol.tensors import NUMPY_DTYPES

    inputs = loaded.version.signature.inputs
    if any(spec.dtype not in NUMPY_DTYPES or spec.dtype == "string" for spec in inputs):
        return
    shapes = {spec.name: [1 if d is None else d for d in spec.shape] for spec in inputs}
    loaded.run({spec.name: np.zeros(shapes[spec.name], NUMPY_DTYPES[spec.dtype]) for spec in inputs})


# The online function's handler: an API Gateway event and a Lambda context in, the response out.
FunctionHandler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class Primed:
    """What the hooks prime through (set by register): the function's handler, through Powertools'
    decorators (less the tracer's while tracing is on), its Logger, and the observers that are its
    metrics."""

    handler: FunctionHandler
    logger: Logger
    observers: tuple[object, ...]


_primed: list[Primed] = []


class PrimingContext:
    """The Lambda context a priming request is dispatched with: no invocation stands behind it."""

    function_name = "aimass-snapstart-priming"
    function_version = "$LATEST"
    memory_limit_in_mb = 0
    invoked_function_arn = ""
    aws_request_id = "snapstart-priming"


def priming_event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """An API Gateway HTTP API (v2) event, as the online function receives one, for a priming request."""
    text = "" if body is None else json.dumps(body)
    route = f"{method} {path}"
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "content-length": str(len(text.encode()))},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": PrimingContext.aws_request_id,
            "routeKey": route,
            "stage": "$default",
        },
        "isBase64Encoded": False,
        "body": text,
    }


def priming_instance(version: ModelVersion) -> dict[str, Any] | list[Any] | None:
    """One V1 instance its checks take as valid: each feature's first category, else the middle of its
    range (else its bound, else zero); zeros of the instance's shape for one numeric input without
    features (a row, an image). None where neither stands for the inputs (several inputs, dynamic
    dimensions, text without categories)."""
    signature = version.signature
    if signature.features:
        instance: dict[str, Any] = {}
        for feature in signature.features:
            if feature.categories:
                instance[feature.name] = feature.categories[0]
                continue
            if feature.dtype == "string":
                return None
            low, high = feature.min, feature.max
            value = (low + high) / 2 if low is not None and high is not None else low or high or 0.0
            instance[feature.name] = {"int": int, "bool": bool}.get(feature.dtype, float)(value)
        return instance
    from aimass.protocol.tensors import NUMPY_DTYPES

    if len(signature.inputs) != 1:
        return None
    (spec,) = signature.inputs
    dims = [d for d in spec.shape[1:] if d is not None]
    if (
        not dims
        or len(dims) < len(spec.shape) - 1
        or spec.dtype not in NUMPY_DTYPES
        or spec.dtype in ("string", "bool")
    ):
        return None
    zeros: list[Any] = np.zeros(dims, NUMPY_DTYPES[spec.dtype]).tolist()
    return zeros


def prime(models: Sequence[str], health: bool = True) -> dict[str, int]:
    """A GET /health (unless `health` is false) and each local model's V1 :predict (ModelStore.local:
    never an endpoint), once, through the function's own handler (register's), under
    aimass.serving.pipeline.priming: answered and discarded, nothing captured, counted live or
    shadowed; the metrics observers hear them and the invocation's EMF lines (its metrics, the first
    one's ColdStart) go nowhere (`unrecorded`). What a request makes once (FastAPI's endpoint details,
    the event loop, pydantic's and numpy's first calls, the session's buffers, Powertools' first
    invocation) is then made, and the memory it touches is touched. A request that fails is logged:
    priming never fails a hook. Returns each path's status (0: it raised)."""
    statuses: dict[str, int] = {}
    if not _primed:
        return statuses
    from aimass.serving.pipeline import priming

    primed = _primed[0]
    failures: dict[str, Exception] = {}
    with unrecorded(primed.logger), priming(primed.observers):
        for event in priming_requests(models, health):
            path = event["rawPath"]
            try:
                statuses[path] = int(primed.handler(event, PrimingContext()).get("statusCode", 0))
            except Exception as error:  # any: an unprimed path costs its first request, nothing more
                failures[path] = error
                statuses[path] = 0
    # Logged once the logger has its keys back (they were the priming context's).
    for path, status in statuses.items():
        if path in failures:
            log.warning("priming %s failed: %s", path, failures[path])
        elif status != 200:
            log.info("priming %s answered %s", path, status)
    return statuses


def priming_requests(models: Sequence[str], health: bool = True) -> list[dict[str, Any]]:
    """The priming events: a GET /health (with `health`), and a V1 :predict of `priming_instance` for
    each model this process answers itself. A model that cannot be resolved is logged and left out."""
    from aimass import wiring

    store = wiring.serving().store
    requests = [priming_event("GET", "/health")] if health else []
    for name in models:
        # Only what this process answers itself: a request to a SageMaker endpoint would be real traffic
        # there (and a network round trip in the hook), and nothing of it is in this process to prime.
        if not store.local(name):
            continue
        try:
            instance = priming_instance(store.resolve(name))
        except Exception as error:  # any: the model's first request will say what is wrong
            log.warning("%s is not primed: %s", name, error)
            continue
        if instance is not None:
            requests.append(priming_event("POST", f"/v1/models/{name}:predict", {"instances": [instance]}))
    return requests


@contextmanager
def unrecorded(logger: Logger) -> Iterator[None]:
    """Powertools as the priming invocations found it, and their EMF lines sent nowhere.

    Powertools keeps, per environment, whether its next invocation is the first (module flags of its
    metrics, its logger and its tracer). The priming invocations would take that first invocation, and
    the first real one after a restore would then report no ColdStart metric, no ColdStart annotation
    and `cold_start: false` in its log lines. The flags are set back to what they were, here and only
    here, so that it still reports them. The logger's decorator appends the priming context's keys
    (function name, request id; the handler, the correlation id): taken off again. The metrics print
    their EMF lines to stdout (Metrics.flush_metrics, the ColdStart line): stdout is a discarding buffer
    while the priming requests run. The hook runs alone (no request, and no shadow, whose worker prints
    its own lines, is under way), so nothing else is lost with them."""
    from aws_lambda_powertools.logging import logger as powertools_logging
    from aws_lambda_powertools.metrics.provider import cold_start
    from aws_lambda_powertools.tracing import tracer as powertools_tracing

    flags = cold_start.is_cold_start, powertools_logging.is_cold_start, powertools_tracing.is_cold_start
    keys = dict(logger.get_current_keys())
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        cold_start.is_cold_start, powertools_logging.is_cold_start, powertools_tracing.is_cold_start = flags
        logger.remove_keys([key for key in logger.get_current_keys() if key not in keys])
        logger.append_keys(**keys)


def before_snapshot() -> None:
    # numpy imports its random module at first use (8 ms here): imported here, so that it is in the
    # snapshot rather than in the after-restore hook's reseed, and never in a start without SnapStart.
    import numpy.random  # noqa: F401

    from aimass import wiring

    started = time.perf_counter()
    wiring.prepare()
    models = prepare_models()
    prime(models)
    # What the hooks made lives as long as the environment: kept out of the collector's passes, as the
    # function's init is (functions/online/app.py), so no first request pays for a pass over it.
    gc.collect()
    gc.freeze()
    log.info("snapshot ready: %d models in %.0f ms", len(models), (time.perf_counter() - started) * 1e3)


def reseed() -> None:
    """New seeds from the OS for the random generators the service draws from (traffic and shadow
    splits, capture's sampling): every environment restored from one snapshot would otherwise draw the
    same sequence. os.urandom is unique per restored environment (Lambda's SnapStart guarantee)."""
    import numpy.random

    random.seed()
    numpy.random.seed()


def after_restore() -> None:
    from aimass import aws, wiring

    started = time.perf_counter()
    reseed()
    aws.reconnect()
    models = wiring.serving().store.refresh()
    # The restored memory is read in as it is touched: touched here, within the restore's 10 s, rather
    # than by the first request. That first pass is mostly faults, which leave the CPU's caches cold.
    prime(models)
    gc.freeze()
    log.info("restored: %d models read again in %.0f ms", len(models), (time.perf_counter() - started) * 1e3)
    # So the predictions' path runs once more, last: with its pages in place, and nothing after it (a
    # log line after it cost the first request about 90 µs) to push it out of the caches. /health, the
    # framework's path, is left out of this pass: it made the pass 1.4 ms instead of 1.0 for no gain to a
    # prediction (bench/RESULTS.md, "A second priming pass, last in the after-restore hook").
    prime(models, health=False)


_registered: list[bool] = []


def register(
    handler: FunctionHandler | None = None,
    logger: Logger | None = None,
    observers: Sequence[object] = (),
) -> None:
    """Register the online function's hooks, once per process (the local stack may import the function
    more than once). With `handler` (the function's, under Powertools' decorators) and its `logger`,
    the hooks prime the function's path (`prime`) before the snapshot and after a restore;
    `observers`, the pipeline's observers that are the function's metrics, hear the priming requests
    (their lines go nowhere)."""
    if not _registered:
        if handler is not None and logger is not None:
            _primed.append(Primed(handler, logger, tuple(observers)))
        register_before_snapshot(before_snapshot)
        register_after_restore(after_restore)
        _registered.append(True)
