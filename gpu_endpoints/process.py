"""The server in a child process, started as the container's `serve` starts it, on a free loopback
port: what the tests and the benchmark run against (and, later, the local stack's emulated endpoint)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# The folder that holds the package: `python -m gpu_endpoints.server` runs from there.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    url: str
    log: IO[str]
    pid: int = 0

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]


def _ping(url: str) -> int | None:
    """/ping's status, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as answer:
        return int(answer.code)
    except OSError:
        return None


@contextmanager
def running(
    model_dir: Path, env: dict[str, str] | None = None, ready: bool = True, timeout_s: float = 120
) -> Iterator[Running]:
    """The server on `model_dir`, with this process's environment less its AIMASS_GPU_* and
    SAGEMAKER_* settings, plus `env`. Yields once /ping answers 200 (`ready`), or answers at all;
    stops it on exit. A server that exits or does not answer in `timeout_s` raises, with its log."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIMASS_GPU_", "SAGEMAKER_"))},
        "SAGEMAKER_BIND_TO_PORT": str(port),
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "gpu_endpoints.server",
        "--model-dir",
        str(model_dir),
        "--host",
        "127.0.0.1",
    ]
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            command, cwd=PACKAGE_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        server = Running(url, log, process.pid)
        try:
            deadline = time.monotonic() + timeout_s
            while (status := _ping(url)) is None or (ready and status != 200):
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}:\n{server.log_tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the server did not answer /ping in {timeout_s} s:\n{server.log_tail()}"
                    )
                time.sleep(0.2)
            yield server
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
