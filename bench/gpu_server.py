"""Benchmark 7: the SageMaker inference server (gpu_endpoints): front-end processes, payloads, batching.

What runs: `python -m gpu_endpoints.server` in child processes, as the container's `serve` runs it,
all started at once on the heavy demo `digits-cnn` (gpu_endpoints.demo_networks: convolutions and
two 2,048-wide dense layers, about 12 M weights), with its default batching (32 rows, 5 ms) and its
default provider (TensorRT, CUDA, or the CPU here), in several shapes:
- `1 process`: the single-process server (`AIMASS_GPU_FRONTENDS=0`, the default);
- `N front ends`: N front-end processes feeding one model process (`AIMASS_GPU_FRONTENDS=N`).

Each request is one 8x8 image, in one of three payloads: JSON V1 `{"instances": [...]}`, V2 with the
binary tensor extension (binary outputs too), or a `.npy` body answered in `.npy`. Batching off is
the same server with `X-Amzn-SageMaker-Custom-Attributes: batching=off` on every request.

Clients: `client processes` processes (spawned once), each with its share of the connections, each
connection a closed loop (its next request as soon as its previous one is answered) on a bare
HTTP/1.1 client over asyncio, its requests built once: the clients cost little, and as processes
they are not the limit of one Python process. Each measurement runs a warm-up, then `duration` s
counted; the servers and the cases alternate, round by round, so a shared machine's drift falls on
all of them. The server's CPU per request is the CPU time of its whole process tree (main process,
front ends, model process; /proc) over the counted window, divided by its requests.

In the same run: the floor (the raw ONNX Runtime session on the server's provider at batch 1, 32
and 512, in this process), the provider and the device (the CPU model, or the GPU's name from
nvidia-smi).

Targets (issue 19, judged only on a GPU machine of the kind the issue names: one H200, 16 cores):
>= 35,000 req/s at concurrency 256, and batching >= 3x unbatched at concurrency 32. On a CPU machine
the same run reports, and shows whether the front ends scale with cores (req/s at 1 and 2 front ends).

`python -m bench gpu-server [--quick]`, or `python -m bench.gpu_server [--quick] [--frontends 0,1,2,8]
[--clients 8]` on a machine without the local stack's packages (a GPU machine).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.report import Table, ms, rate, ratio
from bench.stats import percentile
from gpu_endpoints.process import running

# The heavy demo (the targets are on it), and the light one: on a CPU the heavy one keeps the
# cores busy with the model itself, while the light one costs what a GPU costs the heavy one (next to
# nothing), so that the front ends are what is measured.
MODEL, LIGHT = "digits-cnn", "digits-linear"
MODELS = (MODEL, LIGHT)
START_TIMEOUT_S = 180
TARGET = "X-Amzn-SageMaker-Target-Model"
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
BINARY_HEADER = "Inference-Header-Content-Length"
# Counted seconds per measurement (times the scale, at least MIN_DURATION_S), after a warm-up.
DURATION_S, MIN_DURATION_S, WARMUP_S = 2.0, 0.5, 0.3
ROUNDS = 2
TARGET_RPS, TARGET_RPS_CONCURRENCY = 35_000, 256
TARGET_SPEEDUP, TARGET_SPEEDUP_CONCURRENCY = 3.0, 32
FLOOR_BATCHES = (1, 32, 512)
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@dataclass(frozen=True)
class Case:
    model: str
    payload: str  # json | v2-binary | npy
    concurrency: int
    batching: bool = True

    @property
    def label(self) -> str:
        return f"{self.model}, {self.payload} x{self.concurrency}" + (
            "" if self.batching else ", batching off"
        )


CASES = tuple(
    case
    for model in MODELS
    for case in (
        Case(model, "json", 32, False),
        Case(model, "json", 32),
        Case(model, "json", 256),
        Case(model, "v2-binary", 256),
        Case(model, "npy", 256),
    )
)


def default_frontends(cores: int) -> list[int]:
    """The single process, 1 and 2 front ends, and half the cores' worth where there are more."""
    return sorted({0, 1, 2, max(2, cores // 2)})


def label(frontends: int) -> str:
    return "1 process" if frontends == 0 else f"{frontends} front end{'s' if frontends > 1 else ''}"


# Requests on the wire --------------------------------------------------------------------------


def request_bytes(case: Case, row: np.ndarray) -> bytes:
    """One POST /invocations as it goes on the wire (built once: the client's cost is not the server's)."""
    headers = ["POST /invocations HTTP/1.1", "Host: 127.0.0.1", f"{TARGET}: {case.model}"]
    image = np.ascontiguousarray(row[None], dtype=np.float32)
    if case.payload == "json":
        body = json.dumps({"instances": image.tolist()}).encode()
        headers.append("Content-Type: application/json")
    elif case.payload == "v2-binary":
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": list(image.shape),
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": image.nbytes},
                    }
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        body = header + image.tobytes()
        headers += ["Content-Type: application/octet-stream", f"{BINARY_HEADER}: {len(header)}"]
    else:
        buffer = _npy(image)
        body = buffer
        headers += ["Content-Type: application/x-npy", "Accept: application/x-npy"]
    attributes = ["outputs=probabilities"] if case.payload == "npy" else []
    if not case.batching:
        attributes.append("batching=off")
    if attributes:
        headers.append(f"{ATTRIBUTES}: {'; '.join(attributes)}")
    headers.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# The client processes --------------------------------------------------------------------------


@dataclass
class Samples:
    latencies_ns: list[int] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    # The client processes' own CPU over the counted window: whether they could have been the limit.
    client_cpu_s: float = 0.0


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, int]:
    """One request and its response on a keep-alive connection: the status and X-Aimass-Batch-Size."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length, batch = 0, 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"x-aimass-batch-size":
            batch = int(value)
    body = await reader.readexactly(length)
    status = int(lines[0].split()[1])
    if status != 200:
        raise RuntimeError(f"{status} {body[:300]!r}")
    return status, batch


async def _clients(
    address: tuple[str, int],
    requests: list[bytes],
    connections: int,
    start: float,
    counted: float,
    end: float,
) -> Samples:
    samples = Samples()
    clock = time.perf_counter_ns

    async def loop(offset: int) -> None:
        reader, writer = await asyncio.open_connection(*address)
        index = offset
        try:
            while time.time() < start:
                await asyncio.sleep(0.005)
            while (now := time.time()) < end:
                began = clock()
                _, batch = await _exchange(reader, writer, requests[index % len(requests)])
                took = clock() - began
                index += 1
                if now >= counted:
                    samples.latencies_ns.append(took)
                    samples.batch_sizes.append(batch)
        finally:
            writer.close()

    async def mark() -> float:
        await asyncio.sleep(max(0.0, counted - time.time()))
        return time.process_time()

    marking = asyncio.create_task(mark())
    await asyncio.gather(*[loop(i) for i in range(connections)])
    samples.client_cpu_s = time.process_time() - await marking
    return samples


def client_process(
    address: tuple[str, int],
    requests: list[bytes],
    connections: int,
    start: float,
    counted: float,
    end: float,
) -> Samples:
    """One client process's share (run in the pool): closed-loop connections, requests answered in
    [counted, end) recorded."""
    try:
        import uvloop

        return uvloop.run(_clients(address, requests, connections, start, counted, end))
    except ImportError:
        return asyncio.run(_clients(address, requests, connections, start, counted, end))


# The server's CPU ------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    queue += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return found


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of the process `pid` and its descendants alive now."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for process in _descendants(pid):
        try:
            with open(f"/proc/{process}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


# Measuring -------------------------------------------------------------------------------------


@dataclass
class Server:
    frontends: int
    url: str
    pid: int
    # The model process, when there are front ends: its share of the CPU is the next limit.
    engine_pid: int | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)


def measure(
    pool: ProcessPoolExecutor,
    clients: int,
    server: Server,
    case: Case,
    requests: list[bytes],
    duration: float,
) -> dict[str, Any]:
    connections = [
        case.concurrency // clients + (1 if i < case.concurrency % clients else 0) for i in range(clients)
    ]
    start = time.time() + 0.3  # every client process connected by then
    counted, end = start + WARMUP_S, start + WARMUP_S + duration
    futures = [
        pool.submit(client_process, server.address, requests, n, start, counted, end)
        for n in connections
        if n
    ]
    time.sleep(max(0.0, counted - time.time()))
    cpu_before = tree_cpu_s(server.pid)
    engine_before = tree_cpu_s(server.engine_pid) if server.engine_pid else 0.0
    time.sleep(max(0.0, end - time.time()))
    cpu_after = tree_cpu_s(server.pid)
    engine_after = tree_cpu_s(server.engine_pid) if server.engine_pid else 0.0
    samples = Samples()
    for future in futures:
        got = future.result()
        samples.latencies_ns += got.latencies_ns
        samples.batch_sizes += got.batch_sizes
        samples.client_cpu_s += got.client_cpu_s
    return {
        "samples": samples,
        "duration_s": duration,
        "cpu_s": cpu_after - cpu_before,
        "engine_cpu_s": engine_after - engine_before,
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(ns for run in runs for ns in run["samples"].latencies_ns)
    batches = [b for run in runs for b in run["samples"].batch_sizes]
    seconds = sum(run["duration_s"] for run in runs)
    cpu = sum(run["cpu_s"] for run in runs)
    engine_cpu = sum(run["engine_cpu_s"] for run in runs)
    client_cpu = sum(run["samples"].client_cpu_s for run in runs)
    count = len(latencies)
    return {
        "requests": count,
        "requests_per_s": count / seconds,
        "p50_ms": percentile(latencies, 50) / 1e6 if count else float("nan"),
        "p99_ms": percentile(latencies, 99) / 1e6 if count else float("nan"),
        "mean_batch": float(np.mean(batches)) if batches else 0.0,
        "server_cpu_s": cpu,
        "server_cpu_us_per_request": cpu / count * 1e6 if count else float("nan"),
        "server_cores_busy": cpu / seconds,
        "model_process_cores_busy": engine_cpu / seconds,
        "client_cpu_us_per_request": client_cpu / count * 1e6 if count else float("nan"),
        "client_cores_busy": client_cpu / seconds,
    }


def floor(model_path: Path, rows: np.ndarray, scale: float) -> dict[str, Any]:
    """The raw session on the server's provider: ms per call and rows/s at each batch size."""
    import onnxruntime as ort

    from gpu_endpoints.providers import choose

    chain = choose(ort.get_available_providers())
    session = ort.InferenceSession(str(model_path), providers=chain)
    taken = session.get_providers()
    result: dict[str, Any] = {"providers": taken, "batches": {}}
    for batch in FLOOR_BATCHES:
        feed = {"image": np.ascontiguousarray(np.resize(rows, (batch, 8, 8)), dtype=np.float32)}
        for _ in range(3):
            session.run(None, feed)
        calls = max(5, int((200 if batch < 512 else 40) * scale))
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - began)
        per_call = statistics.median(times)
        result["batches"][str(batch)] = {"ms_per_call": per_call * 1e3, "rows_per_s": batch / per_call}
    return result


