"""The battery of bad input that once answered 500 (issue 16): each gets a 4xx with field-level
details, and nothing is written for it; an unexpected error still answers a well-formed 500 on a
connection that stays open."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from aimass import aws
from aimass.api.app import create_app
from tests.support import error_of

MODEL = "/v1/models/breast-cancer"


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_v2_tensor_with_no_rows_is_422_naming_its_shape(client: TestClient) -> None:
    body = {"inputs": [{"name": "input", "shape": [0, 30], "datatype": "FP32", "data": []}]}
    response = client.post("/v2/models/breast-cancer/infer", json=body)
    assert response.status_code == 422


def test_a_reference_named_parquet_that_is_not_parquet_is_422_naming_the_file(
    client: TestClient, demos: dict[str, Any]
) -> None:
    response = client.post(
        f"{MODEL}/versions",
        files={
            "model": ("m.onnx", demos["breast-cancer"].model),
            "reference": ("ref.parquet", b"a,b\n1,2\n"),
        },
    )
    assert response.status_code == 422


def big_ruleset(count: int) -> dict[str, Any]:
    """Schema-valid rules, each description and flag at its limit: 200 of them are 0.5 MB of JSON."""
    rule = {"description": "d" * 2000, "when": "true", "then": {"flag": "f" * 500}}
    return {"rules": [{"id": f"r{i}", **rule} for i in range(count)]}


def test_a_ruleset_larger_than_a_registry_item_is_413_naming_the_limit_and_not_stored(
    client: TestClient,
) -> None:
    response = client.put(f"{MODEL}/rules", json=big_ruleset(200))
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large" and "at most 350000" in error["message"]
    assert error["details"][0]["loc"] == ["body", "rules"]
    assert client.get(f"{MODEL}/rules").status_code == 404
    assert client.put(f"{MODEL}/rules", json=big_ruleset(20)).status_code == 200


def test_a_version_whose_metadata_is_larger_than_a_registry_item_is_413_before_a_number_is_taken(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # 30 features of 1,500 categories each: within a form field's 1 MB, over one item.
    features = [{"name": f"f{i}", "categories": [f"c{j:05d}" for j in range(1500)]} for i in range(30)]
    response = client.post(
        f"{MODEL}/versions",
        files={"model": ("m.onnx", demos["breast-cancer"].model)},
        data={"metadata": json.dumps({"features": features})},
    )
    assert response.status_code == 413 and error_of(response)["details"][0]["loc"] == ["body", "metadata"]
    pushed = client.post(f"{MODEL}/versions", files={"model": ("m.onnx", demos["breast-cancer"].model)})
    assert pushed.status_code == 201 and pushed.json()["version"] == 2


def test_a_feature_whose_min_is_above_its_max_is_422(client: TestClient, demos: dict[str, Any]) -> None:
    features = [{"name": f"f{i}", "min": 2.0, "max": 1.0} for i in range(30)]
    response = client.post(
        f"{MODEL}/versions",
        files={"model": ("m.onnx", demos["breast-cancer"].model)},
        data={"metadata": json.dumps({"features": features})},
    )
    assert response.status_code == 422
    detail = error_of(response)["details"][0]
    assert detail["loc"][-3:] == ["features", 0, "min"] and detail["type"] == "range"


@pytest.fixture
def served(registered: Any) -> Iterator[str]:
    """The app under uvicorn, as `aimass serve` runs it, on a free port of this machine."""
    import uvicorn

    from gpu_endpoints.process import free_port

    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=free_port(), log_level="critical")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def local_port(response: httpx.Response) -> int:
    """The client's end of the connection that carried a response."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]  # type: ignore[no-any-return]


def test_an_internal_error_answers_a_500_and_the_connection_serves_the_next_request(served: str) -> None:
    # A real fault: a stored version whose document is no longer JSON.
    aws.client("dynamodb").put_item(
        TableName="aimass-test",
        Item={"pk": {"S": "MODEL#breast-cancer"}, "sk": {"S": "V#00000001"}, "doc": {"S": "{broken"}},
    )
    with httpx.Client(base_url=served) as client:
        broken = client.get(f"{MODEL}/versions/1")
        assert broken.status_code == 500 and broken.json()["error"]["code"] == "internal_error"
        assert broken.headers.get("connection") != "close"
        after = client.get("/v1/models/digits")
        assert after.status_code == 200 and after.json()["name"] == "digits"
        assert local_port(after) == local_port(broken)
