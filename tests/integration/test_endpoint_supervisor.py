"""The supervisor that keeps the local stack's emulated endpoint running (gpu_endpoints.process): a
real inference server as its child, killed and frozen with signals."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_endpoints.process import Supervisor, supervised

# Far longer than the server needs to start on a loaded machine: a deadline, not a timing.
DEADLINE_S = 120


class Heard:
    """What the supervisor told: ("down", reason) and ("up", "") in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.changed = threading.Condition()

    def down(self, reason: str) -> None:
        with self.changed:
            self.events.append(("down", reason))
            self.changed.notify_all()

    def up(self) -> None:
        with self.changed:
            self.events.append(("up", ""))
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[tuple[str, str]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.events) >= count, DEADLINE_S), self.events
            return list(self.events)

    def wait_for_up(self) -> list[tuple[str, str]]:
        with self.changed:
            assert self.changed.wait_for(lambda: ("up", "") in self.events, DEADLINE_S), self.events
            return list(self.events)


def state_of(pid: int) -> str | None:
    """The process's state letter in /proc (Z: a zombie nobody reaped), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.fixture
def watched(tmp_path: Path, demos: dict[str, Any]) -> Iterator[tuple[Supervisor, Heard, Path]]:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(demos["breast-cancer"].model)
    pid_file = tmp_path / "endpoint.pid"
    heard = Heard()
    env = {"AIMASS_GPU_INTRA_OP_THREADS": "1", "AIMASS_GPU_BATCHING": "false"}
    with supervised(
        model_dir,
        env,
        on_down=heard.down,
        on_up=heard.up,
        pid_file=pid_file,
        name="test endpoint",
        poll_s=0.2,
        ping_timeout_s=0.5,
        backoff_s=0.2,
        start_timeout_s=DEADLINE_S,
    ) as supervisor:
        yield supervisor, heard, pid_file


def test_a_killed_server_is_reaped_and_started_again_on_its_port(
    watched: tuple[Supervisor, Heard, Path],
) -> None:
    supervisor, heard, pid_file = watched
    first = int(pid_file.read_text())
    url = supervisor.url

    os.kill(first, signal.SIGKILL)
    events = heard.wait_for(2)

    assert events == [("down", f"pid {first} exited with -9"), ("up", "")]
    second = int(pid_file.read_text())
    assert second != first and supervisor.pid == second and supervisor.restarts == 1
    assert supervisor.url == url
    assert state_of(first) is None  # reaped: no zombie left
    assert state_of(second) not in (None, "Z")


def test_a_frozen_server_is_reported_down_and_up_again_once_it_answers(
    watched: tuple[Supervisor, Heard, Path],
) -> None:
    supervisor, heard, pid_file = watched
    pid = int(pid_file.read_text())

    os.kill(pid, signal.SIGSTOP)
    try:
        frozen = heard.wait_for(2)  # told again while it stays frozen
    finally:
        os.kill(pid, signal.SIGCONT)
    events = heard.wait_for_up()

    assert frozen[:2] == [
        ("down", f"pid {pid} missed 2 pings in a row"),
        ("down", f"pid {pid} missed 3 pings in a row"),
    ]
    assert events[-1] == ("up", "") and all(kind == "down" for kind, _ in events[:-1])
    assert supervisor.pid == pid and supervisor.restarts == 0  # frozen is not dead: not restarted


def test_stopping_stops_the_server_and_removes_its_pid_file(tmp_path: Path, demos: dict[str, Any]) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(demos["breast-cancer"].model)
    pid_file = tmp_path / "endpoint.pid"

    with supervised(model_dir, {"AIMASS_GPU_INTRA_OP_THREADS": "1"}, pid_file=pid_file) as supervisor:
        pid = supervisor.pid
        assert pid is not None and pid_file.read_text() == f"{pid}\n"

    assert state_of(pid) is None
    assert not pid_file.exists()