def device(providers: list[str]) -> str:
    if providers and providers[0] in GPU_PROVIDERS:
        try:
            names = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            return f"GPU: {names}"
        except (OSError, subprocess.SubprocessError):
            return "GPU (nvidia-smi did not answer)"
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu}, {len(os.sched_getaffinity(0))} cores"


@contextmanager
def servers(model_dir: Path, frontends: list[int]) -> Iterator[list[Server]]:
    with ExitStack() as stack:
        started = []
        for count in frontends:
            process = stack.enter_context(
                running(model_dir, {"AIMASS_GPU_FRONTENDS": str(count)}, timeout_s=START_TIMEOUT_S)
            )
            engine = None
            if count:
                engine = httpx.get(f"{process.url}/stats", timeout=10).json()["frontends"]["engine_pid"]
            started.append(Server(count, process.url, process.pid, engine))
        yield started


def run(scale: float = 1.0, frontends: list[int] | None = None, clients: int | None = None) -> dict[str, Any]:
    from gpu_endpoints.demo_networks import digits_cnn, digits_linear
    from gpu_endpoints.settings import Settings

    cores = len(os.sched_getaffinity(0))
    frontends = frontends or default_frontends(cores)
    clients = clients or max(2, cores // 2)
    duration = max(MIN_DURATION_S, DURATION_S * scale)
    defaults = Settings().batching
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="aimass-gpu-bench-") as folder:
        model_dir = Path(folder)
        for network in (digits_cnn(), digits_linear()):
            network.write(model_dir / network.name)
        rows = np.ascontiguousarray(network.holdout, dtype=np.float32)  # the same held-out digits
        requests = {case: [request_bytes(case, row) for row in rows[:64]] for case in CASES}
        spawn = get_context("spawn")
        with ProcessPoolExecutor(clients, mp_context=spawn) as pool, servers(model_dir, frontends) as started:
            stats = httpx.get(f"{started[0].url}/stats", timeout=10).json()
            runs: dict[tuple[int, Case], list[dict[str, Any]]] = {}
            for server in started:  # warm-up: the client processes, connections, first batches
                for case in CASES:
                    measure(pool, clients, server, case, requests[case], MIN_DURATION_S / 2)
            for _ in range(ROUNDS):
                for case in CASES:
                    for server in started:
                        got = measure(pool, clients, server, case, requests[case], duration)
                        runs.setdefault((server.frontends, case), []).append(got)
        floors = {model: floor(model_dir / model / "model.onnx", rows, scale) for model in MODELS}
    load_after = os.getloadavg()
    providers = stats["models"][MODEL]["providers"]
    cases = [
        {
            "frontends": count,
            "server": label(count),
            **case.__dict__,
            "label": case.label,
            **summary(runs[count, case]),
        }
        for case in CASES
        for count in frontends
    ]
    return {
        "server": "python -m gpu_endpoints.server, AIMASS_GPU_FRONTENDS=0 (one process) or N",
        "models": list(MODELS),
        "providers": providers,
        "device": device(providers),
        "onnxruntime": stats["onnxruntime"],
        "cores": cores,
        "client_processes": clients,
        "duration_s": duration,
        "rounds": ROUNDS,
        "load_average": {"before": list(load_before), "after": list(load_after)},
        "max_batch_size": defaults.max_batch_size,
        "max_queue_delay_ms": defaults.max_queue_delay_ms,
        "floor": floors,
        "cases": cases,
        "targets": targets(cases, providers),
    }


