"""Benchmark 3: cold start of the online function in a fresh process, next to a bare ONNX Runtime process,
and of the batch function.

Each run is a new interpreter, as a new Lambda execution environment is: the handler process imports
functions/online/app.py and answers one predict event (resolving the version in the registry and
downloading the artifact into an empty model cache); the floor process imports ONNX Runtime, loads
the same model from a file and runs it once on the same row. Both are timed from outside (the whole
process) and from inside (from the first line of the script to the first prediction). The batch
process imports functions/batch/app.py and handles the S3 event of a small CSV file, a new object
each run. The functions and the package are this checkout's, or those of the one `--tree` names.

With several `--tree`, the online handler of each checkout instead, in turns (the order reversed
every other round) with the floor once a round: a before and after on the same minutes of a shared
machine (`compare`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import EVENTS, aws_env, demo_model, demo_rows, function_file, layer_env, predict_event
from bench.report import Table, ms, ratio
from bench.stats import median

MODEL = "breast-cancer"
REPEATS = 7
# Rounds of a comparison of checkouts: their differences are a few percent of the CPU.
COMPARE_REPEATS = 21
# The batch function's file: this many held-out rows, dropped into a bucket of its own that no S3
# notification watches (the embedded stack's own would run the handler in this process too).
BATCH_ROWS = 100
BATCH_BUCKET = "aimass-bench-cold-start"
PHASE_MARK = "# aimass-bench phase:"

# Every child starts with this: the clock, the process's CPU time (less disturbed by other work on a
# shared machine than the clock), and the time the garbage collector pauses the process.
CHILD_CLOCKS = """
import gc, time
started, cpu_started = time.perf_counter(), time.process_time()
gc_seconds = [0.0]
def _time_gc(phase, info, _since=[0.0]):
    if phase == "start":
        _since[0] = time.perf_counter()
    else:
        gc_seconds[0] += time.perf_counter() - _since[0]
gc.callbacks.append(_time_gc)
"""

# A child's API Gateway event (from `event_file`) and the Lambda context the handler is given.
EVENT_AND_CONTEXT = """
with open(event_file) as file:
    event = json.load(file)
class Context:
    function_name = "aimass-online"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:aimass-online"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
"""

# The Lambda runtime's part (reading the event) is outside the measured window; the handler's is in.
# aimass.aws.client is wrapped only to time it: the clients are still made when the service makes them.
HANDLER_CHILD = (
    CHILD_CLOCKS
    + """
import importlib.util, json, sys
function, event_file, result_file = sys.argv[1:4]
print("@PHASE_MARK@ import", file=sys.stderr)
spec = importlib.util.spec_from_file_location("function_online", function)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imported, gc_at_import, cpu_imported = time.perf_counter(), gc_seconds[0], time.process_time()
import aimass.aws
make_client, clients_seconds = aimass.aws.client, [0.0]
def timed_client(service):
    since = time.perf_counter()
    try:
        return make_client(service)
    finally:
        clients_seconds[0] += time.perf_counter() - since
aimass.aws.client = timed_client
"""
    + EVENT_AND_CONTEXT
    + """print("@PHASE_MARK@ first-request", file=sys.stderr)
before, gc_before, cpu_before = time.perf_counter(), gc_seconds[0], time.process_time()
response = module.handler(event, Context())
answered, gc_answered, cpu_answered = time.perf_counter(), gc_seconds[0], time.process_time()
frameworks = sorted({m.split(".")[0] for m in sys.modules} & {"fastapi", "starlette", "mangum"})
module.handler(event, Context())
second = time.perf_counter()
with open(result_file, "w") as file:
    json.dump({
        "status": response["statusCode"],
        "import_ms": (imported - started) * 1e3,
        "import_gc_ms": gc_at_import * 1e3,
        "first_request_ms": (answered - before) * 1e3,
        "first_request_gc_ms": (gc_answered - gc_before) * 1e3,
        "first_request_clients_ms": clients_seconds[0] * 1e3,
        "in_child_ms": (imported - started + answered - before) * 1e3,
        "in_child_gc_ms": (gc_at_import + gc_answered - gc_before) * 1e3,
        "in_child_cpu_ms": (cpu_imported - cpu_started + cpu_answered - cpu_before) * 1e3,
        "second_request_ms": (second - answered) * 1e3,
        "frameworks_by_first_request": frameworks,
    }, file)
