"""Benchmark 12: what a 10 % shadow adds to a warm prediction, in-process, through the online
function's Lambda handler (API Gateway event in, response out), and that it holds when the shadow is
slow or fails.

The same demo (breast-cancer) is registered under five names, each with a champion v1 and a v2 (the
same graph in other bytes): `bs-plain` with no traffic policy; `bs-rollout` with v2 rolled out as a
0 % canary (a rollout under way, its live figures counted, no shadow); `bs-shadow` with v2 shadowing
10 % of the requests (drawn at random, no canary share); `bs-slow`, the same, whose shadow runs take
50 ms more (the worker's run wrapped in a sleep: an endpoint that answers slowly); `bs-failing`, the
same, whose v2 model file is deleted from S3 after the rollout started (every shadow run fails
reading it). All five are timed in one interleaved run. Then, apart (its queue's worker would
otherwise run beside the handlers), what the request thread pays when a request is sampled: the
sampling draw and the enqueue alone."""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import time
from typing import Any

from bench.harness import demo, demo_rows, predict_event
from bench.report import Table, us
from bench.stats import Summary, measure_interleaved

ACTOR = "aimass-bench"
ITERATIONS, WARMUP = 3000, 300
PERCENT = 10
SLOW_S = 0.05
NAMES = ("bs-plain", "bs-rollout", "bs-shadow", "bs-slow", "bs-failing")
SHADOWED = NAMES[2:]


def _register() -> None:
    import onnx

    from aimass import aws, wiring
    from aimass.config import settings
    from aimass.contracts.registry import CanarySplit, RolloutStart, TrafficPolicy
    from aimass.registration import register_version, set_alias, set_traffic_policy
    from aimass.rollout import start

    made, registry = demo("breast-cancer"), wiring.registry()
    proto = onnx.load_from_string(made.model)
    for name in NAMES:
        first = register_version(registry, settings().bucket, name, made.model, ACTOR, made.enrichment)
        set_alias(registry, name, "champion", first.version, ACTOR)
        if name == "bs-plain":
            continue
        # The same graph in other bytes (bs-failing's unique: no file on disk from an earlier run)
        proto.doc_string = f"shadow {name} {time.time_ns()}"
        second = register_version(
            registry, settings().bucket, name, proto.SerializeToString(), ACTOR, made.enrichment
        )
        if name in SHADOWED:
            start(registry, name, RolloutStart(version=second.version, shadow=PERCENT), ACTOR)
        else:  # counted as a rollout's models are, with no traffic of its own: a 0 % canary
            zero = TrafficPolicy(canary=CanarySplit(version=second.version, percent=0))
            set_traffic_policy(registry, name, zero, ACTOR)
        if name == "bs-failing":
            aws.client("s3").delete_object(Bucket=settings().bucket, Key=second.artifact_uri.split("/", 3)[3])
    for name in NAMES:
        wiring.serving().store.forget(name)


def _event(name: str) -> dict[str, Any]:
    event = copy.deepcopy(predict_event(demo_rows("breast-cancer", 1)))
    event["rawPath"] = event["rawPath"].replace("breast-cancer", name)
    event["requestContext"]["http"]["path"] = event["rawPath"]
    return event


def _slow_for(pipeline: Any, name: str) -> None:
    """The pipeline's shadow runs of `name` take SLOW_S more, as if its endpoint answered slowly."""
    run = pipeline.shadows.run

    def slow(job: Any) -> Any:
        if job.name == name:
            time.sleep(SLOW_S)
        return run(job)

    pipeline.shadows.run = slow


