"""The inference server's direct path: `POST /invocations` is answered straight from ASGI
(server.InferenceApp), every other route through Starlette. Each request here is sent both ways, to
`/invocations` naming the model by X-Amzn-SageMaker-Target-Model and to Starlette's
`/models/{name}/invoke`, and the two answers must be the same: status, body and headers."""

from __future__ import annotations

import asyncio
import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.requests import ClientDisconnect
from starlette.testclient import TestClient

from aimass.protocol.errors import PayloadTooLarge
from gpu_endpoints.server import asgi_chunks, create_app, read_body
from gpu_endpoints.settings import Settings

TARGET = "X-Amzn-SageMaker-Target-Model"
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_ID = "X-Amzn-SageMaker-Inference-Id"
BINARY = "Inference-Header-Content-Length"
# Timings differ from one answer to the next whichever path takes it.
TIMED = {"x-aimass-queue-ms"}
IMAGE = [[0.5] * 8 for _ in range(8)]


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def v2_binary() -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1, 8, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 256},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + struct.pack("<64f", *[0.5] * 64), {BINARY: str(len(header))}


V2_BINARY, V2_BINARY_HEADERS = v2_binary()
JSON_TYPE = {"content-type": "application/json"}

# (case, body, headers): the same request both ways.
CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("V1 JSON", json.dumps({"instances": [IMAGE, IMAGE]}).encode(), JSON_TYPE),
    (
        "V2 JSON with an id",
        json.dumps(
            {"id": "r1", "inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32", "data": IMAGE}]}
        ).encode(),
        JSON_TYPE,
    ),
    ("V2 binary", V2_BINARY, {"content-type": "application/octet-stream", **V2_BINARY_HEADERS}),
    (
        ".npy answered in .npz",
        npy(np.full((1, 8, 8), 0.5, np.float32)),
        {"content-type": "application/x-npy"},
    ),
    (
        ".npy, one output named",
        npy(np.full((3, 8, 8), 0.5, np.float32)),
        {"content-type": "application/x-npy", ATTRIBUTES: "outputs=label; trace=7", INFERENCE_ID: "call-1"},
    ),
    ("batching off", json.dumps([IMAGE]).encode(), {**JSON_TYPE, ATTRIBUTES: "batching=off"}),
    ("not JSON", b"{not json", JSON_TYPE),
    ("the wrong shape", json.dumps({"instances": [[0.5] * 63]}).encode(), JSON_TYPE),
    ("an unsupported type", b"a,b\n1,2\n", {"content-type": "text/csv"}),
    ("an answer it cannot give", json.dumps([IMAGE]).encode(), {**JSON_TYPE, "accept": "text/csv"}),
    ("a bad custom attribute", json.dumps([IMAGE]).encode(), {**JSON_TYPE, ATTRIBUTES: "batching=maybe"}),
    ("over the size limit", b"[" + b"0.5," * 400 + b"0.5]", JSON_TYPE),
    ("a Content-Length that is not a number", b"[]", {**JSON_TYPE, "content-length": "many"}),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Iterator[TestClient]:
    root: Path = tmp_path_factory.mktemp("direct-models")
    (root / "digits").mkdir()
    (root / "digits" / "model.onnx").write_bytes(demos["digits"].model)
    settings = Settings.from_env(
        {"AIMASS_GPU_INTRA_OP_THREADS": "1", "AIMASS_GPU_MAX_BODY_MB": str(1024 / 2**20)}, model_dir=root
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        test_client.get("/ping")
        yield test_client


def answered(response: Any) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k not in TIMED}
    return response.status_code, response.content, headers


@pytest.mark.parametrize(("case", "body", "headers"), CASES, ids=[c[0] for c in CASES])
def test_an_invocation_is_answered_alike_by_the_direct_path_and_by_starlette(
    client: TestClient, case: str, body: bytes, headers: dict[str, str]
) -> None:
    direct = client.post("/invocations", content=body, headers={TARGET: "digits", **headers})
    routed = client.post("/models/digits/invoke", content=body, headers=headers)
    assert answered(direct) == answered(routed)
    assert direct.headers["content-length"] == str(len(direct.content))
    if direct.status_code == 200:
        assert direct.headers["x-aimass-model"] == "digits"
        assert direct.headers[ATTRIBUTES.lower()].endswith(
            f"model-sha256={direct.headers[ATTRIBUTES.lower()][-64:]}"
        )
    else:
        assert direct.status_code < 500 and direct.json()["error"]["message"]


def test_an_unknown_model_is_a_404_both_ways(client: TestClient) -> None:
    direct = client.post("/invocations", content=b"[]", headers={TARGET: "nope", **JSON_TYPE})
    routed = client.post("/models/nope/invoke", content=b"[]", headers=JSON_TYPE)
    assert direct.status_code == routed.status_code == 404
    assert direct.json() == routed.json()


def test_the_direct_path_counts_its_answers_in_the_metrics(client: TestClient) -> None:
    def served() -> float:
        text = client.get("/metrics").text
        line = next(
            (
                row
                for row in text.splitlines()
                if row.startswith('aimass_inference_requests_total{model="digits",status="200"}')
            ),
            "x 0",
        )
        return float(line.rsplit(" ", 1)[1])

    before = served()
    client.post("/invocations", content=json.dumps([IMAGE]).encode(), headers={TARGET: "digits", **JSON_TYPE})
    assert served() == before + 1


def test_other_methods_and_routes_still_go_through_starlette(client: TestClient) -> None:
    wrong_method = client.get("/invocations")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert client.get("/ping").json()["status"] == "healthy"


def test_a_body_in_several_messages_is_read_whole_and_refused_past_the_limit() -> None:
    def receiving(*parts: bytes, disconnect: bool = False) -> Any:
        messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
            for i, part in enumerate(parts)
        ]
        if disconnect:
            messages[-1]["more_body"] = True
            messages.append({"type": "http.disconnect"})

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        return receive

    def read(declared: str | None, receive: Any, limit: int) -> bytes:
        return asyncio.run(read_body(declared, asgi_chunks(receive), limit))

    assert read(None, receiving(b"[1,", b"2,", b"3]"), 8) == b"[1,2,3]"
    with pytest.raises(PayloadTooLarge):
        read(None, receiving(b"[1,", b"2,", b"3]"), 6)
    with pytest.raises(PayloadTooLarge):
        read("9", receiving(b"[1,2,3,4]"), 8)
    with pytest.raises(ClientDisconnect):
        read(None, receiving(b"[1,", disconnect=True), 8)
