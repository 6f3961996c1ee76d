"""Benchmark 7: the SageMaker inference server (gpu_endpoints) with and without dynamic batching.

What runs: `python -m gpu_endpoints.server` in its own process, as the container's `serve` runs it,
with its default batching settings (32 rows, 5 ms) and its default provider (TensorRT, CUDA, or the
CPU here), serving two models: `digits-cnn` (gpu_endpoints.demo_networks: convolutions and two
2,048-wide dense layers, about 12 M weights) and the light `digits` demo MLP. Each request is one
8x8 image as JSON V1 `{"instances": [...]}`, over HTTP on loopback.

Clients: `concurrency` asyncio workers in this process (a bare HTTP/1.1 client, one keep-alive
connection each), each sending its next request as soon as its previous one is answered (a closed
loop). Throughput is requests over the wall time of
the run; latency is each request's round trip. Batching off is the same server and the same model,
with `X-Amzn-SageMaker-Custom-Attributes: batching=off` on every request: each runs alone, through
the same single model instance. Off and on alternate in rounds, so the drift of a shared machine
falls on both.

The target (issue 6): batching on gives at least 3x the requests per second of batching off at
concurrency 32 on the heavy model, and batching adds no more than its delay budget to the tail
(p99 on <= p99 off + max_queue_delay_ms).

`python -m bench gpu-server [--quick]`, or `python -m bench.gpu_server [--quick]` on a machine
without the local stack's packages (a GPU machine): the provider that ran is in the output.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.environment import REPO
from bench.report import Table, ms, rate, ratio
from bench.stats import percentile
from gpu_endpoints.process import running

MODELS = ("digits-cnn", "digits")
CONCURRENCY = (1, 8, 32, 64)
# Timed requests per (model, batching, concurrency): REQUESTS_PER_CLIENT per client, at least MIN.
REQUESTS_PER_CLIENT, MIN_REQUESTS = 20, 200
ROUNDS = 2
TARGET_MODEL, TARGET_CONCURRENCY, TARGET_SPEEDUP = "digits-cnn", 32, 3.0
START_TIMEOUT_S = 180
STATE_DIR = REPO / ".aimass" / "bench" / "gpu-server"
TARGET = "X-Amzn-SageMaker-Target-Model"
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


def build_models(folder: Path) -> dict[str, np.ndarray]:
    """The model directory the server reads, and each model's request rows (held-out digits)."""
    from gpu_endpoints.demo_networks import digits_cnn

    heavy = digits_cnn()
    heavy.write(folder / "digits-cnn")
    rows = {"digits-cnn": heavy.holdout}
    try:
        from bench.harness import demo

        light = demo("digits")
        (folder / "digits").mkdir(parents=True, exist_ok=True)
        (folder / "digits" / "model.onnx").write_bytes(light.model)
        rows["digits"] = light.holdout
    except ImportError:  # no aimass here (a bare GPU machine): the heavy model alone
        pass
    return {name: np.ascontiguousarray(r, dtype=np.float32) for name, r in rows.items()}


@contextmanager
def inference_server(model_dir: Path) -> Iterator[str]:
    with running(model_dir, timeout_s=START_TIMEOUT_S) as server:
        yield server.url


@dataclass
class Samples:
    latencies_ns: list[int]
    batch_sizes: list[int]
    queue_ms: list[float]
    wall_ns: int = 0