def _case(
    cases: list[dict[str, Any]],
    model: str,
    frontends: int,
    payload: str,
    concurrency: int,
    batching: bool = True,
) -> dict[str, Any] | None:
    wanted = {
        "model": model,
        "frontends": frontends,
        "payload": payload,
        "concurrency": concurrency,
        "batching": batching,
    }
    return next((c for c in cases if all(c[k] == v for k, v in wanted.items())), None)


def targets(cases: list[dict[str, Any]], providers: list[str]) -> dict[str, Any]:
    """The issue's targets on the heavy model's best server shape, and each model's scaling from 1 to 2
    front ends."""
    judged = bool(providers) and providers[0] in GPU_PROVIDERS
    best = max(
        (
            c
            for c in cases
            if c["model"] == MODEL and c["concurrency"] == TARGET_RPS_CONCURRENCY and c["batching"]
        ),
        key=lambda c: c["requests_per_s"],
    )
    speedups = {}
    for count in sorted({c["frontends"] for c in cases}):
        on = _case(cases, MODEL, count, "json", TARGET_SPEEDUP_CONCURRENCY)
        off = _case(cases, MODEL, count, "json", TARGET_SPEEDUP_CONCURRENCY, batching=False)
        if on and off:
            speedups[label(count)] = on["requests_per_s"] / off["requests_per_s"]
    scaling: dict[str, dict[str, float | None]] = {}
    for model in MODELS:
        for payload in ("json", "v2-binary", "npy"):
            one = _case(cases, model, 1, payload, TARGET_RPS_CONCURRENCY)
            two = _case(cases, model, 2, payload, TARGET_RPS_CONCURRENCY)
            single = _case(cases, model, 0, payload, TARGET_RPS_CONCURRENCY)
            if one and two:
                scaling[f"{model}, {payload}"] = {
                    "two_over_one": two["requests_per_s"] / one["requests_per_s"],
                    "two_over_single_process": two["requests_per_s"] / single["requests_per_s"]
                    if single
                    else None,
                }
    best_speedup = max(speedups.values(), default=0.0)
    return {
        "judged": judged,
        "why_not_judged": None
        if judged
        else f"the server ran on {providers[0] if providers else 'nothing'}, not a GPU",
        "best_rps": {
            "server": best["server"],
            "payload": best["payload"],
            "requests_per_s": best["requests_per_s"],
        },
        "rps_met": best["requests_per_s"] >= TARGET_RPS,
        "batching_speedup": speedups,
        "speedup_met": best_speedup >= TARGET_SPEEDUP,
        "frontend_scaling": scaling,
    }


