"""A version on an endpoint that stops answering (a real inference server, frozen with SIGSTOP),
through the API: each request is bounded by the client's deadline and falls back; the endpoint's
circuit breaker opens after the settings' failures in a row, and then requests fall back without
calling it and the version is not ready; after the cool-down one probe closes it again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import wiring
from aimass.api.app import create_app
from aimass.registration import set_alias
from gpu_endpoints.process import Running
from tests.integration.test_sagemaker_routing import (
    MODEL,
    PREDICT,
    instances,
    on_endpoint,
    serving_endpoint,
    use_runtime,
)

# Far larger than any answer here: a deadline, not a timing.
DEADLINE_S = 60


@pytest.fixture
def endpoint(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Iterator[Running]:
    with serving_endpoint(tmp_path_factory.mktemp("endpoint"), demos[MODEL].model) as server:
        try:
            yield server
        finally:
            os.kill(server.pid, signal.SIGCONT)  # stopped or not, it must be able to exit


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    answer = call()
    return answer, time.perf_counter() - start


def test_a_frozen_endpoint_opens_its_breaker_and_requests_fall_back_without_waiting(
    client: TestClient, endpoint: Running, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(
        monkeypatch,
        endpoint.url,
        sagemaker_max_attempts="1",
        sagemaker_read_timeout_s="2",
        sagemaker_breaker_failures="2",
        sagemaker_breaker_cooldown_s="1",
    )
    version = on_endpoint(demos[MODEL])
    set_alias(wiring.registry(), MODEL, "champion", version, "t")
    set_alias(wiring.registry(), MODEL, "fallback", 1, "t")
    body = {"instances": instances(demos[MODEL], 2)}
    ready = f"/v2/models/{MODEL}/ready"
    healthy, normal = timed(lambda: client.post(PREDICT, json=body))
    ready_before = (client.get(ready).json()["ready"], client.get(f"/v1/models/{MODEL}").json()["ready"])

    os.kill(endpoint.pid, signal.SIGSTOP)
    (first, waited), (second, _) = (timed(lambda: client.post(PREDICT, json=body)) for _ in range(2))
    ready_while_open = (client.get(ready).json()["ready"], client.get(f"/v1/models/{MODEL}").json()["ready"])
    open_answer, at_once = timed(lambda: client.post(PREDICT, json=body))
    os.kill(endpoint.pid, signal.SIGCONT)
    time.sleep(1.0)  # the cool-down: the next request is the probe
    probed = client.post(PREDICT, json=body)

    assert healthy.status_code == 200 and healthy.json()["model"]["version"] == version
    assert ready_before == (True, True)
    for fell_back in (first, second, open_answer):
        assert fell_back.status_code == 200, fell_back.text
        assert fell_back.json()["model"]["version"] == 1
        assert fell_back.json()["fallback"]["from"]["version"] == version
        assert fell_back.json()["fallback"]["reason"] == "backend_unavailable"
    assert "did not answer: ReadTimeoutError" in first.json()["fallback"]["message"]
    assert waited < DEADLINE_S  # bounded by the client's deadline: one attempt of 2 s
    assert "circuit is open" in open_answer.json()["fallback"]["message"]
    # Open: no call, no wait for the endpoint's timeout; within a generous factor of a normal answer.
    assert at_once < waited / 4 and at_once < max(20 * normal, 0.5)
    assert ready_while_open == (False, False)
    assert probed.status_code == 200, probed.text
    assert probed.json()["model"]["version"] == version and "fallback" not in probed.json()
    assert client.get(ready).json()["ready"] is True
