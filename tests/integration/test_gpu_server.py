"""The SageMaker inference server (gpu_endpoints) started as SageMaker starts it, on the CPU, and
driven over real HTTP: the container contract, the payloads, the errors, and dynamic batching.

Answers are compared with a direct onnxruntime.InferenceSession on the same model file.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from gpu_endpoints.demo_networks import DemoNetwork, digits_cnn
from gpu_endpoints.models import discover, target_name
from gpu_endpoints.process import Running, running
from tests.support import REPO, Samples, added, prometheus_samples

START_TIMEOUT_S = 120
# Long enough that only a full batch (or an unload) ends the wait: batches form deterministically.
FOREVER_MS = 60_000
TARGET = "X-Amzn-SageMaker-Target-Model"
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_ID = "X-Amzn-SageMaker-Inference-Id"
RUNTIME_ENDPOINT = "emulated-endpoint"


class Server(Running):
    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {timeout_s} s")


def serve(model_dir: Path, env: dict[str, str] | None = None, ready: bool = True) -> Iterator[Server]:
    """`python -m gpu_endpoints.server` as the container's `serve` runs it, on a free loopback port."""
    settings = {"AIMASS_GPU_INTRA_OP_THREADS": "1", **(env or {})}  # a shared 2-core machine
    with running(model_dir, settings, ready, START_TIMEOUT_S) as server:
        yield Server(server.url, server.log)


def write_model(folder: Path, model: bytes, config: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def heavy() -> DemoNetwork:
    return digits_cnn()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any], heavy: DemoNetwork) -> Path:
    """One endpoint's model directory: several models, each in its own folder."""
    root = tmp_path_factory.mktemp("gpu-models")
    digits = demos["digits"].model
    write_model(root / "digits", digits)
    write_model(root / "digits-batch32", digits, {"max_batch_size": 32, "max_queue_delay_ms": FOREVER_MS})
    write_model(root / "digits-unbatched", digits, {"batching": False})
    write_model(
        root / "digits-small-queue",
        digits,
        {"max_queue_size": 1, "max_batch_size": 8, "max_queue_delay_ms": FOREVER_MS},
    )
    features = [f if isinstance(f, str) else f.name for f in demos["breast-cancer"].enrichment.features]
    write_model(root / "breast-cancer", demos["breast-cancer"].model, {"features": features})
    heavy.write(root / "digits-cnn")
    return root