def tables(result: dict[str, Any]) -> list[Table]:
    provider = result["providers"][0]
    load = result["load_average"]
    table = Table(
        f"Inference server on {provider} ({result['device']}): one image per request, "
        f"{result['client_processes']} client processes; latency in ms",
        [
            "model, payload, concurrency",
            "server",
            "req/s",
            "p50",
            "p99",
            "mean batch",
            "server CPU µs/req",
            "server cores busy",
            "of which model process",
            "client cores busy",
        ],
        note=f"Closed-loop connections spread over {result['client_processes']} client processes; "
        f"{result['rounds']} rounds of {result['duration_s']:g} s per row, servers and cases alternating. "
        "Server CPU: user + system time of its process tree over the counted window, per request; "
        "cores busy: CPU seconds per second, the server's (of which its model process) and "
        "the client processes'. "
        f"Load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} after.",
    )
    for case in result["cases"]:
        table.add(
            case["label"],
            case["server"],
            rate(case["requests_per_s"]),
            ms(case["p50_ms"]),
            ms(case["p99_ms"]),
            f"{case['mean_batch']:.1f}",
            f"{case['server_cpu_us_per_request']:,.0f}",
            f"{case['server_cores_busy']:.2f}",
            f"{case['model_process_cores_busy']:.2f}" if case["frontends"] else "",
            f"{case['client_cores_busy']:.2f}",
        )
    floor_table = Table(
        "Floor: the raw ONNX Runtime session on the server's provider, in the benchmark process",
        ["model", "provider", "batch", "ms per call", "rows/s"],
    )
    for model, floor_of in result["floor"].items():
        for batch, figures in floor_of["batches"].items():
            floor_table.add(
                model,
                floor_of["providers"][0],
                batch,
                f"{figures['ms_per_call']:.3f}",
                rate(figures["rows_per_s"]),
            )
    target = result["targets"]
    verdict = Table(
        f"Targets (issue 19) on {MODEL}: >= 35,000 req/s at concurrency 256, batching >= 3x off at 32 "
        "(judged on a GPU); front-end scaling",
        ["what", "measured", "met"],
        note="" if target["judged"] else f"Not judged: {target['why_not_judged']}.",
    )
    best = target["best_rps"]
    verdict.add(
        f"req/s at {TARGET_RPS_CONCURRENCY} ({best['server']}, {best['payload']})",
        rate(best["requests_per_s"]),
        _met(target, target["rps_met"]),
    )
    for server, speedup in target["batching_speedup"].items():
        verdict.add(f"batching on / off at {TARGET_SPEEDUP_CONCURRENCY}, {server}", ratio(speedup), "")
    verdict.add("batching, best of the above", "", _met(target, target["speedup_met"]))
    for what, scaling in target["frontend_scaling"].items():
        verdict.add(
            f"2 front ends / 1 front end, {what} x{TARGET_RPS_CONCURRENCY}",
            ratio(scaling["two_over_one"] or 0.0),
            "",
        )
    return [table, floor_table, verdict]


def _met(target: dict[str, Any], met: bool) -> str:
    return ("yes" if met else "no") if target["judged"] else "not judged"


def main() -> None:
    """Standalone: `python -m bench.gpu_server [--quick]` (a GPU machine needs no local stack)."""
    import argparse
    import platform
    from datetime import UTC, datetime

    from bench.report import console, write_json

    parser = argparse.ArgumentParser(prog="python -m bench.gpu_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short measurements (a smoke run)")
    parser.add_argument(
        "--frontends", help="server shapes, e.g. 0,1,2,8 (0: one process); default 0,1,2,cores/2"
    )
    parser.add_argument("--clients", type=int, help="client processes; default cores/2, at least 2")
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
    frontends = [int(n) for n in args.frontends.split(",")] if args.frontends else None
    result = run(0.1 if args.quick else 1.0, frontends, args.clients)
    for table in tables(result):
        table.print()
    path = write_json(
        "gpu-server", {"benchmark": "gpu-server", "quick": args.quick, "environment": environment, **result}
    )
    console.print(f"[dim]wrote {path}[/dim]")


if __name__ == "__main__":
    main()
