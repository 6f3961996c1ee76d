"""Benchmark 16: what a SnapStart restore leaves to do, measured locally by forking an initialised process.

Lambda's SnapStart snapshots a published version's environment after init (and the before-snapshot
hooks) and starts new environments from that memory. `os.fork` of such a process is the closest local
stand-in: the child starts with the parent's memory and none of its work to do again. A fresh process
(the cold-start benchmark's environment: the embedded AWS, an empty model cache) imports
functions/online/app.py and makes no request. Then:
- init only: a fork answers its first request, four more one by one, then 300 (their p50: its warm
  p50), as SnapStart without runtime hooks would leave it: the first request reads the registry and
  loads the model;
- with the hooks: after `aimass.api.snapstart.run_before_snapshot()` in the parent (once, after the forks
  above, which it would otherwise help), a fork runs `run_after_restore()` (timed apart: Lambda runs
  it during the restore, within its 10 s, and a restored environment's first caller waits for it; its
  priming requests, `snapstart.prime`, timed apart again), then answers its first request, four more
  timed one by one (how the first one's excess fades), and 300 more.
Each fork counts its minor page faults (the first write to a page shared with the parent copies it) in
the hook and in the first request. Each request's event is read from its JSON in the fork, just before
the handler is called and outside its time, as the Lambda runtime reads each event after a restore: an
event object made before the fork would be shared memory the first request writes to (its reference
counts), which no restored environment has.
What a restore costs Lambda itself (restoring the memory) is not in these figures: this is what is left
to the function.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.cold_start import EVENT_AND_CONTEXT, MODEL, child_env
from bench.harness import demo_rows, function_file, predict_event
from bench.report import Table, ms, ratio, us
from bench.stats import median

FORKS = 21
WARM_CALLS = 300

# What each child script starts with: the online function imported by path, as the Lambda runtime
# imports it; the event and the Lambda context; its page faults; and `in_fork`, a restored environment.
CHILD_PRELUDE = (
    """
import contextlib, importlib.util, inspect, io, json, os, resource, statistics, sys, time
function, event_file, result_file, forks = sys.argv[1:5]
spec = importlib.util.spec_from_file_location("function_online", function)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from aimass.api import snapstart
"""
    + EVENT_AND_CONTEXT
    + """
def faults():  # minor page faults so far: a fork's first write to a page it shares copies the page
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def in_fork(measure):
    # measure() in a fork of this process, the restored environment: what it returns, as JSON. The fork
    # never returns into the parent's code.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read)
            with os.fdopen(write, "w") as out:
                out.write(json.dumps(measure()))
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as found:
        text = found.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not text:
        sys.exit(f"a fork failed with status {status}")
    return json.loads(text)
"""
)

CHILD = (
    CHILD_PRELUDE
    + """
warm_calls = sys.argv[5]
FOLLOWING = 4
event_text = json.dumps(event)

# The hook's priming (snapstart.prime, which the hooks call by its module name) timed apart: it is the
# part of the hook that the first request's figures depend on.
prime, priming_ms = snapstart.prime, [0.0]
def timed_prime(models, *args, **kwargs):
    started = time.perf_counter()
    try:
        return prime(models, *args, **kwargs)
    finally:
        priming_ms[0] += (time.perf_counter() - started) * 1e3
snapstart.prime = timed_prime

