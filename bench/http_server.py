"""Benchmark 2: predictions over HTTP against the local server (`aimass serve`), one keep-alive client,
next to two peers serving the same models from the same request bodies: a minimal FastAPI + ONNX
Runtime server (bench.peers.fastapi_onnx, the app's venv) and BentoML 1.4 (bench.peers.bento_service,
in .venv-bento, left out with the reason when that venv is absent).

Each server is started in its own process, the way a user starts it, and is driven sequentially:
latency is a full round trip over loopback, throughput is one client's. The servers' requests are
interleaved in blocks, so drift on the machine hits them alike.
"""

from __future__ import annotations

import contextlib
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
from bench.harness import REPO, STATE_DIR, demo, demo_model, demo_rows
from bench.online import floor_call
from bench.report import Table, rate, ratio, us
from bench.stats import Summary, measure_interleaved
from gpu_endpoints.process import free_port

CASES = (("breast-cancer", 1), ("digits", 1))
BENTO = REPO / ".venv-bento" / "bin" / "bentoml"
ITERATIONS, WARMUP = 2000, 200
# Starting includes the moto server and registering the demos (training them on a first run).
START_TIMEOUT_S = 180


def server_env(capture: bool = False) -> dict[str, str]:
    """This process's environment less its own embedded AWS's settings, which the server must not reuse."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMASS_", "MOTO_", "AWS_"))}
    # Data capture off unless asked for, as in the in-process benchmarks (bench.harness.FUNCTION_ENV
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


def peer_models(folder: Path) -> Path:
    """The demo models as files, with their feature names, for the peers (bench.peers)."""
    models = {}
    for name, _ in CASES:
        path = folder / f"{name}.onnx"
        path.write_bytes(demo_model(name))
        features = demo(name).enrichment.features or []
        models[name] = {
            "file": str(path),
            "features": [f if isinstance(f, str) else f.name for f in features],
        }
    models_file = folder / "models.json"
    models_file.write_text(json.dumps(models))
    return models_file


@contextmanager
def peer_server(command: list[str], health: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A peer server on a free port (`{port}` in the command); yields its base URL once `health` answers."""
    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in command],
            cwd=REPO,
            env={**server_env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, process, log, health)
            yield base
        finally:
            stop(process)


def wait_healthy(base: str, process: subprocess.Popen[bytes], log: Any, health: str = "/health") -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{log.read()[-2000:]}")
        try:
            if httpx.get(f"{base}{health}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{process.args} did not answer {base}{health} within {START_TIMEOUT_S} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # what Ctrl-C does: uvicorn shuts down, the stack stops
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_case(clients: dict[str, httpx.Client], model: str, count: int, scale: float) -> dict[str, Any]:
    """`clients`: aimass's first, then the peers', by server name."""
    rows = demo_rows(model, count)
    path = f"/v1/models/{model}:predict"
    body = json.dumps(rows.body).encode()  # encoded once: the client's own cost is not the service's
    headers = {"content-type": "application/json"}

    def request(server: str, client: httpx.Client) -> Any:
        def call() -> httpx.Response:
            response = client.post(path, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{server} {model}: {response.status_code} {response.text[:300]}")
            return response

        return call

    aimass = clients["aimass"]

    def health() -> httpx.Response:
        return aimass.get("/health")

    calls = {name: request(name, client) for name, client in clients.items()}
    for call in calls.values():
        call()  # a server's first request for this model loads it; not part of the warm figures
    # GET /health does no work: its round trip is what HTTP, uvicorn and the client cost by themselves.
    summaries = measure_interleaved(
        {"floor": floor_call(model, rows.tensor), "health": health, **calls},
        max(50, int(ITERATIONS * scale)),
        WARMUP,
    )
    floor, served = summaries["floor"], summaries["aimass"]
    return {
        "case": f"{model} x{count}",
        "model": model,
        "rows": count,
        "floor": floor.as_dict(),
        "health": summaries["health"].as_dict(),
        "http": served.as_dict(),
        "peers": {name: summaries[name].as_dict() for name in clients if name != "aimass"},
        "overhead_p50_us": served.p50_us - floor.p50_us,
        "ratio_p50": served.p50_us / floor.p50_us,
    }


PEERS = {
    "fastapi+onnxruntime": "minimal FastAPI + ONNX Runtime (bench.peers.fastapi_onnx, uvicorn, 1 process)",
    "bentoml": "BentoML 1.4 (bench.peers.bento_service, 1 worker, .venv-bento)",
}


def run(scale: float = 1.0) -> dict[str, Any]:
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="aimass-bench-peers-") as folder:
        models = peer_models(Path(folder))
        bases = {"aimass": stack.enter_context(local_server())}
        fastapi_peer = [sys.executable, "-m", "bench.peers.fastapi_onnx", str(models), "{port}"]
        bases["fastapi+onnxruntime"] = stack.enter_context(peer_server(fastapi_peer, "/health"))
        left_out = {}
        if BENTO.exists():
            bento = [str(BENTO), "serve", "bench.peers.bento_service:Models", "--port", "{port}"]
            bento_env = {"AIMASS_PEER_MODELS": str(models), "BENTOML_DO_NOT_TRACK": "true"}
            bases["bentoml"] = stack.enter_context(peer_server(bento, "/readyz", bento_env))
        else:
            left_out["bentoml"] = f"{BENTO.parent.parent.name} is absent: `make bench` makes it"
        clients = {
            name: stack.enter_context(httpx.Client(base_url=base, timeout=30)) for name, base in bases.items()
        }
        return {
            "server": "aimass serve (uvicorn, 1 process)",
            "peers": {name: PEERS[name] for name in clients if name != "aimass"},
            "peers_left_out": left_out,
            "cases": [run_case(clients, m, n, scale) for m, n in CASES],
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
    peers = Table(
        "HTTP predict p50 against the peers, same run, same bodies (µs)",
        [
            "case",
            "aimass p50",
            *[f"{name} p50" for name in result.get("peers", {})],
            *[f"aimass / {name}" for name in result.get("peers", {})],
        ],
        note="; ".join(f"{name}: {text}" for name, text in result.get("peers", {}).items())
        + "".join(f". Left out: {name}, {why}" for name, why in result.get("peers_left_out", {}).items())
        + ". A ratio under 1.00x: aimass answers faster.",
    )
    for case in result["cases"]:
        aimass = Summary(**case["http"]).p50_us
        others = [Summary(**case["peers"][name]).p50_us for name in result.get("peers", {})]
        peers.add(case["case"], us(aimass), *[us(p) for p in others], *[ratio(aimass / p) for p in others])
    return [table, peers]
