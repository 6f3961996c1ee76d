"""Benchmark 19: `:explain` p50 per instance at the default sample count (issue 20), with the predict
floor measured in the same run.

The online function's handler, in-process (API Gateway event in, response out), on one held-out
instance of breast-cancer (30 features: 2,108 coalitions) and of digits (64 pixels: 2,176
coalitions), each over its version's 100 background rows, interleaved call by call with the same
handler's `:predict` of that instance. Also breast-cancer x4, for what a request of several instances
costs per instance (the chunks then hold rows of several instances)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from typing import Any

from bench.harness import demo_rows, predict_event
from bench.report import Table, ms
from bench.stats import Summary, measure_interleaved

ITERATIONS, WARMUP = 20, 2


def _event(model: str, count: int, verb: str) -> dict[str, Any]:
    event = copy.deepcopy(predict_event(demo_rows(model, count)))
    event["rawPath"] = event["rawPath"].replace(":predict", f":{verb}")
    event["requestContext"]["http"]["path"] = event["rawPath"]
    return event


def run(scale: float = 1.0) -> dict[str, Any]:
    from aimass import explain
    from aimass.local.lambda_runtime import LambdaContext, load_handler

    handler = load_handler("online")
    context = LambdaContext()
    cases = {
        "breast-cancer x1": ("breast-cancer", 1),
        "digits x1": ("digits", 1),
        "breast-cancer x4": ("breast-cancer", 4),
    }
    calls = {}
    answers: dict[str, Any] = {}
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for label, (model, count) in cases.items():
            for verb in ("predict", "explain"):
                event = _event(model, count, verb)
                answer = handler(event, context)
                if answer["statusCode"] != 200:
                    raise RuntimeError(f"{event['rawPath']}: {answer['statusCode']} {answer['body'][:300]}")
                answers[f"{verb} {label}"] = json.loads(answer["body"])
                calls[f"{verb} {label}"] = lambda e=event: handler(e, context)
        summaries = measure_interleaved(calls, max(3, int(ITERATIONS * scale)), WARMUP, block=1)
    shape = {
        label: {
            "instances": count,
            "samples": answers[f"explain {label}"]["samples"],
            "background": answers[f"explain {label}"]["background"]["rows"],
            "features": len(answers[f"explain {label}"]["shap"][0]["attributions"]),
        }
        for label, (_, count) in cases.items()
    }
    for figures in shape.values():
        figures["rows"] = explain.evaluated_rows(
            figures["instances"], figures["features"], figures["samples"], figures["background"]
        )
    return {"calls": {label: s.as_dict() for label, s in summaries.items()}, "cases": shape}


def tables(result: dict[str, Any]) -> list[Table]:
    calls = {label: Summary(**figures) for label, figures in result["calls"].items()}
    table = Table(
        ":explain at the default sample count, next to :predict of the same rows (ms)",
        [
            "request",
            "coalitions x background",
            "model rows",
            "explain p50",
            "p50 per instance",
            "predict p50",
            "explain / predict",
            "µs per model row",
        ],
        note="The online function's handler in-process (moto as AWS, capture off), explain and predict "
        "calls alternated one by one. Model rows: instances x coalitions x background rows + the "
        "instances + the background.",
    )
    for label, case in result["cases"].items():
        explained, predicted = calls[f"explain {label}"], calls[f"predict {label}"]
        per_row = explained.p50_us / case["rows"]
        table.add(
            label,
            f"{case['samples']:,} x {case['background']}",
            f"{case['rows']:,}",
            ms(explained.p50_us / 1e3),
            ms(explained.p50_us / 1e3 / case["instances"]),
            ms(predicted.p50_us / 1e3),
            f"{explained.p50_us / predicted.p50_us:,.0f}x",
            f"{per_row:.2f}",
        )
    return [table]