def restored(hooks):
    started, faulted = time.perf_counter(), faults()
    priming_ms[0] = 0.0
    if hooks:
        snapstart.run_after_restore()
    hooked, hook_faults = time.perf_counter(), faults()
    # Each event is read by the runtime after the restore (never an object of the snapshot's), outside
    # the handler's time.
    arrived = json.loads(event_text)
    since, since_faults = time.perf_counter(), faults()
    response = module.handler(arrived, Context())
    answered, first_faults = time.perf_counter(), faults()
    assert response["statusCode"] == 200, response
    following = []  # the 2nd to 5th requests, one by one: how the first request's excess fades
    for _ in range(FOLLOWING):
        arrived = json.loads(event_text)
        since_next = time.perf_counter()
        module.handler(arrived, Context())
        following.append((time.perf_counter() - since_next) * 1e6)
    warm = []
    for _ in range(int(warm_calls)):
        arrived = json.loads(event_text)
        since_ns = time.perf_counter_ns()
        module.handler(arrived, Context())
        warm.append(time.perf_counter_ns() - since_ns)
    return {
        "hooks": hooks,
        "after_restore_ms": (hooked - started) * 1e3,
        "after_restore_faults": hook_faults - faulted,
        "priming_ms": priming_ms[0],
        "first_request_us": (answered - since) * 1e6,
        "first_request_faults": first_faults - since_faults,
        "following_us": following,
        "warm_p50_us": statistics.median(warm) / 1e3,
    }

results = []
for hooks in (False, True):  # every fork without the hooks first: the hook changes the parent for good
    if hooks:
        started = time.perf_counter()
        snapstart.run_before_snapshot()
        before_snapshot_ms = (time.perf_counter() - started) * 1e3
    results += [in_fork(lambda: restored(hooks)) for _ in range(int(forks))]
with open(result_file, "w") as file:
    json.dump({"before_snapshot_ms": before_snapshot_ms, "forks": results}, file)
"""
)


def _child(script: str, stack: Any, tree: Path, forks: int, *extra: str) -> Any:
    """What a child script (CHILD_PRELUDE and its own part) wrote, run in a fresh process on the
    function and package of `tree`, against the embedded AWS, with one breast-cancer row's event."""
    with tempfile.TemporaryDirectory(prefix="aimass-bench-restore-") as folder:
        event_file, result_file = Path(folder) / "event.json", Path(folder) / "result.json"
        event_file.write_text(json.dumps(predict_event(demo_rows(MODEL, 1))))
        env = child_env(stack, tree, Path(folder) / "cache")
        args = [str(function_file(tree, "online")), str(event_file), str(result_file), str(forks), *extra]
        process = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if process.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"restore benchmark failed ({process.returncode}):\n{process.stderr[-3000:]}")
        return json.loads(result_file.read_text())


def run(stack: Any, tree: Path, forks: int = FORKS) -> dict[str, Any]:
    result: dict[str, Any] = _child(CHILD, stack, tree, forks, str(WARM_CALLS))
    cases = []
    for hooks in (False, True):
        runs = [r for r in result["forks"] if r["hooks"] is hooks]
        first, warm = median([r["first_request_us"] for r in runs]), median([r["warm_p50_us"] for r in runs])
        cases.append(
            {
                "hooks": hooks,
                "forks": len(runs),
                "after_restore_ms": median([r["after_restore_ms"] for r in runs]),
                "after_restore_faults": median([r["after_restore_faults"] for r in runs]),
                "priming_ms": median([r["priming_ms"] for r in runs]),
                "first_request_us": first,
                # What a restored environment's first caller waits for: the hook, then its request.
                "first_caller_ms": median(
                    [r["after_restore_ms"] + r["first_request_us"] / 1e3 for r in runs]
                ),
                "first_request_faults": median([r["first_request_faults"] for r in runs]),
                "following_us": [
                    median(calls) for calls in zip(*(r["following_us"] for r in runs), strict=True)
                ],
                "warm_p50_us": warm,
                "first_over_warm": first / warm,
            }
        )
    return {**result, "model": MODEL, "warm_calls": WARM_CALLS, "cases": cases}