"""
).replace("@PHASE_MARK@", PHASE_MARK)

# The same session options as the service (aimass.serving.backends.onnx imports nothing beyond ORT and numpy).
FLOOR_CHILD = (
    CHILD_CLOCKS
    + """
import json, sys
from pathlib import Path
import numpy as np
from aimass.serving.backends.onnx import new_session
model_file, input_file, result_file = sys.argv[1:4]
imported = time.perf_counter()
session = new_session(Path(model_file))
tensor = np.load(input_file)
loaded = time.perf_counter()
session.run(None, {session.get_inputs()[0].name: tensor})
ran, cpu_ran = time.perf_counter(), time.process_time()
with open(result_file, "w") as file:
    json.dump({
        "status": 200,
        "import_ms": (imported - started) * 1e3,
        "session_ms": (loaded - imported) * 1e3,
        "run_ms": (ran - loaded) * 1e3,
        "in_child_ms": (ran - started) * 1e3,
        "in_child_gc_ms": gc_seconds[0] * 1e3,
        "in_child_cpu_ms": (cpu_ran - cpu_started) * 1e3,
    }, file)
"""
)


# The Lambda runtime's part (reading the event) is outside the measured window, as for the handler.
BATCH_CHILD = (
    CHILD_CLOCKS
    + """
import importlib.util, json, sys
function, event_file, result_file = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("function_batch", function)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imported, gc_at_import, cpu_imported = time.perf_counter(), gc_seconds[0], time.process_time()
with open(event_file) as file:
    event = json.load(file)
class Context:
    function_name = "aimass-batch"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:aimass-batch"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    def get_remaining_time_in_millis(self):
        return 900_000
before, gc_before, cpu_before = time.perf_counter(), gc_seconds[0], time.process_time()
[summary] = module.handler(event, Context())["files"]
answered, gc_answered, cpu_answered = time.perf_counter(), gc_seconds[0], time.process_time()
with open(result_file, "w") as file:
    json.dump({
        "status": 200 if summary["status"] == "succeeded" else 500,
        "import_ms": (imported - started) * 1e3,
        "first_request_ms": (answered - before) * 1e3,
        "in_child_ms": (imported - started + answered - before) * 1e3,
        "in_child_gc_ms": (gc_at_import + gc_answered - gc_before) * 1e3,
        "in_child_cpu_ms": (cpu_imported - cpu_started + cpu_answered - cpu_before) * 1e3,
    }, file)
"""
)


@dataclass(frozen=True)
class Inputs:
    """What the processes read: the event, the model and its tensor in a scratch folder; the batch
    function's file."""

    folder: Path
    event: Path
    model: Path
    tensor: Path
    batch_file: bytes


def prepare(folder: Path) -> Inputs:
    from aimass.local.resources import create_bucket

    rows = demo_rows(MODEL, 1)
    inputs = Inputs(folder, folder / "event.json", folder / "model.onnx", folder / "input.npy", batch_file())
    inputs.event.write_text(json.dumps(predict_event(rows)))
    inputs.model.write_bytes(demo_model(MODEL))
    np.save(inputs.tensor, rows.tensor)
    create_bucket(BATCH_BUCKET)  # the artifacts bucket's template properties: versioned, as S3 events name
    return inputs


