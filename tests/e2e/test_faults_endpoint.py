"""Faults injected into the local stack's emulated SageMaker endpoint (`aimass serve`), as a user
could: its pid from the file the stack names, then SIGSTOP/SIGCONT (hung) and SIGKILL (died).

While it hangs, requests for `digits-cnn` wait for the client's deadline and fall back to its
`fallback` version, and nothing else waits with them (/health and breast-cancer keep their latency);
its breaker opens, its readiness says not ready, and its requests fall back at once. Killed, the
endpoint is reaped and started again, and its model is ready again."""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimass.local import demo
from tests.e2e.conftest import Stack, running_with, serving
from tests.support import REPO

pytestmark = pytest.mark.e2e

MODEL = demo.GPU_DEMO
# What the stack is started with: one endpoint call takes at most 2 x 2 s and its backoff.
ENDPOINT_SETTINGS = {
    "AIMASS_SAGEMAKER_MAX_ATTEMPTS": "2",
    "AIMASS_SAGEMAKER_READ_TIMEOUT_S": "2",
    "AIMASS_SAGEMAKER_DEADLINE_S": "12",
}
DEADLINE_S = 12.0
# Far longer than the stack needs to notice, restart or answer: deadlines, not timings.
WAIT_S = 120.0
# Generous: latency with the endpoint hung, against the same requests before.
FACTOR = 50


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, trained_demos: Path) -> Iterator[Stack]:
    """`aimass serve` as tests/e2e/conftest.py starts it, with the endpoint settings above."""
    state_dir = tmp_path_factory.mktemp("faults-endpoint")
    with serving(state_dir, ENDPOINT_SETTINGS, trained_demos) as (started, _):
        yield started
    assert not running_with(state_dir / "endpoint"), "the emulated endpoint outlived aimass serve"


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {WAIT_S} s"
        time.sleep(0.1)


def pid_file(stack: Stack) -> Path:
    """Where `aimass serve` says the endpoint's pid is."""
    printed = (stack.state_dir / "serve.log").read_text()
    line = next(line for line in printed.splitlines() if "emulated endpoint's pid in" in line)
    return Path(line.split("emulated endpoint's pid in ")[1].split(" (")[0])


def endpoint_pid(stack: Stack) -> int:
    return int(pid_file(stack).read_text())


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    answer = call()
    return answer, time.perf_counter() - start


def median_s(call: Callable[[], httpx.Response], times: int = 5) -> float:
    durations = []
    for _ in range(times):
        answer, took = timed(call)
        assert answer.status_code == 200, answer.text
        durations.append(took)
    return statistics.median(durations)


def ready(stack: Stack) -> tuple[bool, bool]:
    """`digits-cnn`'s readiness, as V2 and as `GET /v1/models/{name}` say it."""
    v2 = httpx.get(f"{stack.url}/v2/models/{MODEL}/ready", timeout=WAIT_S).json()["ready"]
    v1 = httpx.get(f"{stack.url}/v1/models/{MODEL}", timeout=WAIT_S).json()["ready"]
    return v2, v1


def requests(stack: Stack) -> dict[str, Callable[[], httpx.Response]]:
    digits = demo.load_or_train("digits", stack.state_dir).holdout[:2].tolist()
    breast_cancer = json.loads((REPO / "events" / "bodies" / "breast_cancer_predict.json").read_text())
    return {
        "health": lambda: httpx.get(f"{stack.url}/health", timeout=WAIT_S),
        "breast-cancer": lambda: httpx.post(
            f"{stack.url}/v1/models/breast-cancer:predict", json=breast_cancer, timeout=WAIT_S
        ),
        MODEL: lambda: httpx.post(
            f"{stack.url}/v1/models/{MODEL}:predict", json={"instances": digits}, timeout=WAIT_S
        ),
    }


def fell_back(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == {"name": MODEL, "version": 1, "backend": "lambda"}
    assert body["fallback"]["from"]["version"] == 2
    assert body["fallback"]["reason"] == "backend_unavailable"
    return dict(body["fallback"])


def from_endpoint(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"]["version"] == 2 and "fallback" not in answer.json()


def test_a_hung_endpoint_stalls_nothing_else_and_its_model_falls_back_then_recovers(stack: Stack) -> None:
    call = requests(stack)
    from_endpoint(call[MODEL]())
    before = {name: median_s(call[name]) for name in ("health", "breast-cancer")}
    assert ready(stack) == (True, True)
    pid = endpoint_pid(stack)

    os.kill(pid, signal.SIGSTOP)
    try:
        in_flight: list[tuple[httpx.Response, float]] = []
        threads = [threading.Thread(target=lambda: in_flight.append(timed(call[MODEL]))) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # sent, and waiting on the endpoint
        during = {name: median_s(call[name]) for name in ("health", "breast-cancer")}
        still_waiting = sum(thread.is_alive() for thread in threads)
        for thread in threads:
            thread.join()
        until(lambda: ready(stack) == (False, False), "digits-cnn is not ready")
        (open_answer, at_once), breast_cancer_ready = (
            timed(call[MODEL]),
            httpx.get(f"{stack.url}/v2/models/breast-cancer/ready").json()["ready"],
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    until(lambda: ready(stack) == (True, True), "digits-cnn is ready again")
    recovered = call[MODEL]()

    assert still_waiting == 3, "the latencies were not measured while digits-cnn requests waited"
    for name, took in during.items():
        assert took < FACTOR * before[name], (
            f"{name}: {took:.3f} s with the endpoint hung, {before[name]:.3f} s before"
        )
    waited = [took for _, took in in_flight]
    for answer, took in in_flight:
        assert "did not answer" in fell_back(answer)["message"]
        assert took < DEADLINE_S
    assert "circuit is open" in fell_back(open_answer)["message"]
    assert at_once < min(waited) / 4  # open: the endpoint is not called, its timeout not waited for
    assert breast_cancer_ready is True
    from_endpoint(recovered)
    printed = (stack.state_dir / "serve.log").read_text()
    assert "endpoint aimass-local-gpu: circuit open" in printed
    assert "endpoint aimass-local-gpu answered: circuit closed" in printed


def test_a_killed_endpoint_is_reaped_and_started_again_and_its_model_is_ready_again(stack: Stack) -> None:
    call = requests(stack)
    pid = endpoint_pid(stack)
    from_endpoint(call[MODEL]())

    os.kill(pid, signal.SIGKILL)
    until(lambda: ready(stack) == (False, False), "digits-cnn is not ready")
    while_down = call[MODEL]()
    until(lambda: endpoint_pid(stack) != pid and ready(stack) == (True, True), "the endpoint is back")
    restarted = endpoint_pid(stack)
    after = call[MODEL]()

    assert "circuit is open" in fell_back(while_down)["message"]
    from_endpoint(after)
    assert not Path(f"/proc/{pid}").exists(), "the killed endpoint was not reaped"
    assert Path(f"/proc/{restarted}").exists()
    printed = (stack.state_dir / "serve.log").read_text()
    assert f"emulated endpoint aimass-local-gpu: pid {pid} exited with -9; starting it again" in printed
    assert f"emulated endpoint aimass-local-gpu started again: pid {restarted} (restart 1)" in printed
