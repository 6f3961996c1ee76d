"""Benchmark 2: predictions over HTTP against the local server (`aimass serve`), one keep-alive client.

The server is started the way a user starts it, in its own process with its own embedded AWS, and is
driven sequentially: latency is a full round trip over loopback, throughput is one client's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from aimass.local.stack import FAKE_CREDENTIALS
from bench.harness import REPO, STATE_DIR, demo_rows
from bench.online import floor_call
from bench.report import Table, rate, ratio, us
from bench.stats import Summary, measure_interleaved
from gpu_endpoints.process import free_port

CASES = (("breast-cancer", 1), ("digits", 1))
ITERATIONS, WARMUP = 2000, 200
# Starting includes the moto server and registering the demos (training them on a first run).
START_TIMEOUT_S = 180


def server_env(capture: bool = False) -> dict[str, str]:
    """This process's environment less its own embedded AWS's settings, which the server must not reuse."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMASS_", "MOTO_", "AWS_"))}
    # Data capture off unless asked for, as in the in-process benchmarks (bench.harness.POWERTOOLS_ENV
    # says why).
    return {**env, **FAKE_CREDENTIALS, "AIMASS_CAPTURE_ENABLED": str(capture).lower()}


@contextmanager
def local_server(capture: bool = False, aws_port: int | None = None) -> Iterator[str]:
    """`aimass serve` on free ports; yields its base URL once /health answers, stops it (Ctrl-C) after."""
    port, aws_port = free_port(), aws_port or free_port()
    cli = Path(sys.executable).with_name("aimass")
    command = [str(cli), "serve", "--port", str(port), "--aws-port", str(aws_port)]
    command += ["--state-dir", str(STATE_DIR)]
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=server_env(capture), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, process, log)
            yield base
        finally:
            stop(process)


def wait_healthy(base: str, process: subprocess.Popen[bytes], log: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"aimass serve exited with {process.returncode}:\n{log.read()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"aimass serve did not answer {base}/health within {START_TIMEOUT_S} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # what Ctrl-C does: uvicorn shuts down, the stack stops
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_case(client: httpx.Client, model: str, count: int, scale: float) -> dict[str, Any]:
    rows = demo_rows(model, count)
    path = f"/v1/models/{model}:predict"
    body = json.dumps(rows.body).encode()  # encoded once: the client's own cost is not the service's
    headers = {"content-type": "application/json"}

    def request() -> httpx.Response:
        response = client.post(path, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{model}: {response.status_code} {response.text[:300]}")
        return response

    def health() -> httpx.Response:
        return client.get("/health")

    request()  # the server's first request for this model loads it; not part of the warm figures
    # GET /health does no work: its round trip is what HTTP, uvicorn and the client cost by themselves.
    calls = {"floor": floor_call(model, rows.tensor), "health": health, "http": request}
    summaries = measure_interleaved(calls, max(50, int(ITERATIONS * scale)), WARMUP)
    floor, served = summaries["floor"], summaries["http"]
    return {
        "case": f"{model} x{count}",
        "model": model,
        "rows": count,
        "floor": floor.as_dict(),
        "health": summaries["health"].as_dict(),
        "http": served.as_dict(),
        "overhead_p50_us": served.p50_us - floor.p50_us,
        "ratio_p50": served.p50_us / floor.p50_us,
    }


def run(scale: float = 1.0) -> dict[str, Any]:
    with local_server() as base, httpx.Client(base_url=base, timeout=30) as client:
        return {
            "server": "aimass serve (uvicorn, 1 process)",
            "cases": [run_case(client, m, n, scale) for m, n in CASES],
        }


def tables(result: dict[str, Any]) -> list[Table]:
    table = Table(
        "HTTP round trip to `aimass serve`, one sequential keep-alive client, vs ONNX Runtime floor (µs)",
        [
            "case",
            "floor p50",
            "GET /health p50",
            "predict p50",
            "predict p99",
            "predict mean",
            "overhead p50",
            "ratio p50",
            "predict req/s",
        ],
        note="Client and server share the machine's cores; the floor runs in the client process. "
        "GET /health is the bare HTTP round trip (client, uvicorn, app) with no work in it.",
    )
    for case in result["cases"]:
        floor, health, served = (Summary(**case[k]) for k in ("floor", "health", "http"))
        table.add(
            case["case"],
            us(floor.p50_us),
            us(health.p50_us),
            us(served.p50_us),
            us(served.p99_us),
            us(served.mean_us),
            us(case["overhead_p50_us"]),
            ratio(case["ratio_p50"]),
            rate(served.calls_per_s),
        )
    return [table]