def child_env(stack: Any, tree: Path, cache_dir: Path) -> dict[str, str]:
    """A small, explicit environment, as a function has: the embedded AWS, Powertools, PATH."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        **layer_env(tree),
        **aws_env(stack, cache_dir),
    }


def run_child(
    code: str, args: list[str], env: dict[str, str], tree: Path, python_flags: tuple[str, ...] = ()
) -> tuple[dict[str, Any], str]:
    """The child's own figures plus the parent's wall time of the whole process, and its stderr."""
    with tempfile.TemporaryDirectory(prefix="aimass-bench-child-") as scratch:
        result_file = Path(scratch) / "result.json"
        command = [sys.executable, *python_flags, "-c", code, *args, str(result_file)]
        started = time.perf_counter()
        process = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=120)
        wall_ms = (time.perf_counter() - started) * 1e3
        if process.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"child failed ({process.returncode}):\n{process.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(result_file.read_text())
    if result["status"] != 200:
        raise RuntimeError(f"child answered {result['status']}")
    return {**result, "wall_ms": wall_ms}, process.stderr


def handler_run(
    stack: Any, tree: Path, inputs: Inputs, python_flags: tuple[str, ...] = ()
) -> tuple[dict[str, Any], str]:
    # A fresh, empty model cache per run: a new execution environment has nothing in /tmp.
    with tempfile.TemporaryDirectory(prefix="aimass-bench-cold-cache-") as cache:
        env = child_env(stack, tree, Path(cache))
        online = function_file(tree, "online")
        return run_child(HANDLER_CHILD, [str(online), str(inputs.event)], env, tree, python_flags)


def floor_run(stack: Any, tree: Path, inputs: Inputs) -> dict[str, Any]:
    # The same environment as the handler's, though the floor never reaches the embedded AWS.
    with tempfile.TemporaryDirectory(prefix="aimass-bench-cold-cache-") as cache:
        env = child_env(stack, tree, Path(cache))
        return run_child(FLOOR_CHILD, [str(inputs.model), str(inputs.tensor)], env, tree)[0]


def batch_file() -> bytes:
    """The held-out rows as the CSV file a user drops (a header of feature names)."""
    instances = demo_rows(MODEL, BATCH_ROWS).instances
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(instances[0]))
    writer.writeheader()
    writer.writerows(instances)
    return text.getvalue().encode()


def batch_run(stack: Any, tree: Path, inputs: Inputs, run: int) -> dict[str, Any]:
    """A new object version each run: the idempotency table would otherwise answer with the first
    run's summary."""
    from aimass import aws

    key = f"incoming/{MODEL}/cold-start-{run}.csv"
    put = aws.client("s3").put_object(Bucket=BATCH_BUCKET, Key=key, Body=inputs.batch_file)
    event = json.loads((EVENTS / "s3_incoming_csv.json").read_text())
    event["Records"][0]["s3"]["bucket"]["name"] = BATCH_BUCKET
    found = event["Records"][0]["s3"]["object"]
    found.update(
        {
            "key": key,
            "size": len(inputs.batch_file),
            "eTag": put["ETag"].strip('"'),
            "versionId": put.get("VersionId"),
        }
    )
    event_file = inputs.folder / f"s3-event-{run}.json"
    event_file.write_text(json.dumps(event))
    with tempfile.TemporaryDirectory(prefix="aimass-bench-cold-cache-") as cache:
        env = {
            **child_env(stack, tree, Path(cache)),
            "AIMASS_BUCKET": BATCH_BUCKET,
            "AIMASS_IDEMPOTENCY_TABLE": stack.idempotency_table,
            "AIMASS_BATCH_WORK_DIR": str(Path(cache) / "batch"),
        }
        return run_child(BATCH_CHILD, [str(function_file(tree, "batch")), str(event_file)], env, tree)[0]


def profile_imports(stack: Any, tree: Path, inputs: Inputs) -> dict[str, Any]:
    """One more cold handler run under `python -X importtime` (slower, so not among the timed runs)."""
    _, stderr = handler_run(stack, tree, inputs, ("-X", "importtime"))
    return import_breakdown(stderr)