def run(scale: float = 1.0) -> dict[str, Any]:
    from aimass import wiring
    from aimass.contracts.registry import ShadowSplit
    from aimass.local.lambda_runtime import LambdaContext, load_handler
    from aimass.serving import codecs
    from aimass.serving.pipeline import Answered
    from aimass.serving.shadow import ShadowJob, Shadows, sampled

    _register()
    handler = load_handler("online")
    context = LambdaContext()
    pipeline = wiring.serving()
    _slow_for(pipeline, "bs-slow")
    events = {name: _event(name) for name in NAMES}
    iterations = max(100, int(ITERATIONS * scale))
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for name, event in events.items():
            answer = handler(event, context)
            if answer["statusCode"] != 200:
                raise RuntimeError(f"{name}: {answer['statusCode']} {answer['body'][:300]}")
        calls = {
            "no policy": lambda: handler(events["bs-plain"], context),
            "rollout, no shadow (0 % canary)": lambda: handler(events["bs-rollout"], context),
            f"{PERCENT} % shadow": lambda: handler(events["bs-shadow"], context),
            f"{PERCENT} % shadow, 50 ms slower": lambda: handler(events["bs-slow"], context),
            f"{PERCENT} % shadow, failing": lambda: handler(events["bs-failing"], context),
        }
        summaries = measure_interleaved(calls, iterations, WARMUP)
        pipeline.shadows.drain(timeout=120)
        wiring.flush_live()
        status = _figures()
        # The enqueue alone: a queue of its own, its worker held on its first job so that it runs
        # nothing beside the loop, big enough never to be full
        held = threading.Event()
        enqueue_only = Shadows(lambda job: held.wait(60) and job.served, queue_size=iterations + WARMUP + 1)
        model = pipeline.store.load("bs-plain")
        feeds = codecs.v1_feeds(model.version.signature, demo_rows("breast-cancer", 1).body["instances"])
        served = Answered(model.version, 1, outputs=model.run(feeds))
        job = ShadowJob("bs-plain", 2, ("bs-plain", 1, 2), None, served, None)
        split = ShadowSplit(version=2, percent=100)
        summaries |= measure_interleaved(
            {"sample + enqueue alone": lambda: sampled(split, None) and enqueue_only.submit(job)},
            iterations,
            WARMUP,
        )
        held.set()
    return {
        "percent": PERCENT,
        "slow_s": SLOW_S,
        "shadow_queue": {"skipped": pipeline.shadows.skipped, "errors": pipeline.shadows.errors},
        "shadow_figures": status,
        "calls": {label: summary.as_dict() for label, summary in summaries.items()},
    }


def _figures() -> dict[str, Any]:
    """Each shadowed model's shadow figures after the run, as `GET .../rollout` gives them."""
    from aimass import rollout, wiring

    out = {}
    for name in SHADOWED:
        live = rollout.status(wiring.registry(), name).live or {}
        figures = live["shadow"]
        out[name] = {
            k: getattr(figures, k) for k in ("requests", "errors", "skipped", "compared", "agreement")
        } | {"stable_requests": live["stable"].requests}
    return out


SHADOW_LABELS = (f"{PERCENT} % shadow", f"{PERCENT} % shadow, 50 ms slower", f"{PERCENT} % shadow, failing")


def tables(result: dict[str, Any]) -> list[Table]:
    calls = {label: Summary(**figures) for label, figures in result["calls"].items()}
    plain = calls["no policy"].p50_us
    rollout = calls["rollout, no shadow (0 % canary)"].p50_us
    table = Table(
        f"Warm predict handler, breast-cancer x1, with and without a {result['percent']} % shadow (µs)",
        ["call", "p50", "p99", "mean", "added p50", "added / handler p50", "shadow's own / handler p50"],
        note="Interleaved blocks of 25 calls; the handler is the online function's, in-process, moto as "
        "AWS; the shadow runs on the process's shadow worker thread. Added: over the handler with no "
        "policy; the shadow's own: over the handler with a rollout under way but no shadow (the live "
        "figures and per-variant metrics a rollout counts). The last row, timed apart, is what a "
        "sampled request's thread pays: the draw and the enqueue.",
    )
    for label, summary in calls.items():
        alone = label == "sample + enqueue alone"
        added = summary.p50_us if alone else summary.p50_us - plain
        own = summary.p50_us if alone else summary.p50_us - rollout
        table.add(
            label,
            us(summary.p50_us),
            us(summary.p99_us),
            us(summary.mean_us),
            us(added),
            f"{added / plain:.1%}",
            f"{own / plain:.1%}" if label in ("sample + enqueue alone", *SHADOW_LABELS) else "",
        )
    shadows = Table(
        "The shadows' own figures after the run",
        [
            "model",
            "stable requests",
            "shadow runs",
            "errors",
            "skipped (queue full)",
            "compared",
            "agreement",
        ],
    )
    for name, figures in result["shadow_figures"].items():
        agreement = figures["agreement"]
        shadows.add(
            name,
            str(figures["stable_requests"]),
            str(figures["requests"]),
            str(figures["errors"]),
            str(figures["skipped"]),
            str(figures["compared"]),
            "—" if agreement is None else f"{agreement:.1%}",
        )
    return [table, shadows]