def request_bytes(model: str, body: bytes, batching: bool) -> bytes:
    """One POST /invocations as it goes on the wire (built once: the client's cost is not the server's)."""
    lines = [
        "POST /invocations HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"{TARGET}: {model}",
    ]
    if not batching:
        lines.append(f"{ATTRIBUTES}: batching=off")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    """One request and its response on a keep-alive connection (uvicorn answers with Content-Length)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def drive(
    url: str, model: str, bodies: list[bytes], concurrency: int, count: int, batching: bool
) -> Samples:
    """`count` requests from `concurrency` closed-loop clients, each on its own keep-alive connection.

    A bare HTTP/1.1 client on asyncio streams: a general-purpose client (httpx) costs about a
    millisecond of CPU per request, which on a small machine is taken from the server measured."""
    host, port = url.removeprefix("http://").split(":")
    requests = [request_bytes(model, body, batching) for body in bodies]
    samples = Samples([], [], [])
    issued = 0
    clock = time.perf_counter_ns

    async def client_loop() -> None:
        nonlocal issued
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while issued < count:
                request = requests[issued % len(requests)]
                issued += 1
                started = clock()
                status, headers, body = await exchange(reader, writer, request)
                took = clock() - started
                if status != 200:
                    raise RuntimeError(f"{model}: {status} {body[:300]!r}")
                samples.latencies_ns.append(took)
                samples.batch_sizes.append(int(headers["x-aimass-batch-size"]))
                samples.queue_ms.append(float(headers["x-aimass-queue-ms"]))
        finally:
            writer.close()

    started = clock()
    await asyncio.gather(*[client_loop() for _ in range(concurrency)])
    samples.wall_ns = clock() - started
    return samples


def summary(samples: Samples) -> dict[str, Any]:
    ordered = sorted(samples.latencies_ns)
    queued = sorted(samples.queue_ms)
    return {
        "requests": len(ordered),
        "requests_per_s": len(ordered) / (samples.wall_ns / 1e9),
        "p50_ms": percentile(ordered, 50) / 1e6,
        "p99_ms": percentile(ordered, 99) / 1e6,
        "mean_ms": float(np.mean(ordered)) / 1e6,
        "mean_batch": float(np.mean(samples.batch_sizes)),
        "largest_batch": max(samples.batch_sizes),
        "queue_p99_ms": percentile(queued, 99),
    }


def run_case(url: str, model: str, rows: np.ndarray, concurrency: int, scale: float) -> dict[str, Any]:
    bodies = [json.dumps({"instances": [row.tolist()]}).encode() for row in rows[:64]]
    count = max(int(MIN_REQUESTS * scale), int(REQUESTS_PER_CLIENT * concurrency * scale), concurrency)
    per_round = max(concurrency, count // ROUNDS)
    merged = {mode: Samples([], [], []) for mode in (False, True)}
    for mode in (False, True):  # warm-up: connections, the model's first batches
        asyncio.run(drive(url, model, bodies, concurrency, 2 * concurrency, mode))
    for _ in range(ROUNDS):
        for mode in (False, True):
            got = asyncio.run(drive(url, model, bodies, concurrency, per_round, mode))
            total = merged[mode]
            total.latencies_ns += got.latencies_ns
            total.batch_sizes += got.batch_sizes
            total.queue_ms += got.queue_ms
            total.wall_ns += got.wall_ns
    off, on = summary(merged[False]), summary(merged[True])
    return {
        "model": model,
        "concurrency": concurrency,
        "off": off,
        "on": on,
        "speedup": on["requests_per_s"] / off["requests_per_s"],
        "p99_added_ms": on["p99_ms"] - off["p99_ms"],
    }


def run(scale: float = 1.0) -> dict[str, Any]:
    from gpu_endpoints.settings import Settings

    defaults = Settings().batching
    with tempfile.TemporaryDirectory(prefix="aimass-gpu-bench-") as folder:
        model_dir = Path(folder)
        rows = build_models(model_dir)
        with inference_server(model_dir) as url:
            stats = httpx.get(f"{url}/stats", timeout=10).json()
            cases = [
                run_case(url, model, rows[model], concurrency, scale)
                for model in MODELS
                if model in rows
                for concurrency in CONCURRENCY
            ]
            after = httpx.get(f"{url}/stats", timeout=10).json()
    providers = {name: model["providers"] for name, model in stats["models"].items()}
    target = next(
        (c for c in cases if c["model"] == TARGET_MODEL and c["concurrency"] == TARGET_CONCURRENCY), None
    )
    return {
        "server": "python -m gpu_endpoints.server (uvicorn, 1 process, 1 instance per model)",
        "providers": providers,
        "onnxruntime": stats["onnxruntime"],
        "max_batch_size": defaults.max_batch_size,
        "max_queue_delay_ms": defaults.max_queue_delay_ms,
        "cases": cases,
        "batch_sizes": {name: model["batcher"]["batch_sizes"] for name, model in after["models"].items()},
        "target": None
        if target is None
        else {
            "model": TARGET_MODEL,
            "concurrency": TARGET_CONCURRENCY,
            "speedup": target["speedup"],
            "speedup_met": target["speedup"] >= TARGET_SPEEDUP,
            "p99_added_ms": target["p99_added_ms"],
            "p99_within_delay_budget": target["p99_added_ms"] <= defaults.max_queue_delay_ms,
        },
    }


def tables(result: dict[str, Any]) -> list[Table]:
    provider = ", ".join(sorted({p[0] for p in result["providers"].values()}))
    delay = result["max_queue_delay_ms"]
    table = Table(
        f"Inference server on {provider}: one-row JSON requests, batching off vs on "
        f"(max {result['max_batch_size']} rows, {delay:g} ms delay); latency in ms",
        [
            "model, concurrency",
            "off req/s",
            "on req/s",
            "speedup",
            "off p50",
            "off p99",
            "on p50",
            "on p99",
            "p99 added",
            "mean batch",
            "queue p99",
        ],
        note="Closed-loop clients in the benchmark's process; off = the custom attribute batching=off on "
        "the same server and model. p99 added = on p99 - off p99 (the budget is the delay). queue = "
        "arrival to the start of its batch, as the server reports it (X-Aimass-Queue-Ms).",
    )
    for case in result["cases"]:
        off, on = case["off"], case["on"]
        table.add(
            f"{case['model']} x{case['concurrency']}",
            rate(off["requests_per_s"]),
            rate(on["requests_per_s"]),
            ratio(case["speedup"]),
            ms(off["p50_ms"]),
            ms(off["p99_ms"]),
            ms(on["p50_ms"]),
            ms(on["p99_ms"]),
            f"{case['p99_added_ms']:+,.1f}",
            f"{on['mean_batch']:.1f}",
            ms(on["queue_p99_ms"]),
        )
    target = result.get("target")
    if target:
        verdict = Table(
            "Target: batching on >= 3x off at concurrency 32 on the heavy model, p99 within the delay budget",
            ["model, concurrency", "speedup", "met", "p99 added (ms)", "within budget"],
        )
        verdict.add(
            f"{target['model']} x{target['concurrency']}",
            ratio(target["speedup"]),
            "yes" if target["speedup_met"] else "no",
            f"{target['p99_added_ms']:+,.1f} (budget {delay:g})",
            "yes" if target["p99_within_delay_budget"] else "no",
        )
        return [table, verdict]
    return [table]


def main() -> None:
    """Standalone: `python -m bench.gpu_server [--quick]` (a GPU machine needs no local stack)."""
    import argparse
    import platform
    from datetime import UTC, datetime

    from bench.report import console, write_json

    parser = argparse.ArgumentParser(prog="python -m bench.gpu_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1/10 of the requests (a smoke run)")
    args = parser.parse_args()
    try:
        from bench.environment import describe

        environment = describe(" ".join(["python -m bench.gpu_server", *sys.argv[1:]]))
    except Exception:  # packages of the local stack missing: record what there is
        environment = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "nproc": len(os.sched_getaffinity(0)),
        }
    result = run(0.1 if args.quick else 1.0)
    for table in tables(result):
        table.print()
    path = write_json(
        "gpu-server", {"benchmark": "gpu-server", "quick": args.quick, "environment": environment, **result}
    )
    console.print(f"[dim]wrote {path}[/dim]")


if __name__ == "__main__":
    main()
