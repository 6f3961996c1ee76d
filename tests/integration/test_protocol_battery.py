"""One battery of good and bad payloads against both servers that speak the protocols: the Lambda
API (V1 :predict and V2 /infer) and the SageMaker inference server (/invocations, both protocols).
Both decode with aimass.protocol, so each payload must get the same status and error code from each.
The Lambda API's V2 routes say an error in the protocol's shape, `{"error": "<message>"}`, the
details folded in (aimass.protocol.v2.error_text): the inference server's /invocations, SageMaker's
route, keeps the richer shape, whose message and details must fold into the same string."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass.api.app import create_app
from aimass.protocol import v2
from tests.conftest import mocked_aws, register_demos
from tests.support import binary_input, binary_request

TARGET = "X-Amzn-SageMaker-Target-Model"
JSON = {"content-type": "application/json"}


def image(value: Any = 0.5) -> list[list[Any]]:
    return [[value] * 8 for _ in range(8)]


def tensor(**changes: Any) -> dict[str, Any]:
    return {"name": "image", "shape": [1, 8, 8], "datatype": "FP32", "data": [0.5] * 64, **changes}


# (name, protocol, body as bytes or JSON-able, content type): the expected outcome is the same on both
# servers, whatever it is; the cases cover every kind of refusal and the answers that succeed.
V1_CASES: list[tuple[str, Any, str]] = [
    ("one image", {"instances": [image()]}, "application/json"),
    ("two images", {"instances": [image(0.1), image(0.9)]}, "application/json"),
    ("integers for a float input", {"instances": [image(1)]}, "application/json"),
    ("not JSON", b'{"instances": [', "application/json"),
    ("no instances", {}, "application/json"),
    ("empty instances", {"instances": []}, "application/json"),
    ("instances not a list", {"instances": "image"}, "application/json"),
    ("a row of the wrong shape", {"instances": [image(), image()[:7]]}, "application/json"),
    ("ragged rows", {"instances": [[[0.5] * 8] * 7 + [[0.5] * 3]]}, "application/json"),
    ("a string value", {"instances": [image("bright")]}, "application/json"),
    ("a boolean value", {"instances": [image(True)]}, "application/json"),
    ("a null value", {"instances": [image(None)]}, "application/json"),
    ("a value out of float32's range", {"instances": [image(1e39)]}, "application/json"),
    ("an object keyed by an unknown input", {"instances": [{"pixels": image()}]}, "application/json"),
    ("a body that is not JSON", b"a,b\n1,2\n", "text/csv"),
]
V2_CASES: list[tuple[str, Any, str]] = [
    ("a V2 tensor", {"inputs": [tensor()]}, "application/json"),
    ("a V2 tensor with nested data", {"inputs": [tensor(data=image())]}, "application/json"),
    (
        "a V2 request id and an output asked for",
        {"id": "r1", "inputs": [tensor()], "outputs": [{"name": "label"}]},
        "application/json",
    ),
    ("an unknown input", {"inputs": [tensor(name="pixels")]}, "application/json"),
    ("the wrong datatype", {"inputs": [tensor(datatype="INT64")]}, "application/json"),
    ("an unknown datatype", {"inputs": [tensor(datatype="FP99")]}, "application/json"),
    ("the wrong shape", {"inputs": [tensor(shape=[1, 64])]}, "application/json"),
    ("too few values for the shape", {"inputs": [tensor(data=[0.5] * 63)]}, "application/json"),
    ("a string value", {"inputs": [tensor(data=[0.5] * 63 + ["x"])]}, "application/json"),
    (
        "a tensor without data",
        {"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32"}]},
        "application/json",
    ),
    ("a shape that is not a list", {"inputs": [tensor(shape="1,8,8")]}, "application/json"),
    ("a negative dimension", {"inputs": [tensor(shape=[-1, 8, 8])]}, "application/json"),
    ("a dimension of zero, no rows", {"inputs": [tensor(shape=[0, 8, 8], data=[])]}, "application/json"),
    ("a dimension of zero in a row", {"inputs": [tensor(shape=[1, 0, 8], data=[])]}, "application/json"),
    ("no inputs", {"inputs": []}, "application/json"),
    ("the same input twice", {"inputs": [tensor(), tensor()]}, "application/json"),
    ("an unknown output", {"inputs": [tensor()], "outputs": [{"name": "logits"}]}, "application/json"),
    ("an id that is not a string", {"id": 7, "inputs": [tensor()]}, "application/json"),
]

IMAGE = struct.pack("<64f", *[0.5] * 64)


def binary_tensor(size: int = 256, **changes: Any) -> dict[str, Any]:
    """The digits image as a binary input of `size` bytes, with `changes` to its fields."""
    return {**binary_input("image", [1, 8, 8], "FP32", size), **changes}


# (name, JSON header, raw data after it): V2 with the binary tensor data extension.
BINARY_CASES: list[tuple[str, dict[str, Any], bytes]] = [
    ("a binary tensor, JSON outputs", {"inputs": [binary_tensor()]}, IMAGE),
    (
        "a binary tensor, binary outputs",
        {"inputs": [binary_tensor()], "parameters": {"binary_data_output": True}},
        IMAGE,
    ),
    (
        "one output asked for in binary",
        {"inputs": [tensor()], "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]},
        b"",
    ),
    ("too few bytes for the shape", {"inputs": [binary_tensor(252)]}, IMAGE[:252]),
    ("bytes left over", {"inputs": [binary_tensor()]}, IMAGE + b"\0"),
    ("a size past the end of the body", {"inputs": [binary_tensor(512)]}, IMAGE),
    ("the wrong datatype", {"inputs": [binary_tensor(datatype="FP64", shape=[1, 4, 8])]}, IMAGE),
    ("binary data and JSON data", {"inputs": [binary_tensor(data=[0.5] * 64)]}, IMAGE),
]


@pytest.fixture(scope="module")
def inference_server(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Iterator[TestClient]:
    from gpu_endpoints.server import create_app as create_server
    from gpu_endpoints.settings import Settings

    root: Path = tmp_path_factory.mktemp("battery-models")
    (root / "digits").mkdir()
    (root / "digits" / "model.onnx").write_bytes(demos["digits"].model)
    settings = Settings.from_env({"AIMASS_GPU_INTRA_OP_THREADS": "1"}, model_dir=root)
    with TestClient(create_server(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def lambda_api(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Iterator[TestClient]:
    # Read-only requests: one registry and one app for the whole battery.
    with mocked_aws(tmp_path_factory.mktemp("battery-cache")):
        register_demos(demos)
        with TestClient(create_app(["online"]), raise_server_exceptions=False) as client:
            yield client


def send(client: TestClient, path: str, body: Any, content_type: str, headers: dict[str, str]) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={"content-type": content_type, **headers})


def outcome(response: Any) -> tuple[int, str | None]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    if response.status_code == 200:
        return 200, None
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    return response.status_code, error["code"]


def v2_outcome(response: Any) -> tuple[int, str | None]:
    """The status and the message of a V2 route's answer, whose error is one string."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    if response.status_code == 200:
        return 200, None
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    return response.status_code, body["error"]