def import_breakdown(stderr: str) -> dict[str, Any]:
    """`python -X importtime` output by phase: own (self) time per top-level package, top modules."""
    self_ms: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    modules: list[dict[str, Any]] = []
    phase = "startup"
    for line in stderr.splitlines():
        if line.startswith(PHASE_MARK):
            phase = line[len(PHASE_MARK) :].strip()
            continue
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[0].strip().isdigit():
            continue
        own, cumulative, name = int(fields[0]) / 1e3, int(fields[1]) / 1e3, fields[2].rstrip()
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        module = name.strip()
        self_ms[module.split(".")[0]][phase] += own
        modules.append(
            {"module": module, "phase": phase, "depth": depth, "self_ms": own, "cumulative_ms": cumulative}
        )
    # What the interpreter imports before the script runs is the same for the floor: left out of totals.
    packages: list[dict[str, Any]] = [
        {"package": p, **phases, "total_ms": phases.get("import", 0.0) + phases.get("first-request", 0.0)}
        for p, phases in self_ms.items()
    ]
    packages.sort(key=lambda item: -float(item["total_ms"]))
    measured = [m for m in modules if m["phase"] != "startup"]
    top = sorted(measured, key=lambda item: -float(item["cumulative_ms"]))[:15]
    totals = {
        phase: sum(p.get(phase, 0.0) for p in packages) for phase in ("startup", "import", "first-request")
    }
    return {"packages": packages, "top_modules_by_cumulative": top, "totals_ms": totals}


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The median of each timing (`*_ms`) over the runs of one side."""
    return {key: median([r[key] for r in runs]) for key in runs[0] if key.endswith("_ms")}


def run(stack: Any, tree: Path, repeats: int = REPEATS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aimass-bench-cold-") as folder:
        inputs = prepare(Path(folder))
        # One discarded round first: it pulls the interpreter, packages and model into the page cache,
        # which a warm Lambda host has too; the first start after a deploy is slower still.
        handler_run(stack, tree, inputs)
        floor_run(stack, tree, inputs)
        batch_run(stack, tree, inputs, 0)
        handlers, floors, batches = [], [], []
        for run in range(1, repeats + 1):  # alternating, so drift on the machine hits all alike
            handlers.append(handler_run(stack, tree, inputs)[0])
            floors.append(floor_run(stack, tree, inputs))
            batches.append(batch_run(stack, tree, inputs, run))
        imports = profile_imports(stack, tree, inputs)
    summary = {
        side: medians(runs) for side, runs in (("handler", handlers), ("floor", floors), ("batch", batches))
    }
    return {
        "model": MODEL,
        "repeats": repeats,
        "median": summary,
        "ratio_wall": summary["handler"]["wall_ms"] / summary["floor"]["wall_ms"],
        "ratio_in_child": summary["handler"]["in_child_ms"] / summary["floor"]["in_child_ms"],
        "batch_rows": BATCH_ROWS,
        "runs": {"handler": handlers, "floor": floors, "batch": batches},
        "imports": imports,
    }


def compare(stack: Any, trees: list[Path], repeats: int = COMPARE_REPEATS) -> dict[str, Any]:
    """Each checkout's cold online handler in turns, with the floor once a round."""
    with tempfile.TemporaryDirectory(prefix="aimass-bench-cold-") as folder:
        inputs = prepare(Path(folder))
        for tree in trees:  # discarded, as in `run`: the page cache
            handler_run(stack, tree, inputs)
        floor_run(stack, trees[0], inputs)
        handlers: dict[str, list[dict[str, Any]]] = {str(tree): [] for tree in trees}
        floors = []
        for round_ in range(repeats):
            for tree in trees if round_ % 2 == 0 else trees[::-1]:
                handlers[str(tree)].append(handler_run(stack, tree, inputs)[0])
            floors.append(floor_run(stack, trees[0], inputs))
    return {
        "model": MODEL,
        "repeats": repeats,
        "median": {tree: medians(runs) for tree, runs in handlers.items()},
        "floor": medians(floors),
        "runs": {"handlers": handlers, "floor": floors},
    }


def compare_tables(result: dict[str, Any]) -> list[Table]:
    floor = result["floor"]
    table = Table(
        f"Cold start of each checkout's online handler in turns, {result['model']} x1: medians of "
        f"{result['repeats']} rounds (ms)",
        [
            "checkout",
            "import + first prediction (in child)",
            "of which import",
            "of which first prediction",
            "CPU (in child)",
            "ratio to the floor, in child",
            "ratio to the floor, CPU",
        ],
        note="Each round runs every checkout's handler once, in an order reversed every other round, "
        "then the floor (import onnxruntime + numpy, session from the model file, one run).",
    )
    for tree, handler in result["median"].items():
        table.add(
            tree,
            ms(handler["in_child_ms"]),
            ms(handler["import_ms"]),
            ms(handler["first_request_ms"]),
            ms(handler["in_child_cpu_ms"]),
            ratio(handler["in_child_ms"] / floor["in_child_ms"]),
            ratio(handler["in_child_cpu_ms"] / floor["in_child_cpu_ms"]),
        )
    table.add(
        "ONNX Runtime floor",
        ms(floor["in_child_ms"]),
        ms(floor["import_ms"]),
        "",
        ms(floor["in_child_cpu_ms"]),
        "1",
        "1",
    )
    return [table]