@pytest.fixture(scope="module")
def endpoint(models: Path) -> Iterator[Server]:
    env = {
        "AIMASS_GPU_PRODUCTION_VARIANT": "AllTraffic",
        "AIMASS_GPU_MAX_BODY_MB": "1",
        "AIMASS_GPU_RUNTIME_ENDPOINT": RUNTIME_ENDPOINT,
    }
    yield from serve(models, env)


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def direct(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """The model run straight on ONNX Runtime, each row alone (what the server must agree with)."""
    runner = session(path)
    names = [o.name for o in runner.get_outputs()]
    rows = [dict(zip(names, runner.run(names, {"image": image[None]}), strict=True)) for image in images]
    return {name: np.concatenate([row[name] for row in rows]) for name in names}


def assert_close(actual: Any, expected: np.ndarray) -> None:
    # Kernels differ with the batch size, so batched floats may differ in their last bits.
    np.testing.assert_allclose(np.asarray(actual, dtype=expected.dtype), expected, rtol=1e-5, atol=1e-6)


def images(demos: dict[str, Any], count: int) -> np.ndarray:
    return np.ascontiguousarray(demos["digits"].holdout[:count], dtype=np.float32)


# The container contract.


def test_ping_answers_503_until_a_model_is_loaded_then_200(tmp_path: Path, demos: dict[str, Any]) -> None:
    empty = tmp_path / "model"
    empty.mkdir()
    folder = write_model(tmp_path / "incoming" / "digits", demos["digits"].model)
    for server in serve(empty, ready=False):
        with server.client() as client:
            before = client.get("/ping")
            assert before.status_code == 503
            assert "no model" in before.json()["status"]
            refused = client.post("/invocations", json={"instances": images(demos, 1).tolist()})
            assert refused.status_code == 503 and "Retry-After" in refused.headers

            loaded = client.post("/models", json={"model_name": "digits", "url": str(folder)})
            again = client.post("/models", json={"model_name": "digits", "url": str(folder)})
            after = client.get("/ping")
            # One model: requests need no target.
            answered = client.post("/invocations", json={"instances": images(demos, 1).tolist()})
            listed = client.get("/models").json()

    assert loaded.status_code == 200 and loaded.json()["providers"] == ["CPUExecutionProvider"]
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert after.status_code == 200 and after.json()["models"] == ["digits"]
    assert answered.status_code == 200 and answered.headers["X-Aimass-Model"] == "digits"
    assert listed == {"models": [{"modelName": "digits", "modelUrl": str(folder)}]}


def test_json_instances_are_answered_as_onnx_runtime_answers(
    endpoint: Server, models: Path, demos: dict[str, Any]
) -> None:
    rows = images(demos, 5)
    with endpoint.client() as client:
        response = client.post("/invocations", json={"instances": rows.tolist()}, headers={TARGET: "digits"})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    predictions = response.json()["predictions"]
    expected = direct(models / "digits" / "model.onnx", rows)
    assert [p["label"] for p in predictions] == expected["label"].tolist()
    assert_close([p["probabilities"] for p in predictions], expected["probabilities"])


def test_v2_tensors_are_answered_as_v2_tensors(endpoint: Server, models: Path, demos: dict[str, Any]) -> None:
    rows = images(demos, 3)
    body = {
        "id": "request-7",
        "inputs": [
            {"name": "image", "shape": [3, 8, 8], "datatype": "FP32", "data": rows.reshape(-1).tolist()}
        ],
        "outputs": [{"name": "probabilities"}],
    }
    with endpoint.client() as client:
        response = client.post("/invocations", json=body, headers={TARGET: "digits"})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_name"] == "digits" and answer["id"] == "request-7"
    [output] = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("probabilities", "FP32", [3, 10])
    expected = direct(models / "digits" / "model.onnx", rows)
    assert_close(np.reshape(output["data"], (3, 10)), expected["probabilities"])


def test_npy_bodies_are_answered_in_kind(endpoint: Server, models: Path, demos: dict[str, Any]) -> None:
    rows = images(demos, 4)
    buffer = io.BytesIO()
    np.save(buffer, rows)
    expected = direct(models / "digits" / "model.onnx", rows)
    with endpoint.client() as client:
        one = client.post(
            "/invocations",
            content=buffer.getvalue(),
            headers={
                "content-type": "application/x-npy",
                "accept": "application/x-npy",
                TARGET: "digits",
                ATTRIBUTES: "outputs=probabilities",
            },
        )
        every = client.post(
            "/invocations",
            content=buffer.getvalue(),
            headers={"content-type": "application/x-npy", TARGET: "digits"},
        )
        as_json = client.post(
            "/invocations",
            content=buffer.getvalue(),
            headers={"content-type": "application/x-npy", "accept": "application/json", TARGET: "digits"},
        )

    assert one.status_code == 200 and one.headers["content-type"] == "application/x-npy"
    probabilities = np.load(io.BytesIO(one.content))
    assert probabilities.dtype == np.float32
    assert_close(probabilities, expected["probabilities"])
    # Two outputs do not fit one .npy: in kind means .npz then.
    assert every.status_code == 200 and every.headers["content-type"] == "application/x-npz"
    archive = np.load(io.BytesIO(every.content))
    assert sorted(archive.files) == ["label", "probabilities"]
    np.testing.assert_array_equal(archive["label"], expected["label"])
    assert [p["label"] for p in as_json.json()["predictions"]] == expected["label"].tolist()


def test_instances_may_be_objects_keyed_by_the_configured_feature_names(
    endpoint: Server, models: Path, demos: dict[str, Any]
) -> None:
    features = json.loads((models / "breast-cancer" / "config.json").read_text())["features"]
    rows = np.asarray(demos["breast-cancer"].holdout[:3], dtype=np.float32)
    objects = [dict(zip(features, row.tolist(), strict=True)) for row in rows]
    with endpoint.client() as client:
        keyed = client.post("/invocations", json={"instances": objects}, headers={TARGET: "breast-cancer"})
        plain = client.post(
            "/invocations", json={"instances": rows.tolist()}, headers={TARGET: "breast-cancer"}
        )

    assert keyed.status_code == 200, keyed.text
    assert keyed.json() == plain.json()
    expected = session(models / "breast-cancer" / "model.onnx").run(["probabilities"], {"input": rows})[0]
    assert_close([p["probabilities"] for p in keyed.json()["predictions"]], expected)


def test_the_target_model_header_picks_the_model(endpoint: Server, demos: dict[str, Any]) -> None:
    body = {"instances": images(demos, 1).tolist()}
    with endpoint.client() as client:
        answers = {
            target: client.post("/invocations", json=body, headers={TARGET: target})
            for target in ("digits", "digits-cnn", "models/digits-cnn.tar.gz")
        }
        invoked = client.post("/models/digits-cnn/invoke", json=body)

    assert [a.headers["X-Aimass-Model"] for a in answers.values()] == ["digits", "digits-cnn", "digits-cnn"]
    assert answers["digits-cnn"].json() == answers["models/digits-cnn.tar.gz"].json() == invoked.json()
    assert answers["digits"].json() != answers["digits-cnn"].json()


def test_sagemaker_headers_are_echoed_and_an_answer_names_the_model_file_that_gave_it(
    endpoint: Server, demos: dict[str, Any], models: Path
) -> None:
    headers = {TARGET: "digits", INFERENCE_ID: "abc-123", ATTRIBUTES: "trace=xyz; batching=on"}
    with endpoint.client() as client:
        response = client.post("/invocations", json={"instances": images(demos, 1).tolist()}, headers=headers)
        failed = client.post(
            "/invocations", content=b"{", headers={**headers, "content-type": "application/json"}
        )

    for answer in (response, failed):
        assert answer.headers[INFERENCE_ID] == "abc-123"
        assert answer.headers["X-Amzn-Invoked-Production-Variant"] == "AllTraffic"
    sha256 = hashlib.sha256((models / "digits" / "model.onnx").read_bytes()).hexdigest()
    assert response.headers[ATTRIBUTES] == f"trace=xyz; batching=on; model-sha256={sha256}"
    assert failed.headers[ATTRIBUTES] == "trace=xyz; batching=on"


def test_a_mistake_in_a_models_config_keeps_ping_failing_with_the_reason(
    tmp_path: Path, demos: dict[str, Any]
) -> None:
    write_model(tmp_path / "model" / "digits", demos["digits"].model, {"max_batch_sise": 8})

    for server in serve(tmp_path / "model", ready=False):
        with server.client() as client:
            wait_until(lambda: client.get("/ping").json()["status"] != "loading", 60, "the load did not end")
            ping = client.get("/ping")

    assert ping.status_code == 503 and ping.json()["status"] == "failed"
    assert "unknown keys max_batch_sise" in ping.json()["message"]


def test_a_bad_setting_stops_the_server_with_the_variable_named(tmp_path: Path) -> None:
    environment = {**os.environ, "AIMASS_GPU_MAX_BATCH_SIZE": "lots"}
    command = [sys.executable, "-m", "gpu_endpoints.server", "--model-dir", str(tmp_path)]

    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert "AIMASS_GPU_MAX_BATCH_SIZE='lots': expected an integer" in result.stderr


def test_the_model_directory_layouts(tmp_path: Path) -> None:
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "model.onnx").write_bytes(b"")
    for name in ("a", "b"):
        (tmp_path / "multi" / name).mkdir(parents=True)
        (tmp_path / "multi" / name / "model.onnx").write_bytes(b"")
    (tmp_path / "multi" / "notes").mkdir()

    assert discover(tmp_path / "single") == {"model": tmp_path / "single"}
    assert discover(tmp_path / "multi") == {"a": tmp_path / "multi" / "a", "b": tmp_path / "multi" / "b"}
    assert [target_name(t) for t in ("a", "a.tar.gz", "prefix/a.tar.gz", "a/")] == ["a"] * 4


