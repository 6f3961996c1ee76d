"""Benchmark 1: the online function in-process, API Gateway event in, response out, next to the floor.

The floor is ONNX Runtime's `session.run` on the already-built tensor of the same rows, with the
session options the service uses. Everything above it (event translation, routing, JSON parsing,
validation, tensor building, the registry cache, response shaping, Powertools) is the overhead.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from aimass.local.lambda_runtime import LambdaContext, load_handler
from bench.harness import Rows, demo_model, demo_rows, predict_event
from bench.report import Table, rate, ratio, us
from bench.stats import Summary, measure_interleaved, timed

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    model: str
    rows: int
    iterations: int
    warmup: int

    @property
    def label(self) -> str:
        return f"{self.model} x{self.rows}"


CASES = (
    Case("breast-cancer", 1, 3000, 300),
    Case("breast-cancer", 100, 500, 50),
    Case("digits", 1, 3000, 300),
)


def floor_call(model: str, tensor: np.ndarray) -> Callable[[], object]:
    """session.run on a ready tensor, in a session made exactly as the service makes its own."""
    from aimass.config import settings
    from aimass.serving.backends.onnx import new_session

    s = settings()
    session = new_session(demo_model(model), s.ort_intra_op_threads, s.ort_inter_op_threads)
    feeds = {session.get_inputs()[0].name: tensor}
    return lambda: session.run(None, feeds)


def checked(response: dict[str, Any], rows: Rows) -> dict[str, Any]:
    """A benchmark of error responses would measure nothing useful: stop on anything but 200."""
    body = json.loads(response["body"])
    if response["statusCode"] != 200 or len(body.get("predictions", ())) != len(rows.instances):
        raise RuntimeError(
            f"{rows.model}: unexpected response {response['statusCode']}: {response['body'][:300]}"
        )
    return body


@contextlib.contextmanager
def counted_registry_lookups() -> Iterator[list[int]]:
    """Counts the registry round trips the service makes while measuring (its alias cache expires)."""
    from aimass import wiring

    registry = wiring.registry()
    resolve = registry.resolve
    count = [0]

    def counting(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return resolve(*args, **kwargs)

    registry.resolve = counting
    try:
        yield count
    finally:
        del registry.resolve  # the class's method again


def first_requests(handler: Handler) -> list[dict[str, Any]]:
    """The first request per model in this process: registry lookup, S3 download, session creation."""
    results = []
    for model in ("breast-cancer", "digits"):
        rows = demo_rows(model, 1)
        event = predict_event(rows)
        request = partial(handler, event, LambdaContext())
        response, first_ms = timed(request)
        checked(response, rows)
        _, second_ms = timed(request)
        results.append({"model": model, "first_request_ms": first_ms, "second_request_ms": second_ms})
    return results


def run_case(handler: Handler, case: Case, scale: float) -> dict[str, Any]:
    rows = demo_rows(case.model, case.rows)
    event = predict_event(rows)
    context = LambdaContext()
    checked(handler(event, context), rows)
    calls = {"floor": floor_call(case.model, rows.tensor), "handler": lambda: handler(event, context)}
    with counted_registry_lookups() as lookups:
        summaries = measure_interleaved(calls, max(50, int(case.iterations * scale)), case.warmup)
    floor, served = summaries["floor"], summaries["handler"]
    return {
        "case": case.label,
        "model": case.model,
        "rows": case.rows,
        "floor": floor.as_dict(),
        "handler": served.as_dict(),
        "overhead_p50_us": served.p50_us - floor.p50_us,
        "ratio_p50": served.p50_us / floor.p50_us,
        "handler_rows_per_s": served.calls_per_s * case.rows,
        "registry_lookups_while_measuring": lookups[0],
    }


PIPELINE = "+ version cache, output shaping (the request pipeline)"
# Measured beside the layers, not one of them: the path the online function's predictions took before
# aimass.api.direct, whose "adds" is counted from the request pipeline as the direct path's is.
FRAMEWORK = "instead of the direct path: event -> ASGI, routing, body parse (Mangum + FastAPI)"


def layer_calls(handler: Handler, rows: Rows) -> dict[str, Callable[[], object]]:
    """The same request through successively more of the stack, each layer including the ones before;
    then the app's path for comparison."""
    from mangum import Mangum

    from aimass.api.access import Access
    from aimass.api.app import create_app
    from aimass.api.blocking import serve_one_at_a_time
    from aimass.api.direct import DirectPath
    from aimass.config import settings
    from aimass.serving.codecs import v1_feeds
    from aimass.wiring import serving

    floor = floor_call(rows.model, rows.tensor)
    loaded = serving().store.load(rows.model)
    run, signature = loaded.run, loaded.version.signature
    # Both built the way aimass.api.lambda_entry builds them, minus the Powertools decorators around them.
    s = settings()
    direct = DirectPath(Access.of(s.max_payload_bytes, s.api_key, s.admin_key))
    app = create_app(["online"])
    serve_one_at_a_time(app)
    asgi = Mangum(app, lifespan="off")
    # Mangum and Powertools each declare their own LambdaContext type; the runtime object serves both.
    event = predict_event(rows)
    context: Any = LambdaContext()
    return {
        "ONNX Runtime session.run (floor)": floor,
        "+ JSON instances -> tensor (codecs.v1_feeds)": lambda: run(v1_feeds(signature, rows.instances)),
        PIPELINE: lambda: serving().predict(rows.model, rows.instances),
        "+ event -> answer: guard, body parse, JSON (aimass.api.direct)": partial(direct.answer, event),
        "+ Powertools logger, tracer, metrics (the handler)": lambda: handler(event, context),
        FRAMEWORK: partial(asgi, event, context),
    }