def tables(result: dict[str, Any]) -> list[Table]:
    if "floor" in result:
        return compare_tables(result)
    handler, floor = result["median"]["handler"], result["median"]["floor"]
    cold = Table(
        f"Cold start, fresh process, {result['model']} x1: "
        f"medians of {result['repeats']} alternating runs (ms)",
        [
            "process",
            "whole process (wall)",
            "import + first prediction (in child)",
            "of which import",
            "of which first prediction",
            "of which GC pauses",
            "CPU (in child)",
        ],
        note="Handler: import functions/online/app.py + one predict event (registry lookup, S3 download "
        "into an empty cache, session). Floor: import onnxruntime + numpy, session from the model file, "
        "one run.",
    )
    cold.add(
        "online handler",
        ms(handler["wall_ms"]),
        ms(handler["in_child_ms"]),
        ms(handler["import_ms"]),
        ms(handler["first_request_ms"]),
        ms(handler["in_child_gc_ms"]),
        ms(handler["in_child_cpu_ms"]),
    )
    cold.add(
        "ONNX Runtime floor",
        ms(floor["wall_ms"]),
        ms(floor["in_child_ms"]),
        ms(floor["import_ms"]),
        ms(floor["session_ms"] + floor["run_ms"]),
        ms(floor["in_child_gc_ms"]),
        ms(floor["in_child_cpu_ms"]),
    )
    ratios = ratio(result["ratio_wall"]), ratio(result["ratio_in_child"])
    cold.add("ratio handler / floor", *ratios, "", "", "", "")
    detail = Table("The cold handler in detail (medians, ms)", ["step", "ms"])
    detail.add("import of functions/online/app.py", ms(handler["import_ms"]))
    detail.add("  of which garbage collection pauses", ms(handler["import_gc_ms"]))
    detail.add("first request (registry lookup, S3 download, session)", ms(handler["first_request_ms"]))
    detail.add("  of which making the boto3 clients", ms(handler["first_request_clients_ms"]))
    detail.add("  of which garbage collection pauses", ms(handler["first_request_gc_ms"]))
    detail.add("second request, for comparison", ms(handler["second_request_ms"]))
    frameworks = result["runs"]["handler"][0].get("frameworks_by_first_request", [])
    detail.add("web frameworks imported by then (not timed)", ", ".join(frameworks) or "none")
    batch = result["median"]["batch"]
    batch_table = Table(
        f"Cold start of the batch function, fresh process: medians of {result['repeats']} runs (ms)",
        [
            "process",
            "whole process (wall)",
            "import + first file (in child)",
            "of which import",
            "of which first file",
            "of which GC pauses",
            "CPU (in child)",
        ],
        note=f"Import functions/batch/app.py + one S3 event: a {result['batch_rows']}-row CSV, a new object "
        "each run (idempotency record, registry lookup, S3 download into an empty cache, session, the "
        "job, two uploads and the report).",
    )
    batch_table.add(
        "batch handler",
        ms(batch["wall_ms"]),
        ms(batch["in_child_ms"]),
        ms(batch["import_ms"]),
        ms(batch["first_request_ms"]),
        ms(batch["in_child_gc_ms"]),
        ms(batch["in_child_cpu_ms"]),
    )
    imports = result["imports"]
    packages = Table(
        "Import time of the cold handler by top-level package, own time (ms, python -X importtime)",
        ["package", "while importing app.py", "during the first request", "total"],
        note="Read these as shares: -X importtime inflates them, and a garbage collection pause is "
        "charged to whichever module is importing when it runs. Interpreter startup is left out.",
    )
    for item in [p for p in imports["packages"] if p["total_ms"] >= 5][:14]:
        packages.add(
            item["package"],
            ms(item.get("import", 0.0)),
            ms(item.get("first-request", 0.0)),
            ms(item["total_ms"]),
        )
    totals = imports["totals_ms"]
    packages.add(
        "all packages",
        ms(totals["import"]),
        ms(totals["first-request"]),
        ms(totals["import"] + totals["first-request"]),
    )
    top = Table("Top modules by cumulative import time (ms)", ["module", "phase", "cumulative", "own"])
    for item in imports["top_modules_by_cumulative"]:
        indented = "  " * item["depth"] + item["module"]
        top.add(indented, item["phase"], ms(item["cumulative_ms"]), ms(item["self_ms"]))
    return [cold, detail, batch_table, packages, top]
