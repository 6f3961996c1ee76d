"""Benchmark 21: a SnapStart restore reading the held models' summaries again (ModelStore.refresh), in
this process, against the embedded AWS.

After a restore the online function reads every model its snapshot holds again (their aliases may
have moved; their read times are the snapshot machine's) while the restored environment's first caller
waits. Timed here for 2 and for 20 held models (20: AIMASS_SNAPSHOT_MAX_MODELS' default, the most a
snapshot holds), copies of the breast-cancer demo registered as `champion`: `ModelStore.refresh`, which
reads the summaries together (Registry.get_models: one BatchGetItem per 100 models), against the same
work with a GetItem per model (forget and prepare each, as refresh did before), in alternating rounds.
Both prepare what the summaries name (the versions are in the store already: nothing else is read).
Registered last in a run of every benchmark: the models it adds would be in the others' snapshots."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import demo
from bench.report import Table, ms, ratio
from bench.stats import median, timed

ACTOR = "aimass-bench"
PREFIX = "bench-refresh-"
SIZES = (2, 20)
ROUNDS = 15


def _register(count: int) -> list[str]:
    from aimass import wiring
    from aimass.config import settings
    from aimass.registration import register_version, set_alias

    made, registry = demo("breast-cancer"), wiring.registry()
    known = {summary.name for summary in registry.list_models()}
    names = [f"{PREFIX}{n:02d}" for n in range(count)]
    for name in names:
        if name not in known:
            record = register_version(registry, settings().bucket, name, made.model, ACTOR, made.enrichment)
            set_alias(registry, name, "champion", record.version, ACTOR)
    return names


def run(scale: float = 1.0) -> dict[str, Any]:
    from aimass import aws, wiring
    from aimass.serving.build import request_pipeline

    names = _register(max(SIZES))
    calls: dict[str, int] = {}

    measuring = threading.current_thread()

    def count(event_name: str, **_: Any) -> None:
        if threading.current_thread() is measuring:  # not the embedded stack's event poller's
            operation = event_name.rsplit(".", 1)[-1]
            calls[operation] = calls.get(operation, 0) + 1

    aws.client("dynamodb").meta.events.register("before-call.dynamodb", count)
    rounds = max(3, int(ROUNDS * scale))
    cases = []
    for size in SIZES:
        held = names[:size]
        # A store of its own that holds these models, and only these.
        with tempfile.TemporaryDirectory(prefix="aimass-bench-refresh-") as cache:
            store = request_pipeline(wiring.registry(), Path(cache)).store
            for name in held:
                store.prepare(name)
            cases.append(_case(store, held, calls, rounds))
    return {"cases": cases}


def _case(store: Any, held: list[str], calls: dict[str, int], rounds: int) -> dict[str, Any]:
    def one_by_one() -> None:  # refresh as it was: a GetItem per model
        for name in held:
            store.forget(name)
            store.prepare(name)

    variants: dict[str, Callable[[], object]] = {"together": store.refresh, "one by one": one_by_one}
    times: dict[str, list[float]] = {label: [] for label in variants}
    reads: dict[str, dict[str, int]] = {}
    for _ in range(rounds):
        for label, call in variants.items():
            calls.clear()
            times[label].append(timed(call)[1])
            reads[label] = dict(calls)
    return {
        "models": len(held),
        "rounds": rounds,
        "together_ms": median(times["together"]),
        "one_by_one_ms": median(times["one by one"]),
        "together_calls": reads["together"],
        "one_by_one_calls": reads["one by one"],
    }


def _calls(counted: dict[str, int]) -> str:
    return ", ".join(f"{count} {operation}" for operation, count in sorted(counted.items())) or "none"


def tables(result: dict[str, Any]) -> list[Table]:
    table = Table(
        "Reading the held models' summaries again after a restore (ModelStore.refresh), medians (ms)",
        [
            "models held",
            "read together",
            "one GetItem each",
            "together / one each",
            "calls together",
            "calls one each",
        ],
        note=f"Medians of {result['cases'][0]['rounds']} alternating rounds, in this process against the "
        "embedded AWS (moto in the same process: a round trip here is a fraction of one to DynamoDB).",
    )
    for case in result["cases"]:
        table.add(
            str(case["models"]),
            ms(case["together_ms"]),
            ms(case["one_by_one_ms"]),
            ratio(case["together_ms"] / case["one_by_one_ms"]),
            _calls(case["together_calls"]),
            _calls(case["one_by_one_calls"]),
        )
    return [table]
