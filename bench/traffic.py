"""Benchmark 11: what the traffic policy adds to a warm prediction, in-process, through the online
function's Lambda handler (API Gateway event in, response out).

The same demo (breast-cancer) is registered under two names: `bc-plain` with no traffic policy, and
`bc-canary` with a second version (the same graph in other bytes) taking 10 % of the requests,
sticky by the routing header. Both are timed in one interleaved run, next to `choose` alone."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from typing import Any

from bench.harness import demo, demo_rows, predict_event
from bench.report import Table, us
from bench.stats import Summary, measure_interleaved

ACTOR = "aimass-bench"
ITERATIONS, WARMUP = 3000, 300


def _register() -> None:
    import onnx

    from aimass import wiring
    from aimass.config import settings
    from aimass.contracts.registry import CanarySplit, TrafficPolicy
    from aimass.registration import register_version, set_alias, set_traffic_policy

    made, registry = demo("breast-cancer"), wiring.registry()
    for name in ("bc-plain", "bc-canary"):
        first = register_version(registry, settings().bucket, name, made.model, ACTOR, made.enrichment)
        set_alias(registry, name, "champion", first.version, ACTOR)
    # The same graph in other bytes: another version, as a retrained model would be
    proto = onnx.load_from_string(made.model)
    proto.doc_string = "canary"
    second = register_version(
        registry, settings().bucket, "bc-canary", proto.SerializeToString(), ACTOR, made.enrichment
    )
    policy = TrafficPolicy(canary=CanarySplit(version=second.version, percent=10), sticky_by="header")
    set_traffic_policy(registry, "bc-canary", policy, ACTOR)
    for name in ("bc-plain", "bc-canary"):
        wiring.serving().store.forget(name)


def _event(name: str, key: str | None) -> dict[str, Any]:
    event = copy.deepcopy(predict_event(demo_rows("breast-cancer", 1)))
    event["rawPath"] = event["rawPath"].replace("breast-cancer", name)
    event["requestContext"]["http"]["path"] = event["rawPath"]
    if key is not None:
        event["headers"]["x-aimass-routing-key"] = key
    return event


def run(scale: float = 1.0) -> dict[str, Any]:
    from aimass.contracts.registry import CanarySplit, TrafficPolicy
    from aimass.local.lambda_runtime import LambdaContext, load_handler
    from aimass.serving.traffic import choose

    _register()
    handler = load_handler("online")
    context = LambdaContext()
    plain, canary = _event("bc-plain", None), _event("bc-canary", "user-17")
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for event in (plain, canary):
            answer = handler(event, context)
            if answer["statusCode"] != 200:
                raise RuntimeError(f"{event['rawPath']}: {answer['statusCode']} {answer['body'][:300]}")
        variant = json.loads(handler(canary, context)["body"])["variant"]
        policy = TrafficPolicy(canary=CanarySplit(version=2, percent=10), sticky_by="header")
        calls = {
            "no policy": lambda: handler(plain, context),
            "10 % canary, sticky": lambda: handler(canary, context),
            "choose() alone": lambda: choose(policy, 1, "user-17"),
        }
        summaries = measure_interleaved(calls, max(100, int(ITERATIONS * scale)), WARMUP)
    return {
        "variant_of_the_timed_key": variant,
        "calls": {label: summary.as_dict() for label, summary in summaries.items()},
    }


def tables(result: dict[str, Any]) -> list[Table]:
    calls = {label: Summary(**figures) for label, figures in result["calls"].items()}
    plain = calls["no policy"].p50_us
    table = Table(
        "Warm predict handler, breast-cancer x1, with and without a traffic policy (µs)",
        ["call", "p50", "p99", "added p50", "added / handler p50"],
        note=f"The timed key is routed to the {result['variant_of_the_timed_key']} version. Interleaved "
        "blocks of 25 calls; the handler is the online function's, in-process, moto as AWS.",
    )
    for label, summary in calls.items():
        added = summary.p50_us - plain if label != "choose() alone" else summary.p50_us
        table.add(label, us(summary.p50_us), us(summary.p99_us), us(added), f"{added / plain:.1%}")
    return [table]
