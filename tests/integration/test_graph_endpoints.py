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
