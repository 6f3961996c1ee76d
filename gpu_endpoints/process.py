"""The server in a child process, started as the container's `serve` starts it, on a free loopback
port: what the tests and the benchmark run against (`running`), and the local stack's emulated
endpoint, kept running by a supervisor (`supervised`)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

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


def _ping(url: str, timeout_s: float = 2) -> int | None:
    """/ping's status, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout_s) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as answer:
        return int(answer.code)
    except OSError:
        return None


def _environment(port: int, env: dict[str, str] | None) -> dict[str, str]:
    """This process's environment less its AIMASS_GPU_* and SAGEMAKER_* settings, plus `env`."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIMASS_GPU_", "SAGEMAKER_"))},
        "SAGEMAKER_BIND_TO_PORT": str(port),
        **(env or {}),
    }


def _spawn(model_dir: Path, environment: dict[str, str], log_file: IO[str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "gpu_endpoints.server",
        "--model-dir",
        str(model_dir),
        "--host",
        "127.0.0.1",
    ]
    return subprocess.Popen(
        command, cwd=PACKAGE_ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT
    )


def _wait_ready(
    process: subprocess.Popen[bytes],
    server: Running,
    ready: bool,
    timeout_s: float,
    stopping: threading.Event | None = None,
) -> None:
    """Return once /ping answers 200 (`ready`), or answers at all; raise, with the server's log, if it
    exits or does not answer in `timeout_s`, or `stopping` is set meanwhile."""
    deadline = time.monotonic() + timeout_s
    while (status := _ping(server.url)) is None or (ready and status != 200):
        if stopping is not None and stopping.is_set():
            raise RuntimeError("stopped while the server was starting")
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server did not answer /ping in {timeout_s} s:\n{server.log_tail()}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server as its container is stopped (SIGINT), killing it if it does not exit; reaped."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running(
    model_dir: Path, env: dict[str, str] | None = None, ready: bool = True, timeout_s: float = 120
) -> Iterator[Running]:
    """The server on `model_dir`, with this process's environment less its AIMASS_GPU_* and
    SAGEMAKER_* settings, plus `env`. Yields once /ping answers 200 (`ready`), or answers at all;
    stops it on exit. A server that exits or does not answer in `timeout_s` raises, with its log."""
    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as log_file:
        process = _spawn(model_dir, _environment(port, env), log_file)
        server = Running(f"http://127.0.0.1:{port}", log_file, process.pid)
        try:
            _wait_ready(process, server, ready, timeout_s)
            yield server
        finally:
            stop(process)


class Supervisor:
    """Keeps the server on `model_dir` running on one port, as an emulated endpoint must: a thread
    reaps it when it exits and starts it again, after a back-off that doubles while starts keep
    failing; it also pings it, and a server that misses `misses` pings in a row (frozen, hung) is
    reported down until it answers again. `on_down(reason)` hears of it at once and again at each
    missed ping or failed start while it stays down, `on_up()` when it is back; each start writes
    the server's pid to `pid_file`, where a user (or a fault-injection test) finds it."""

    def __init__(
        self,
        model_dir: Path,
        env: dict[str, str] | None = None,
        *,
        on_down: Callable[[str], None] = lambda _: None,
        on_up: Callable[[], None] = lambda: None,
        pid_file: Path | None = None,
        name: str = "the inference server",
        poll_s: float = 1.0,
        ping_timeout_s: float = 2.0,
        misses: int = 2,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.model_dir = model_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = _environment(self.port, env)
        self.on_down, self.on_up = on_down, on_up
        self.pid_file = pid_file
        self.name = name
        self.poll_s, self.ping_timeout_s, self.misses = poll_s, ping_timeout_s, misses
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.start_timeout_s = start_timeout_s
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[str] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"supervisor {name}", daemon=True)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the server and wait until it is ready (raises as `running` does), then watch it."""
        self._start()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._process is not None:
            stop(self._process)
        if self._log is not None:
            self._log.close()
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)

    def _start(self) -> None:
        if self._log is not None:
            self._log.close()
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - the server's, until the next start
        self._process = process = _spawn(self.model_dir, self.environment, self._log)
        try:
            _wait_ready(process, Running(self.url, self._log), True, self.start_timeout_s, self._stopping)
        except BaseException:
            stop(process)
            raise
        if self.pid_file is not None:
            self.pid_file.write_text(f"{process.pid}\n")
        log.info("%s: pid %d, at %s", self.name, process.pid, self.url)

    def _watch(self) -> None:
        missed = 0
        while not self._stopping.wait(self.poll_s):
            assert self._process is not None
            code = self._process.poll()  # reaps it, when it exited
            if code is not None:
                reason = f"pid {self._process.pid} exited with {code}"
                log.warning("%s: %s; starting it again", self.name, reason)
                self.on_down(reason)
                if self._restart():
                    missed = 0
                    self.on_up()
                continue
            if _ping(self.url, self.ping_timeout_s) == 200:
                if missed >= self.misses:
                    log.warning("%s answers /ping again", self.name)
                    self.on_up()
                missed = 0
                continue
            missed += 1
            if missed >= self.misses:  # told again while it stays hung, logged once
                reason = f"pid {self._process.pid} missed {missed} pings in a row"
                if missed == self.misses:
                    log.warning("%s: %s", self.name, reason)
                self.on_down(reason)

    def _restart(self) -> bool:
        """Start the server again until it is ready, waiting longer after each failed start; False
        when stopped meanwhile."""
        delay = self.backoff_s
        while not self._stopping.wait(delay):
            try:
                self._start()
            except (RuntimeError, TimeoutError, OSError) as error:
                delay = min(delay * 2, self.max_backoff_s)
                log.warning("%s did not start again (next try in %.3g s): %s", self.name, delay, error)
                self.on_down(f"it did not start again: {error}")
                continue
            self.restarts += 1
            log.warning("%s started again: pid %d (restart %d)", self.name, self.pid, self.restarts)
            return True
        return False


@contextmanager
def supervised(model_dir: Path, env: dict[str, str] | None = None, **options: Any) -> Iterator[Supervisor]:
    """A started Supervisor of the server on `model_dir` (its options: Supervisor's); stopped on exit."""
    supervisor = Supervisor(model_dir, env, **options)
    supervisor.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