LAYER_CASES = (Case("breast-cancer", 1, 2000, 200), Case("breast-cancer", 100, 300, 30))


def run_layers(handler: Handler, case: Case, scale: float) -> dict[str, Any]:
    rows = demo_rows(case.model, case.rows)
    summaries = measure_interleaved(
        layer_calls(handler, rows), max(50, int(case.iterations * scale)), case.warmup
    )
    layers, previous = [], 0.0
    for layer, summary in summaries.items():
        if layer == FRAMEWORK:
            previous = summaries[PIPELINE].p50_us
        layers.append({"layer": layer, **summary.as_dict(), "adds_p50_us": summary.p50_us - previous})
        previous = summary.p50_us
    return {"case": case.label, "layers": layers}


def run(scale: float = 1.0) -> dict[str, Any]:
    handler: Handler = load_handler("online")
    # Powertools writes one EMF metrics line per invocation to stdout (CloudWatch Logs, in Lambda). Writing
    # it to /dev/null keeps its cost in the figures and the terminal free for the tables.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        return {
            "first_requests": first_requests(handler),
            "cases": [run_case(handler, case, scale) for case in CASES],
            "layers": [run_layers(handler, case, scale) for case in LAYER_CASES],
        }


def tables(result: dict[str, Any]) -> list[Table]:
    latency = Table(
        "Warm predict handler in-process vs ONNX Runtime floor (µs)",
        [
            "case",
            "floor p50",
            "floor p99",
            "handler p50",
            "handler p99",
            "overhead p50",
            "ratio p50",
            "handler req/s",
            "rows/s",
        ],
        note="overhead = handler p50 - floor p50 (target for x1: under 1,000 µs); "
        "ratio = handler p50 / floor p50.",
    )
    for case in result["cases"]:
        floor, served = Summary(**case["floor"]), Summary(**case["handler"])
        latency.add(
            case["case"],
            us(floor.p50_us),
            us(floor.p99_us),
            us(served.p50_us),
            us(served.p99_us),
            us(case["overhead_p50_us"]),
            ratio(case["ratio_p50"]),
            rate(served.calls_per_s),
            rate(case["handler_rows_per_s"]),
        )
    tails = Table(
        "Tails of the same runs (µs)",
        ["case", "iterations", "handler mean", "handler max", "registry lookups while measuring"],
        note="A lookup is the service re-resolving the `champion` alias in DynamoDB after its cache TTL.",
    )
    for case in result["cases"]:
        served = Summary(**case["handler"])
        tails.add(
            case["case"],
            f"{served.count:,}",
            us(served.mean_us),
            us(served.max_us),
            str(case["registry_lookups_while_measuring"]),
        )
    first = Table(
        "First request per model after the function is imported (ms)",
        ["model", "first request", "second request"],
        note="First: registry lookup in DynamoDB + artifact download from S3 (moto, in this process) + "
        "session; the breast-cancer one also makes the boto3 clients.",
    )
    for item in result["first_requests"]:
        first.add(item["model"], f"{item['first_request_ms']:.1f}", f"{item['second_request_ms']:.2f}")
    breakdowns = []
    for breakdown in result["layers"]:
        layers = Table(
            f"Where the overhead goes: {breakdown['case']} through more and more of the stack (µs)",
            ["layer", "p50", "p99", "adds (p50)"],
            note="Each layer is measured on its own and includes the ones above it; the last row is the "
            "path the predictions took before aimass.api.direct, its adds counted from the request pipeline.",
        )
        for item in breakdown["layers"]:
            layers.add(item["layer"], us(item["p50_us"]), us(item["p99_us"]), us(item["adds_p50_us"]))
        breakdowns.append(layers)
    return [latency, tails, first, *breakdowns]
