"""Benchmark 8: how long each function's handler module takes to import, as a new execution
environment imports it.

Each run is a fresh `python -X importtime` process that imports functions/<name>/app.py by path under
the module name the runtime gives it (`app`), with the same small environment as the cold-start
children (no X-Ray daemon: the tracer is off, but its SDK is imported all the same); the functions
and the package are this checkout's, or those of the checkouts `--tree` names. The figure is the
sum of the cumulative times of the imports the module makes itself (the top level of -X importtime's
tree), which leaves out interpreter startup; the child also times the import with its own clock
(the module's own code included) and takes the CPU time it used, which other work on a shared
machine disturbs less. Functions and checkouts take turns run by run, after one discarded round
that fills the page cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cold_start import PHASE_MARK
from bench.harness import FUNCTION_ENV, function_file, layer_env
from bench.report import Table, ms
from bench.stats import median

FUNCTIONS = ("online", "registry", "batch", "pipeline")
REPEATS = 7
WEB_FRAMEWORK = ("fastapi", "starlette", "mangum")

CHILD = """
import importlib.util, json, os, sys, time
function_file, result_file = sys.argv[1:3]
import aimass
assert aimass.__file__.startswith(os.environ["PYTHONPATH"]), f"measuring {aimass.__file__}"
print("@PHASE_MARK@ import", file=sys.stderr, flush=True)
started, cpu_started = time.perf_counter(), time.process_time()
spec = importlib.util.spec_from_file_location("app", function_file)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imported, cpu_imported = time.perf_counter(), time.process_time()
with open(result_file, "w") as file:
    json.dump({
        "clock_ms": (imported - started) * 1e3,
        "cpu_ms": (cpu_imported - cpu_started) * 1e3,
        "web_framework": sorted({m.split(".")[0] for m in sys.modules} & set(@WEB_FRAMEWORK@)),
    }, file)
""".replace("@PHASE_MARK@", PHASE_MARK).replace("@WEB_FRAMEWORK@", repr(WEB_FRAMEWORK))


def child_env(tree: Path) -> dict[str, str]:
    """What a function has and needs to import: no AWS is reached while importing."""
    return {
        **layer_env(tree),
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        **FUNCTION_ENV,
    }


def importtime_ms(stderr: str) -> float:
    """The cumulative times of the top-level imports after the marker, summed (-X importtime's
    lines: `import time: self [us] | cumulative | name`, the name indented two spaces a level)."""
    total, measuring = 0, False
    for line in stderr.splitlines():
        if line.startswith(PHASE_MARK):
            measuring = True
            continue
        fields = line.removeprefix("import time:").split("|")
        if not measuring or not line.startswith("import time:") or len(fields) != 3:
            continue
        if fields[1].strip().isdigit() and not fields[2].startswith("   "):
            total += int(fields[1])
    return total / 1e3


def import_run(tree: Path, function: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aimass-bench-imports-") as scratch:
        result_file = Path(scratch) / "result.json"
        app = function_file(tree, function)
        command = [sys.executable, "-X", "importtime", "-c", CHILD, str(app), str(result_file)]
        started = time.perf_counter()
        process = subprocess.run(
            command, cwd=tree, env=child_env(tree), capture_output=True, text=True, timeout=120
        )
        wall_ms = (time.perf_counter() - started) * 1e3
        if process.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"{function}: child failed ({process.returncode}):\n{process.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(result_file.read_text())
    return {**result, "importtime_ms": importtime_ms(process.stderr), "wall_ms": wall_ms}


def run(trees: list[Path], repeats: int = REPEATS) -> dict[str, Any]:
    cases = [(tree, function) for function in FUNCTIONS for tree in trees]
    for tree, function in cases:
        import_run(tree, function)
    runs: dict[tuple[Path, str], list[dict[str, Any]]] = {case: [] for case in cases}
    for _ in range(repeats):
        for case in cases:
            runs[case].append(import_run(*case))
    keys = ("importtime_ms", "clock_ms", "cpu_ms", "wall_ms")
    measured = [
        {
            "function": function,
            "tree": str(tree),
            **{key: median([r[key] for r in results]) for key in keys},
            "web_framework": results[-1]["web_framework"],
            "runs": results,
        }
        for (tree, function), results in runs.items()
    ]
    return {"repeats": repeats, "trees": [str(tree) for tree in trees], "functions": measured}


def tables(result: dict[str, Any]) -> list[Table]:
    several = len(result["trees"]) > 1
    table = Table(
        f"Import of functions/<name>/app.py in a fresh process: medians of {result['repeats']} runs (ms)",
        ["function", *(["checkout"] if several else []), "-X importtime", "child's clock", "CPU", "imports"],
        note="Each run: `python -X importtime` importing the handler by path. -X importtime: the "
        "top-level imports' cumulative times, summed; child's clock: perf_counter around the import "
        "(the module's own code included); CPU: the process's CPU time over the same span. Imports: "
        "which of fastapi, starlette, mangum it loaded.",
    )
    for figures in result["functions"]:
        table.add(
            figures["function"],
            *([figures["tree"]] if several else []),
            ms(figures["importtime_ms"]),
            ms(figures["clock_ms"]),
            ms(figures["cpu_ms"]),
            ", ".join(figures["web_framework"]) or "none",
        )
    return [table]
