"""Benchmark 19: what a graph version costs, in-process, through the online function's Lambda handler
(API Gateway event in, response out).

`bc-graph` has two versions of the breast-cancer demo (v2 the same graph in other bytes, as a
retrained model would be) and v3, an ensemble of both (weighted mean). Timed in one interleaved run:
each member's own predict (`/versions/1:predict`, `/versions/2:predict`), the ensemble's, and each
member's ONNX Runtime floor (session.run on a ready tensor, in a session made as the service makes
its own). The target: the ensemble costs less than 1.2 x its members' own predicts together."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable
from functools import partial
from typing import Any

from bench.harness import demo, demo_rows, predict_event
from bench.online import checked, floor_call
from bench.report import Table, us
from bench.stats import Summary, measure_interleaved

ACTOR = "aimass-bench"
NAME = "bc-graph"
# (rows per request, iterations, warm-up)
CASES = ((1, 3000, 300), (100, 500, 50))
TARGET = 1.2


def _register() -> None:
    import onnx

    from aimass import wiring
    from aimass.config import settings
    from aimass.contracts.graph import ComposeRequest, Ensemble
    from aimass.graph import compose_version
    from aimass.registration import register_version

    made, registry = demo("breast-cancer"), wiring.registry()
    register_version(registry, settings().bucket, NAME, made.model, ACTOR, made.enrichment)
    proto = onnx.load_from_string(made.model)
    proto.doc_string = "retrained"
    register_version(registry, settings().bucket, NAME, proto.SerializeToString(), ACTOR, made.enrichment)
    spec = Ensemble(kind="ensemble", members=[f"{NAME}@1", f"{NAME}@2"])
    compose_version(registry, settings().bucket, NAME, ComposeRequest(graph=spec), ACTOR)
    wiring.serving().store.forget(NAME)


def _event(rows: Any, version: int, detail: bool = False) -> dict[str, Any]:
    event = copy.deepcopy(predict_event(rows))
    path = f"/v1/models/{NAME}/versions/{version}:predict"
    event["rawPath"] = path
    event["requestContext"]["http"]["path"] = path
    if detail:
        event["rawQueryString"] = "detail=steps"
        event["queryStringParameters"] = {"detail": "steps"}
    return event


def run(scale: float = 1.0) -> dict[str, Any]:
    from aimass.local.lambda_runtime import LambdaContext, load_handler

    _register()
    handler = load_handler("online")
    context = LambdaContext()
    results = {}
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for count, iterations, warmup in CASES:
            rows = demo_rows("breast-cancer", count)
            events = {label: _event(rows, v) for label, v in (("v1", 1), ("v2", 2), ("ensemble", 3))}
            events["ensemble, detail=steps"] = _event(rows, 3, detail=True)
            for event in events.values():
                checked(handler(event, context), rows)
            calls: dict[str, Callable[[], object]] = {
                "v1 predict": partial(handler, events["v1"], context),
                "v2 predict": partial(handler, events["v2"], context),
                "ensemble v3 predict": partial(handler, events["ensemble"], context),
                "ensemble v3 predict ?detail=steps": partial(
                    handler, events["ensemble, detail=steps"], context
                ),
                "v1 ONNX Runtime floor": floor_call("breast-cancer", rows.tensor),
                "v2 ONNX Runtime floor": floor_call("breast-cancer", rows.tensor),
            }
            summaries = measure_interleaved(
                calls, max(100, int(iterations * scale)), max(10, int(warmup * scale))
            )
            results[str(count)] = {label: summary.as_dict() for label, summary in summaries.items()}
    return {"cases": results, "target_ratio": TARGET}


def tables(result: dict[str, Any]) -> list[Table]:
    out = []
    for count, figures in result["cases"].items():
        calls = {label: Summary(**f) for label, f in figures.items()}
        members = calls["v1 predict"].p50_us + calls["v2 predict"].p50_us
        floors = calls["v1 ONNX Runtime floor"].p50_us + calls["v2 ONNX Runtime floor"].p50_us
        graph = calls["ensemble v3 predict"].p50_us
        table = Table(
            f"Warm predict handler, breast-cancer x{count}: a 2-member ensemble vs its members (µs)",
            ["call", "p50", "p99", "p50 / members' predicts together"],
            note=f"Members' own predicts together (v1 p50 + v2 p50): {us(members)} µs; the ensemble's p50 "
            f"is {graph / members:.2f} x that (target < {result['target_ratio']}) and {graph - floors:,.0f} "
            f"µs over its members' ONNX Runtime floors together ({us(floors)} µs). Interleaved blocks of 25 "
            "calls; the online function's handler, in-process, moto as AWS.",
        )
        for label, summary in calls.items():
            table.add(label, us(summary.p50_us), us(summary.p99_us), f"{summary.p50_us / members:.2f}")
        out.append(table)
    return out