# Errors: JSON {"error": {"code", "message", "details"}}, never a 500 for a bad request; a payload's
# errors are the protocol's, the same status and code as the Lambda API's (test_protocol_battery.py).


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


def test_bad_json_is_a_400(endpoint: Server) -> None:
    with endpoint.client() as client:
        response = client.post(
            "/invocations",
            content=b'{"instances": [',
            headers={"content-type": "application/json", TARGET: "digits"},
        )

    assert error_of(response, 400)["code"] == "bad_json"


def test_a_row_of_the_wrong_shape_is_a_422_that_names_the_row(
    endpoint: Server, demos: dict[str, Any]
) -> None:
    rows = images(demos, 3).tolist()
    rows[1] = rows[1][:7]
    with endpoint.client() as client:
        response = client.post("/invocations", json={"instances": rows}, headers={TARGET: "digits"})

    error = error_of(response, 422)
    assert error["code"] == "validation_error"
    assert error["details"] == [
        {"loc": ["instances", 1], "message": "expected shape [8, 8], got [7, 8]", "type": "shape_mismatch"}
    ]


def test_a_value_that_is_not_a_number_is_a_422_that_names_the_value(
    endpoint: Server, demos: dict[str, Any]
) -> None:
    rows = images(demos, 2).tolist()
    rows[1][2][3] = "bright"
    with endpoint.client() as client:
        response = client.post("/invocations", json={"instances": rows}, headers={TARGET: "digits"})

    error = error_of(response, 422)
    assert error["code"] == "validation_error"
    assert error["details"] == [
        {"loc": ["instances", 1, 2, 3], "message": "expected a number, got string", "type": "type_error"}
    ]