def folded(response: Any) -> tuple[int, str | None]:
    """The inference server's rich error as the V2 routes say it."""
    status, _ = outcome(response)
    if status == 200:
        return 200, None
    error = response.json()["error"]
    return status, v2.error_text(error["message"], error["details"])


@pytest.mark.parametrize(("case", "body", "content_type"), V1_CASES, ids=[c[0] for c in V1_CASES])
def test_a_v1_payload_gets_the_same_answer_from_both_servers(
    case: str, body: Any, content_type: str, lambda_api: TestClient, inference_server: TestClient
) -> None:
    from_lambda = send(lambda_api, "/v1/models/digits:predict", body, content_type, {})
    from_endpoint = send(inference_server, "/invocations", body, content_type, {TARGET: "digits"})

    assert outcome(from_lambda) == outcome(from_endpoint), (from_lambda.text, from_endpoint.text)
    assert from_lambda.status_code < 500


@pytest.mark.parametrize(("case", "body", "content_type"), V2_CASES, ids=[c[0] for c in V2_CASES])
def test_a_v2_payload_gets_the_same_answer_from_both_servers(
    case: str, body: Any, content_type: str, lambda_api: TestClient, inference_server: TestClient
) -> None:
    from_lambda = send(lambda_api, "/v2/models/digits/infer", body, content_type, {})
    from_endpoint = send(inference_server, "/invocations", body, content_type, {TARGET: "digits"})

    assert v2_outcome(from_lambda) == folded(from_endpoint), (from_lambda.text, from_endpoint.text)
    assert from_lambda.status_code < 500
    if from_lambda.status_code == 200:
        lambda_outputs = {o["name"]: o for o in from_lambda.json()["outputs"]}
        endpoint_outputs = {o["name"]: o for o in from_endpoint.json()["outputs"]}
        assert lambda_outputs.keys() == endpoint_outputs.keys()
        for name, output in lambda_outputs.items():
            assert (output["datatype"], output["shape"]) == (
                endpoint_outputs[name]["datatype"],
                endpoint_outputs[name]["shape"],
            )


