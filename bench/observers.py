"""Benchmark 13: what issue 18's request observers add to a warm prediction, in-process.

The online function's handler on breast-cancer x1 (API Gateway event in, response out), timed in one
interleaved run next to what each request now pays on its own: the Lambda's outcome observer
(`count_outcome`, which adds a metric only for a rule rejection or a fallback) and the local
server's Prometheus observers (`aimass.serving.prometheus`, answered + served), which the Lambda
never runs."""

from __future__ import annotations

import contextlib
import copy
import os
from typing import Any

from bench.harness import demo, demo_rows, predict_event
from bench.report import Table, us
from bench.stats import Summary, measure_interleaved

ACTOR = "aimass-bench"
MODEL = "bc-observed"
ITERATIONS, WARMUP = 3000, 300


def _register() -> None:
    from aimass import wiring
    from aimass.config import settings
    from aimass.registration import register_version, set_alias

    made, registry = demo("breast-cancer"), wiring.registry()
    first = register_version(registry, settings().bucket, MODEL, made.model, ACTOR, made.enrichment)
    set_alias(registry, MODEL, "champion", first.version, ACTOR)
    wiring.serving().store.forget(MODEL)


def run(scale: float = 1.0) -> dict[str, Any]:
    from aimass import wiring
    from aimass.api.lambda_entry import count_outcome
    from aimass.local.lambda_runtime import LambdaContext, load_handler
    from aimass.serving.pipeline import Answered, Served
    from aimass.serving.prometheus import PrometheusMetrics

    _register()
    handler = load_handler("online")
    context = LambdaContext()
    event = copy.deepcopy(predict_event(demo_rows("breast-cancer", 1)))
    event["rawPath"] = event["rawPath"].replace("breast-cancer", MODEL)
    event["requestContext"]["http"]["path"] = event["rawPath"]
    heard: list[Answered] = []
    wiring.prediction_observers.append(heard.append)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        answer = handler(event, context)
        wiring.prediction_observers.remove(heard.append)
        if answer["statusCode"] != 200:
            raise RuntimeError(f"{event['rawPath']}: {answer['statusCode']} {answer['body'][:300]}")
        answered = heard[-1]
        served = Served(MODEL, "v1", 0.0004, "answered")
        prometheus = PrometheusMetrics()

        def both() -> None:
            prometheus.answered(answered)
            prometheus.served(served)

        calls = {
            "handler, breast-cancer x1": lambda: handler(event, context),
            "count_outcome (Lambda), answered": lambda: count_outcome(served),
            "Prometheus observers (local server)": both,
        }
        summaries = measure_interleaved(calls, max(100, int(ITERATIONS * scale)), WARMUP)
    return {"calls": {label: summary.as_dict() for label, summary in summaries.items()}}


def tables(result: dict[str, Any]) -> list[Table]:
    calls = {label: Summary(**figures) for label, figures in result["calls"].items()}
    handler = calls["handler, breast-cancer x1"].p50_us
    table = Table(
        "What each request's observers cost, next to the warm predict handler (µs)",
        ["call", "p50", "p99", "/ handler p50"],
        note="Interleaved blocks of 25 calls; the handler is the online function's, in-process, moto as "
        "AWS, and already runs count_outcome. The Prometheus observers run on the local server only.",
    )
    for label, summary in calls.items():
        table.add(label, us(summary.p50_us), us(summary.p99_us), f"{summary.p50_us / handler:.1%}")
    return [table]