def test_v2_tensors_that_do_not_match_the_signature_are_a_422_per_field(endpoint: Server) -> None:
    body = {
        "inputs": [
            {"name": "image", "shape": [1, 8, 8], "datatype": "INT64", "data": [0] * 64},
            {"name": "mask", "shape": [1], "datatype": "BOOL", "data": [True]},
        ]
    }
    with endpoint.client() as client:
        response = client.post("/invocations", json=body, headers={TARGET: "digits"})

    details = error_of(response, 422)["details"]
    assert [(d["loc"], d["type"]) for d in details] == [
        (["inputs", 0, "datatype"], "datatype_mismatch"),
        (["inputs", 1, "name"], "unknown_input"),
    ]


def test_several_models_and_no_target_is_a_400_listing_them(endpoint: Server, demos: dict[str, Any]) -> None:
    with endpoint.client() as client:
        response = client.post("/invocations", json={"instances": images(demos, 1).tolist()})

    error = error_of(response, 400)
    assert error["details"][0]["loc"] == ["headers", TARGET]
    assert "digits-cnn" in error["details"][0]["message"]


def test_an_unknown_target_model_is_a_404(endpoint: Server, demos: dict[str, Any]) -> None:
    with endpoint.client() as client:
        response = client.post(
            "/invocations", json={"instances": images(demos, 1).tolist()}, headers={TARGET: "resnet"}
        )

    error = error_of(response, 404)
    assert error["code"] == "model_not_found"
    assert "digits" in error["details"][0]["message"]


def test_a_body_over_the_limit_is_a_413(endpoint: Server) -> None:
    with endpoint.client() as client:
        response = client.post(
            "/invocations",
            content=b"[" + b"0," * (600 * 1024) + b"0]",
            headers={"content-type": "application/json", TARGET: "digits"},
        )

    assert error_of(response, 413)["code"] == "payload_too_large"


def test_an_unsupported_content_type_is_a_415_and_an_unsupported_accept_a_406(
    endpoint: Server, demos: dict[str, Any]
) -> None:
    with endpoint.client() as client:
        csv = client.post(
            "/invocations", content=b"1,2,3", headers={"content-type": "text/csv", TARGET: "digits"}
        )
        xml = client.post(
            "/invocations",
            json={"instances": images(demos, 1).tolist()},
            headers={"accept": "application/xml", TARGET: "digits"},
        )

    assert error_of(csv, 415)["code"] == "unsupported_media_type"
    assert error_of(xml, 406)["code"] == "not_acceptable"


def test_a_full_queue_is_a_503_with_retry_after(endpoint: Server, demos: dict[str, Any]) -> None:
    body = {"instances": images(demos, 1).tolist()}
    headers = {TARGET: "digits-small-queue"}

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=endpoint.url, timeout=60) as client:
            # The first request waits for a batch that never fills (max_queue_size is 1) ...
            waiting = asyncio.create_task(client.post("/invocations", json=body, headers=headers))

            def queued() -> bool:
                stats = httpx.get(f"{endpoint.url}/stats").json()["models"].get("digits-small-queue")
                return stats is not None and stats["batcher"]["waiting"] == 1

            await asyncio.to_thread(wait_until, queued, 30, "the first request was not queued")
            refused = await client.post("/invocations", json=body, headers=headers)
            # ... until the model is unloaded, which sends it away with a 503 too.
            await client.delete("/models/digits-small-queue")
            return refused, await waiting

    refused, sent_away = asyncio.run(scenario())

    assert error_of(refused, 503)["code"] == "queue_full"
    assert refused.headers["Retry-After"] == "1"
    assert error_of(sent_away, 503)["code"] == "unavailable"