def send_binary(
    client: TestClient, path: str, header: dict[str, Any], data: bytes, headers: dict[str, str]
) -> Any:
    content, binary_headers = binary_request(header, data)
    return client.post(path, content=content, headers={**binary_headers, **headers})


def binary_outcome(response: Any) -> Any:
    """A binary V2 answer: its status, and each output's datatype, shape and binary size."""
    size = response.headers["inference-header-content-length"]
    assert response.headers["content-type"] == "application/octet-stream"
    header = json.loads(response.content[: int(size)])
    outputs = {
        o["name"]: (o["datatype"], o["shape"], o.get("parameters", {}).get("binary_data_size"))
        for o in header["outputs"]
    }
    assert int(size) + sum(n or 0 for _, _, n in outputs.values()) == len(response.content)
    return response.status_code, outputs


@pytest.mark.parametrize(("case", "header", "data"), BINARY_CASES, ids=[c[0] for c in BINARY_CASES])
def test_a_v2_binary_payload_gets_the_same_answer_from_both_servers(
    case: str, header: dict[str, Any], data: bytes, lambda_api: TestClient, inference_server: TestClient
) -> None:
    from_lambda = send_binary(lambda_api, "/v2/models/digits/infer", header, data, {})
    from_endpoint = send_binary(inference_server, "/invocations", header, data, {TARGET: "digits"})

    assert from_lambda.status_code < 500
    if from_lambda.status_code != 200 or "inference-header-content-length" not in from_lambda.headers:
        assert v2_outcome(from_lambda) == folded(from_endpoint), (from_lambda.text, from_endpoint.text)
    else:
        assert binary_outcome(from_lambda) == binary_outcome(from_endpoint)


def test_the_battery_covers_answers_and_every_kind_of_refusal(
    lambda_api: TestClient,
) -> None:
    seen = {
        outcome(send(lambda_api, "/v1/models/digits:predict", body, content_type, {}))
        for _, body, content_type in V1_CASES
    }
    seen_v2 = {
        v2_outcome(send(lambda_api, "/v2/models/digits/infer", body, content_type, {}))[0]
        for _, body, content_type in V2_CASES
    }
    assert seen_v2 == {200, 422}
    assert seen == {
        (200, None),
        (400, "bad_json"),
        (415, "unsupported_media_type"),
        (422, "validation_error"),
    }
