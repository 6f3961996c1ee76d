"""Graph versions with a member on a SageMaker endpoint (the inference server as the endpoint, boto3's
real sagemaker-runtime client; a recorded SageMaker Runtime for throttling): the graph answers through
the endpoint without a hop of its own, is local only while every member is, and a throttled member is
the graph's 429 with Retry-After, naming the step."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import wiring
from aimass.contracts.graph import ComposeRequest, Ensemble
from aimass.graph import compose_version
from gpu_endpoints.process import Running
from tests.integration.test_sagemaker_routing import (
    MODEL,
    client,
    endpoint,
    instances,
    on_endpoint,
    throttling,
    use_runtime,
)

__all__ = ["client", "endpoint", "throttling"]  # the fixtures, shared with test_sagemaker_routing


def ensemble_with(version: int) -> int:
    """An ensemble of the Lambda's v1 and `version`, registered as the next version."""
    spec = Ensemble(kind="ensemble", members=[f"{MODEL}@1", f"{MODEL}@{version}"])
    return compose_version(wiring.registry(), "aimass-test", MODEL, ComposeRequest(graph=spec), "t").version


def test_a_graph_with_an_endpoint_member_answers_and_is_never_local(
    client: TestClient, endpoint: Running, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an ensemble of the Lambda's v1 and the same model on the endpoint
    use_runtime(monkeypatch, endpoint.url)
    graph = ensemble_with(on_endpoint(demos[MODEL]))
    body = {"instances": instances(demos[MODEL], 5)}
    # When it predicts
    answer = client.post(f"/v1/models/{MODEL}/versions/{graph}:predict?detail=steps", json=body)
    plain = client.post(f"/v1/models/{MODEL}/versions/1:predict", json=body)
    # Then it answers as the model does, its endpoint step named with its backend
    assert answer.status_code == 200, answer.text
    assert [p["label"] for p in answer.json()["predictions"]] == [
        p["label"] for p in plain.json()["predictions"]
    ]
    assert answer.json()["steps"][1]["model"]["backend"] == "sagemaker:bc-endpoint"
    # and, waiting on the endpoint, it is not answered from the process alone; v1 is
    store = wiring.serving().store
    assert store.local(MODEL, version=1) and not store.local(MODEL, version=graph)


def test_a_throttled_endpoint_member_is_the_graphs_429_with_retry_after_naming_the_step(
    client: TestClient, throttling: str, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(monkeypatch, throttling, sagemaker_max_attempts="1", sagemaker_retry_after_s="7")
    member = on_endpoint(demos[MODEL])
    graph = ensemble_with(member)

    answer = client.post(
        f"/v1/models/{MODEL}/versions/{graph}:predict", json={"instances": instances(demos[MODEL], 1)}
    )

    assert answer.status_code == 429, answer.text
    assert answer.headers["Retry-After"] == "7"
    error = answer.json()["error"]
    assert error["code"] == "backend_throttled"
    assert error["message"].startswith(
        f"step {MODEL}@{member} ({MODEL}@{member}) failed: endpoint bc-endpoint"
    )


def test_a_graph_is_not_ready_while_an_endpoint_members_circuit_is_open(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given an ensemble of the Lambda's v1 and a version on the endpoint, made the champion
    graph = ensemble_with(on_endpoint(demos[MODEL]))
    assert client.put(f"/v1/models/{MODEL}/aliases/champion", json={"version": graph}).status_code == 200
    # It is ready, and Triton's V2 metadata calls it an ensemble
    assert client.get(f"/v1/models/{MODEL}").json()["ready"] is True
    assert client.get(f"/v2/models/{MODEL}/versions/{graph}/ready").json()["ready"] is True
    assert client.get(f"/v2/models/{MODEL}/versions/{graph}").json()["platform"] == "ensemble"
    assert client.get(f"/v2/models/{MODEL}/versions/1").json()["platform"] == "onnxruntime_onnx"

    # When the endpoint's circuit opens
    wiring.breakers().of("bc-endpoint").trip("test: the endpoint is down")

    # Then the graph is not ready, by KServe V1's model record or by V2; its Lambda member still is
    assert client.get(f"/v1/models/{MODEL}").json()["ready"] is False
    assert client.get(f"/v2/models/{MODEL}/versions/{graph}/ready").json()["ready"] is False
    assert client.get(f"/v2/models/{MODEL}/versions/1/ready").json()["ready"] is True