def tables(result: dict[str, Any]) -> list[Table]:
    table = Table(
        f"A restored environment: a fork of an initialised process, {result['model']} x1 "
        f"(medians of {result['cases'][0]['forks']} forks each)",
        [
            "snapshot holds",
            "after-restore hook (ms)",
            "hook's page faults",
            "of which priming (ms)",
            "first request (µs)",
            "first's page faults",
            "first caller's wait: hook + request (ms)",
            "2nd, 3rd, 4th, 5th (µs)",
            "warm p50 (µs)",
            "first / warm",
        ],
        note=f"Warm p50: the {result['warm_calls']} requests after the fifth, in the same fork. Page "
        f"faults: minor faults (getrusage's ru_minflt) in the fork. The before-snapshot hook took "
        f"{ms(result['before_snapshot_ms'])} ms, once, before the forks.",
    )
    for case in result["cases"]:
        table.add(
            "init + before-snapshot hook" if case["hooks"] else "init only (no hooks)",
            ms(case["after_restore_ms"]) if case["hooks"] else "-",
            f"{case['after_restore_faults']:,.0f}" if case["hooks"] else "-",
            ms(case["priming_ms"]) if case["hooks"] else "-",
            us(case["first_request_us"]),
            f"{case['first_request_faults']:,.0f}",
            ms(case["first_caller_ms"]),
            " / ".join(us(call) for call in case["following_us"]),
            us(case["warm_p50_us"]),
            ratio(case["first_over_warm"]),
        )
    return [table]


# The diagnostic (`python -m bench restore-layers`): after the hooks, the caller's event is sent down the
# function's path one layer at a time, so that each layer's first touch is counted apart: its dispatch
# under aimass.serving.pipeline.priming (what the synthetic requests run), its dispatch with the
# observers (the function's metrics calls), then the decorated handler (Powertools' logger context,
# tracer, metrics flush and the first invocation's ColdStart line), then the handler again (warm).
# What a layer's first call costs is what priming that layer would save the first real request.
LAYERS = ("dispatch, primed", "dispatch, observed", "handler", "handler again")

LAYERS_CHILD = (
    CHILD_PRELUDE
    + """
from aimass.serving.pipeline import priming

# The function's dispatch, below Powertools' decorators: the innermost handler's `dispatch`.
dispatch = inspect.getclosurevars(inspect.unwrap(module.handler)).nonlocals["dispatch"]

def layered():
    started, faulted = time.perf_counter(), faults()
    snapstart.run_after_restore()
    found = {"after_restore": [(time.perf_counter() - started) * 1e6, faults() - faulted]}
    calls = {
        "dispatch, primed": lambda: priming_call(),
        "dispatch, observed": lambda: dispatch(event, Context()),
        "handler": lambda: module.handler(event, Context()),
        "handler again": lambda: module.handler(event, Context()),
    }
    lines = io.StringIO()
    with contextlib.redirect_stdout(lines):  # the EMF lines: counted, not printed into the result pipe
        for name, call in calls.items():
            since, faulted = time.perf_counter(), faults()
            response = call()
            found[name] = [(time.perf_counter() - since) * 1e6, faults() - faulted]
            assert response["statusCode"] == 200, response
    found["emf_lines"] = lines.getvalue().count('"_aws"')
    return found

def priming_call():
    with priming():
        return dispatch(event, Context())

snapstart.run_before_snapshot()
results = [in_fork(layered) for _ in range(int(forks))]
with open(result_file, "w") as file:
    json.dump(results, file)
"""
)


def layers(stack: Any, tree: Path, forks: int = FORKS) -> dict[str, Any]:
    runs: list[dict[str, Any]] = _child(LAYERS_CHILD, stack, tree, forks)
    steps = {
        name: {
            "us": median([r[name][0] for r in runs]),
            "faults": median([r[name][1] for r in runs]),
        }
        for name in ("after_restore", *LAYERS)
    }
    return {"model": MODEL, "forks": len(runs), "steps": steps, "emf_lines": [r["emf_lines"] for r in runs]}


def layers_tables(result: dict[str, Any]) -> list[Table]:
    table = Table(
        f"After a restore, the caller's first event one layer at a time, {result['model']} x1 "
        f"(medians of {result['forks']} forks)",
        ["step", "time (µs)", "page faults"],
        note="Each step is the first call of its layer after the hooks (the layers below it already "
        "called once): what priming that layer would save. EMF lines the steps printed, per fork: "
        f"{result['emf_lines']}.",
    )
    for name, step in result["steps"].items():
        label = "after-restore hook" if name == "after_restore" else name
        table.add(label, us(step["us"]), f"{step['faults']:,.0f}")
    return [table]


