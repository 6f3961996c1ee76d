"""`python -m bench [online http cold-start guards anomaly batch gpu-server imports rules load traffic
shadow privacy observers monitor compression capacity restore restore-layers restore-hooks graph
  explain restore-refresh] [--quick]`: run the benchmarks,
print tables, write JSON.

All of them run by default (a few minutes on 2 cores). --quick cuts the iterations for a smoke run;
its figures are not for RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from bench import (
    anomaly,
    batch,
    capacity,
    cold_start,
    compression,
    explain,
    gpu_server,
    graph,
    guards,
    http_server,
    imports,
    load,
    monitor,
    observers,
    online,
    privacy,
    refresh,
    restore,
    rules,
    shadow,
    traffic,
)
from bench.environment import REPO, describe
from bench.harness import local_aws
from bench.report import Table, console, write_json, write_markdown

TITLES = {
    "online": "1. Warm predict handler, in-process",
    "http": "2. HTTP against the local server",
    "cold-start": "3. Cold start of the predict function (and of the batch function)",
    "guards": "4. Data-quality checks, anomaly scores and rules per instance",
    "anomaly": "5. Anomaly score: clean rows vs injected outliers",
    "batch": "6. S3 drop-to-predict: rows per second and memory by file size",
    "gpu-server": "7. SageMaker inference server: front-end processes, payloads, batching on vs off",
    "imports": "8. Import time of each function's handler",
    "rules": "9. Rules by size: compile, run, memory",
    "load": "10. The local server under load: 64 clients against one, capture on",
    "traffic": "11. What a traffic policy adds to a warm prediction",
    "shadow": "12. What a 10 % shadow adds to a warm prediction, also slow or failing",
    "privacy": "13. Masking personal features in a captured line",
    "observers": "14. What the request observers (metrics) add to a warm prediction",
    "monitor": "15. Monitor runs: captured rows per second, memory, false drift and detection rates",
    "compression": "16. Compression: int8 and float16 copies of the digits demos vs the originals",
    "capacity": "17. Capacity plans for the demos: measured costs, the cheapest option",
    "restore": "18. A SnapStart restore: the first request of a fork of an initialised process",
    "restore-layers": "18b. A SnapStart restore, diagnostic: the first request's cost layer by layer",
    "restore-hooks": "18c. A SnapStart restore, diagnostic: the after-restore hook's ways, in turn",
    "graph": "19. A graph version: a 2-member ensemble vs its members' own predicts and floors",
    "explain": "20. :explain per instance at the default sample count, with the predict floor",
    # Last: the models it registers would be in the snapshots of the restore benchmarks.
    "restore-refresh": "21. A SnapStart restore's registry reads: the held summaries together vs one each",
}
TABLES = {
    "online": online.tables,
    "http": http_server.tables,
    "cold-start": cold_start.tables,
    "guards": guards.tables,
    "anomaly": anomaly.tables,
    "batch": batch.tables,
    "gpu-server": gpu_server.tables,
    "imports": imports.tables,
    "rules": rules.tables,
    "load": load.tables,
    "traffic": traffic.tables,
    "shadow": shadow.tables,
    "privacy": privacy.tables,
    "observers": observers.tables,
    "monitor": monitor.tables,
    "compression": compression.tables,
    "capacity": capacity.tables,
    "restore": restore.tables,
    "restore-layers": restore.layers_tables,
    "restore-hooks": restore.hooks_tables,
    "graph": graph.tables,
    "explain": explain.tables,
    "restore-refresh": refresh.tables,
}
# The benchmarks that run without the embedded AWS (which then is not started).
WITHOUT_STACK = {"gpu-server", "imports", "rules", "load", "privacy", "compression", "capacity"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "only", nargs="*", metavar="BENCHMARK", help=f"any of {', '.join(TITLES)} (default: all)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1/10 of the iterations, 2 cold-start and import repeats"
    )
    parser.add_argument(
        "--tree",
        type=Path,
        action="append",
        help="cold-start and imports: measure the functions and package of this checkout (e.g. an "
        "earlier commit's `git archive`) instead of this one's; several are measured in turns",
    )
    args = parser.parse_args()
    args.trees = [tree.resolve() for tree in args.tree or [REPO]]
    for tree in args.trees:
        if not (tree / "functions").is_dir() or not (tree / "layers" / "core" / "aimass").is_dir():
            parser.error(f"{tree} has no functions/ and layers/core/aimass/: not an aimass checkout")
    args.only = [name.replace("_", "-") for name in args.only]  # gpu_server as well as gpu-server
    unknown = sorted(set(args.only) - set(TITLES))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(TITLES)}")
    if len(args.trees) > 1 and not set(args.only or TITLES) <= {"imports", "cold-start"}:
        parser.error("several --tree are for the imports and cold-start benchmarks alone")
    return args


# The benchmarks that take the scale alone.
SCALED = {
    "online": online.run,
    "http": http_server.run,
    "guards": guards.run,
    "gpu-server": gpu_server.run,
    "rules": rules.run,
    "load": load.run,
    "traffic": traffic.run,
    "shadow": shadow.run,
    "privacy": privacy.run,
    "observers": observers.run,
    "compression": compression.run,
    "capacity": capacity.run,
    "graph": graph.run,
    "explain": explain.run,
    "restore-refresh": refresh.run,
}


def measure(name: str, stack: Any, quick: bool, trees: list[Path]) -> dict[str, Any]:
    if name in SCALED:
        return SCALED[name](0.1 if quick else 1.0)
    if name == "anomaly":
        return anomaly.run()
    if name == "batch":
        return batch.run(stack, quick)
    if name == "monitor":
        return monitor.run(stack, quick)
    if name == "imports":
        return imports.run(trees, 2 if quick else imports.REPEATS)
    if name == "restore":
        return restore.run(stack, trees[0], 2 if quick else restore.FORKS)
    if name == "restore-layers":
        return restore.layers(stack, trees[0], 2 if quick else restore.FORKS)
    if name == "restore-hooks":
        return restore.hooks(stack, trees[0], 2 if quick else restore.FORKS)
    if len(trees) > 1:
        return cold_start.compare(stack, trees, 2 if quick else cold_start.COMPARE_REPEATS)
    return cold_start.run(stack, trees[0], 2 if quick else cold_start.REPEATS)


def main() -> None:
    args = parse_args()
    # `make bench` runs `.venv/bin/python -m bench` with no arguments.
    command = " ".join(["python -m bench", *sys.argv[1:]])
    environment = describe(command)
    console.print(
        f"[bold]aimass benchmarks[/bold] {environment['date']} · {environment['cpu_model']} · "
        f"{environment['nproc']} CPUs · Python {environment['python']} · "
        f"onnxruntime {environment['packages']['onnxruntime']} · {environment['git']}"
    )
    sections: list[tuple[str, list[Table]]] = []
    selected = args.only or list(TITLES)
    # One embedded AWS for the whole run: the in-process handler and the cold-start processes use it.
    stack_needed = not set(selected) <= WITHOUT_STACK
    # numpy's BLAS on one thread in this process, as template.yaml sets it for the functions
    # (OPENBLAS_NUM_THREADS, which the function processes the benchmarks start have: bench.harness):
    # numpy was imported before the variable could be set here.
    with (
        threadpool_limits(limits=1, user_api="blas"),
        local_aws() if stack_needed else contextlib.nullcontext() as stack,
    ):
        for name in selected:
            console.rule(TITLES[name])
            result = measure(name, stack, args.quick, args.trees)
            payload = {
                "benchmark": name,
                "quick": args.quick,
                "environment": environment,
                "trees": [str(tree) for tree in args.trees],
                **result,
            }
            path = write_json(name, {**payload, "loadavg_after": os.getloadavg()})
            tables = TABLES[name](result)
            for table in tables:
                table.print()
            console.print(f"[dim]wrote {path}[/dim]")
            sections.append((TITLES[name], tables))
    preamble = (
        f"Machine: {environment['cpu_model']}, {environment['nproc']} CPUs, Python {environment['python']}, "
        f"onnxruntime {environment['packages']['onnxruntime']}; {environment['date']}; "
        f"commit {environment['git']}; `{command}`."
    )
    console.print(f"[dim]wrote {write_markdown('summary', sections, preamble)}[/dim]")


if __name__ == "__main__":
    main()