def test_unknown_routes_answer_json(endpoint: Server) -> None:
    with endpoint.client() as client:
        assert error_of(client.get("/nowhere"), 404)["code"] == "not_found"
        assert error_of(client.get("/invocations"), 405)["code"] == "method_not_allowed"


# Dynamic batching.


async def concurrently(
    url: str, target: str, rows: np.ndarray, headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    """Each row as its own request, all sent at once."""
    limits = httpx.Limits(max_connections=len(rows), max_keepalive_connections=len(rows))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        return await asyncio.gather(
            *[
                client.post(
                    "/invocations",
                    json={"instances": [row.tolist()]},
                    headers={TARGET: target, **(headers or {})},
                )
                for row in rows
            ]
        )


def test_32_concurrent_requests_form_one_batch_and_get_the_unbatched_answers(
    endpoint: Server, models: Path, demos: dict[str, Any]
) -> None:
    rows = images(demos, 32)

    responses = asyncio.run(concurrently(endpoint.url, "digits-batch32", rows))

    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert {r.headers["X-Aimass-Batch-Size"] for r in responses} == {"32"}
    expected = direct(models / "digits-batch32" / "model.onnx", rows)
    predictions = [r.json()["predictions"][0] for r in responses]
    assert [p["label"] for p in predictions] == expected["label"].tolist()
    assert_close([p["probabilities"] for p in predictions], expected["probabilities"])


def test_the_heavy_network_batched_under_load_answers_as_unbatched(
    endpoint: Server, models: Path, heavy: DemoNetwork
) -> None:
    rows = np.ascontiguousarray(heavy.holdout[:32], dtype=np.float32)

    responses = asyncio.run(concurrently(endpoint.url, "digits-cnn", rows))

    assert all(r.status_code == 200 for r in responses)
    expected = direct(models / "digits-cnn" / "model.onnx", rows)
    predictions = [r.json()["predictions"][0] for r in responses]
    assert [p["label"] for p in predictions] == expected["label"].tolist()
    assert_close([p["probabilities"] for p in predictions], expected["probabilities"])
    assert np.mean(expected["label"] == heavy.holdout_labels[:32]) > 0.9


def test_a_model_that_opts_out_of_batching_forms_no_batches(endpoint: Server, demos: dict[str, Any]) -> None:
    responses = asyncio.run(concurrently(endpoint.url, "digits-unbatched", images(demos, 16)))

    assert {r.headers["X-Aimass-Batch-Size"] for r in responses} == {"1"}
    with endpoint.client() as client:
        batcher = client.get("/stats").json()["models"]["digits-unbatched"]["batcher"]
    assert batcher["batching"] is False and batcher["largest_batch"] == 1


def test_a_request_can_opt_out_of_batching_with_a_custom_attribute(
    endpoint: Server, demos: dict[str, Any]
) -> None:
    # digits-batch32 waits a minute for a full batch; this request does not wait for one.
    with endpoint.client() as client:
        response = client.post(
            "/invocations",
            json={"instances": images(demos, 2).tolist()},
            headers={TARGET: "digits-batch32", ATTRIBUTES: "batching=off"},
        )

    assert response.status_code == 200
    assert (response.headers["X-Aimass-Batch-Size"], response.headers["X-Aimass-Batch-Rows"]) == ("1", "2")


# Several models within a memory budget.


def test_models_beyond_the_memory_budget_unload_the_least_recently_used(
    tmp_path: Path, demos: dict[str, Any]
) -> None:
    model_dir = tmp_path / "model"
    digits = demos["digits"].model
    for name in ("first", "second"):
        write_model(model_dir / name, digits, {"memory_mb": 60})
    write_model(model_dir / "huge", digits, {"memory_mb": 500})
    body = {"instances": images(demos, 1).tolist()}

    for server in serve(model_dir, {"AIMASS_GPU_MEMORY_BUDGET_MB": "100"}):
        with server.client() as client:
            at_start = client.get("/stats").json()
            second = client.post("/invocations", json=body, headers={TARGET: "second"})
            after_second = client.get("/stats").json()
            first = client.post("/invocations", json=body, headers={TARGET: "first"})
            after_first = client.get("/stats").json()
            huge = client.post("/invocations", json=body, headers={TARGET: "huge"})
            loaded = client.post("/models", json={"model_name": "huge", "url": str(model_dir / "huge")})

    # At start, models load in name order while they fit: "first" fits, "huge" and "second" wait.
    assert list(at_start["models"]) == ["first"]
    assert second.status_code == first.status_code == 200
    assert list(after_second["models"]) == ["second"] and after_second["evictions"] == 1
    assert list(after_first["models"]) == ["first"] and after_first["memory_used_mb"] == 60
    for refused in (huge, loaded):
        assert error_of(refused, 507)["code"] == "insufficient_memory"
        assert "500 MB" in refused.json()["error"]["message"]


# SageMaker Runtime in front of the container (the local stack's emulated endpoint).


def runtime_client(server: Server) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("sagemaker-runtime", endpoint_url=server.url, config=Config(retries={"total_max_attempts": 1}))


def test_boto3s_invoke_endpoint_reaches_the_container_with_its_headers(
    endpoint: Server, demos: dict[str, Any], models: Path
) -> None:
    batch = images(demos, 3)
    buffer = io.BytesIO()
    np.save(buffer, batch)

    answer = runtime_client(endpoint).invoke_endpoint(
        EndpointName=RUNTIME_ENDPOINT,
        TargetModel="digits",
        Body=buffer.getvalue(),
        ContentType="application/x-npy",
        Accept="application/x-npz",
        CustomAttributes="batching=off",
        InferenceId="call-1",
    )

    outputs = np.load(io.BytesIO(answer["Body"].read()))
    expected = direct(models / "digits" / "model.onnx", batch)
    assert_close(outputs["probabilities"], expected["probabilities"])
    assert answer["ContentType"] == "application/x-npz"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["CustomAttributes"].startswith("batching=off; model-sha256=")
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-aimass-batch-size"] == "1"


def test_the_containers_refusal_reaches_boto3_as_sagemakers_model_error(endpoint: Server) -> None:
    from botocore.exceptions import ClientError

    client = runtime_client(endpoint)
    with pytest.raises(ClientError) as refused:
        client.invoke_endpoint(
            EndpointName=RUNTIME_ENDPOINT, TargetModel="digits", Body=b"{", ContentType="application/json"
        )
    with pytest.raises(ClientError) as unknown:
        client.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"[]", ContentType="application/json")

    error = refused.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert json.loads(error["OriginalMessage"])["error"]["code"] == "bad_json"
    assert "Received client error (400) from AllTraffic" in error["Error"]["Message"]
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    assert "no-such-endpoint" in unknown.value.response["Error"]["Message"]