# The diagnostic (`python -m bench restore-hooks`): the after-restore hook's ways of making the AWS clients
# usable again and its priming passes, compared in forks of one parent, the ways in turn fork by fork:
# a new session and new clients (`aws.reset`, `wiring.prepare`: the hook before `aws.reconnect`) or the
# clients kept with their connections closed (`aws.reconnect`: the hook now), with one priming pass or two.
HOOK_WAYS = (("new session", 1), ("new session", 2), ("reconnect", 1), ("reconnect", 2))

HOOKS_CHILD = (
    CHILD_PRELUDE
    + """
import gc
from aimass import aws, wiring

def restored(clients, passes):
    started, faulted = time.perf_counter(), faults()
    snapstart.reseed()
    if clients == "new session":
        aws.reset()
        wiring.prepare()
    else:
        aws.reconnect()
    models = wiring.serving().store.refresh()
    for _ in range(passes):
        snapstart.prime(models)
    gc.freeze()
    hooked, hook_faults = time.perf_counter(), faults()
    arrived = json.loads(event_text)  # as in `restored` above: read after the restore, outside the time
    since = time.perf_counter()
    assert module.handler(arrived, Context())["statusCode"] == 200
    first = time.perf_counter() - since
    warm = []
    for _ in range(200):
        arrived = json.loads(event_text)
        since_ns = time.perf_counter_ns()
        module.handler(arrived, Context())
        warm.append(time.perf_counter_ns() - since_ns)
    return {
        "hook_ms": (hooked - started) * 1e3,
        "hook_faults": hook_faults - faulted,
        "first_request_us": first * 1e6,
        "warm_p50_us": statistics.median(warm) / 1e3,
    }

ways = json.loads(sys.argv[5])
event_text = json.dumps(event)
snapstart.run_before_snapshot()
results = [[way, in_fork(lambda: restored(*way))] for _ in range(int(forks)) for way in ways]
with open(result_file, "w") as file:
    json.dump(results, file)
"""
)


def hooks(stack: Any, tree: Path, forks: int = FORKS) -> dict[str, Any]:
    runs: list[Any] = _child(HOOKS_CHILD, stack, tree, forks, json.dumps(HOOK_WAYS))
    cases = []
    for clients, passes in HOOK_WAYS:
        found = [r for way, r in runs if tuple(way) == (clients, passes)]
        cases.append(
            {
                "clients": clients,
                "passes": passes,
                "forks": len(found),
                "hook_ms": median([r["hook_ms"] for r in found]),
                "hook_faults": median([r["hook_faults"] for r in found]),
                "first_request_us": median([r["first_request_us"] for r in found]),
                "warm_p50_us": median([r["warm_p50_us"] for r in found]),
                "first_over_warm": median([r["first_request_us"] / r["warm_p50_us"] for r in found]),
            }
        )
    return {"model": MODEL, "cases": cases}


def hooks_tables(result: dict[str, Any]) -> list[Table]:
    table = Table(
        f"The after-restore hook's ways, {result['model']} x1 (medians of {result['cases'][0]['forks']} "
        "forks each, the ways in turn)",
        [
            "AWS clients after the restore",
            "priming passes",
            "hook (ms)",
            "hook's page faults",
            "first request (µs)",
            "warm p50 (µs)",
            "first / warm (median of the forks')",
        ],
        note="new session: aws.reset and wiring.prepare (a new boto3 session and clients); reconnect: "
        "aws.reconnect (the clients kept, their connections closed, the credentials read). Each way then "
        "reads the held summaries again and primes the request path. Warm p50: 200 requests after the first.",
    )
    for case in result["cases"]:
        table.add(
            case["clients"],
            str(case["passes"]),
            ms(case["hook_ms"]),
            f"{case['hook_faults']:,.0f}",
            us(case["first_request_us"]),
            us(case["warm_p50_us"]),
            ratio(case["first_over_warm"]),
        )
    return [table]