# Prometheus metrics.


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return prometheus_samples(response.text)


def test_metrics_count_requests_their_batches_and_the_queue_per_model(
    endpoint: Server, demos: dict[str, Any]
) -> None:
    model = "digits-batch32"
    with endpoint.client() as client:
        before = scrape(client)
        # When 32 requests arrive together at a model that batches 32, and one names no model served
        responses = asyncio.run(concurrently(endpoint.url, model, images(demos, 32)))
        assert {r.status_code for r in responses} == {200}
        unknown = client.post("/invocations", json={"instances": [[0.0]]}, headers={TARGET: "no-such-7c1e"})
        assert unknown.status_code == 404
        after = scrape(client)

    # Then the 32 answers are counted with their time, as one batch of 32 requests and 32 rows
    assert added(before, after, "aimass_inference_requests_total", model=model, status="200") == 32
    assert added(before, after, "aimass_inference_request_duration_seconds_count", model=model) == 32
    assert added(before, after, "aimass_inference_batch_size_count", model=model) == 1
    assert added(before, after, "aimass_inference_batch_size_sum", model=model) == 32
    assert added(before, after, "aimass_inference_batch_size_bucket", model=model, le="16.0") == 0
    assert added(before, after, "aimass_inference_batch_size_bucket", model=model, le="32.0") == 1
    assert added(before, after, "aimass_inference_rows_total", model=model) == 32
    # and nothing is left in its queue; the unknown model is counted without the name it was given
    assert after[("aimass_inference_queue_depth", frozenset({"model": model}.items()))] == 0
    assert added(before, after, "aimass_inference_requests_total", model="", status="404") == 1
    assert not any("no-such-7c1e" in str(labels) for _, labels in after)
    # with the process metrics beside them
    assert ("process_cpu_seconds_total", frozenset()) in after
