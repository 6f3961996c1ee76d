"""The inference server with front-end processes feeding one model process (AIMASS_GPU_FRONTENDS):
the same answers as the single-process server, byte for byte, over real HTTP, for every payload
kind and for bad requests; a front end that dies is started again; a model process that dies stops
the server with a clear message."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gpu_endpoints.demo_networks import digits_cnn
from gpu_endpoints.process import Running, _environment, _spawn, _wait_ready, free_port, running, stop
from tests.support import binary_input, binary_request

START_TIMEOUT_S = 120
TARGET = "X-Amzn-SageMaker-Target-Model"
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
# What an answer says of how it was served (batch sizes and queue times vary run to run).
SERVED = {"x-aimass-batch-size", "x-aimass-batch-rows", "x-aimass-queue-ms", "date"}
# A shared 2-core machine.
SETTINGS = {"AIMASS_GPU_INTRA_OP_THREADS": "1", "AIMASS_GPU_PRODUCTION_VARIANT": "AllTraffic"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Path:
    root = tmp_path_factory.mktemp("gpu-frontends")
    (root / "digits").mkdir()
    (root / "digits" / "model.onnx").write_bytes(demos["digits"].model)
    digits_cnn().write(root / "digits-cnn")
    return root


@pytest.fixture(scope="module")
def pair(models: Path) -> Iterator[tuple[Running, Running]]:
    """The single-process server and a two-front-end server on the same models, side by side."""
    with (
        running(models, SETTINGS, timeout_s=START_TIMEOUT_S) as single,
        running(models, {**SETTINGS, "AIMASS_GPU_FRONTENDS": "2"}, timeout_s=START_TIMEOUT_S) as split,
    ):
        yield single, split


def images(demos: dict[str, Any], count: int) -> np.ndarray:
    return np.ascontiguousarray(demos["digits"].holdout[:count], dtype=np.float32)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def v2_binary(rows: np.ndarray, binary_out: bool) -> tuple[bytes, dict[str, str]]:
    header = {
        "id": "binary-1",
        "inputs": [binary_input("image", list(rows.shape), "FP32", rows.nbytes)],
        **({"parameters": {"binary_data_output": True}} if binary_out else {}),
    }
    return binary_request(header, rows.tobytes())


def requests(demos: dict[str, Any]) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Every payload kind, good and bad: (body, headers)."""
    rows = images(demos, 3)
    as_json = {"content-type": "application/json"}
    v2 = {
        "id": "v2-1",
        "inputs": [{"name": "image", "shape": [3, 8, 8], "datatype": "FP32", "data": rows.ravel().tolist()}],
    }
    return {
        "json v1": (json.dumps({"instances": rows.tolist()}).encode(), as_json),
        "json v1, the MLP": (
            json.dumps({"instances": rows.tolist()}).encode(),
            {**as_json, TARGET: "digits"},
        ),
        "json v2": (json.dumps(v2).encode(), as_json),
        "v2 binary in, json out": v2_binary(rows, False),
        "v2 binary in and out": v2_binary(rows, True),
        "npy in, npz out": (npy(rows), {"content-type": "application/x-npy"}),
        "npy in and out": (
            npy(rows),
            {
                "content-type": "application/x-npy",
                "accept": "application/x-npy",
                ATTRIBUTES: "outputs=probabilities",
            },
        ),
        "npy in, json out": (npy(rows), {"content-type": "application/x-npy", "accept": "application/json"}),
        "batching off, echoed attributes": (
            json.dumps({"instances": rows.tolist()}).encode(),
            {**as_json, ATTRIBUTES: "batching=off; trace=7", "X-Amzn-SageMaker-Inference-Id": "id-9"},
        ),
        "bad json": (b'{"instances": [', as_json),
        "wrong shape": (json.dumps({"instances": [[1.0, 2.0]]}).encode(), as_json),
        "unknown model": (json.dumps({"instances": rows.tolist()}).encode(), {**as_json, TARGET: "nope"}),
        "unsupported type": (b"a,b", {"content-type": "text/csv"}),
        "npy for several outputs": (
            npy(rows),
            {"content-type": "application/x-npy", "accept": "application/x-npy"},
        ),
    }


def answer(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    sent = {TARGET: "digits-cnn", **headers}
    response = httpx.post(f"{url}/invocations", content=body, headers=sent, timeout=60)
    kept = {k: v for k, v in response.headers.items() if k not in SERVED and k not in ("server",)}
    return response.status_code, kept, response.content


KINDS = (
    "json v1",
    "json v1, the MLP",
    "json v2",
    "v2 binary in, json out",
    "v2 binary in and out",
    "npy in, npz out",
    "npy in and out",
    "npy in, json out",
    "batching off, echoed attributes",
    "bad json",
    "wrong shape",
    "unknown model",
    "unsupported type",
    "npy for several outputs",
)


def test_every_payload_kind_is_compared() -> None:
    assert set(KINDS) == set(requests({"digits": _Holdout()}))


class _Holdout:
    holdout = np.zeros((3, 8, 8), dtype=np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_front_ends_answer_every_payload_as_the_single_process_server_does(
    pair: tuple[Running, Running], demos: dict[str, Any], kind: str
) -> None:
    single, split = pair
    body, headers = requests(demos)[kind]

    expected = answer(single.url, body, headers)
    got = answer(split.url, body, headers)

    assert got == expected
    status, sent_back, content = got
    if status == 200:  # the answer names the model file that gave it, through the model process too
        assert "model-sha256=" in sent_back["x-amzn-sagemaker-custom-attributes"]
        assert sent_back["x-amzn-invoked-production-variant"] == "AllTraffic"
    else:
        assert status in (400, 404, 406, 415, 422) and json.loads(content)["error"]["details"] is not None


def test_concurrent_requests_of_both_front_ends_share_the_model_processs_batches(
    pair: tuple[Running, Running], demos: dict[str, Any]
) -> None:
    import asyncio

    _, split = pair
    rows = images(demos, 32)
    before = httpx.get(f"{split.url}/stats", timeout=10).json()["models"]["digits-cnn"]["batcher"]

    async def burst() -> list[httpx.Response]:
        # A new connection per request: the kernel hands them to either front end.
        async with httpx.AsyncClient(
            base_url=split.url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)
        ) as client:
            return await asyncio.gather(
                *[
                    client.post(
                        "/invocations", json={"instances": [row.tolist()]}, headers={TARGET: "digits-cnn"}
                    )
                    for row in rows
                ]
            )

    responses = asyncio.run(burst())
    after = httpx.get(f"{split.url}/stats", timeout=10).json()["models"]["digits-cnn"]["batcher"]

    assert all(r.status_code == 200 for r in responses)
    assert after["requests"] - before["requests"] == 32
    # One batcher for the model, in the model process: requests joined whichever front end took them.
    assert after["batches"] - before["batches"] < 32
    assert max(int(r.headers["x-aimass-batch-size"]) for r in responses) > 1


def test_ping_stats_metrics_and_the_multi_model_api_pass_through_the_model_process(
    pair: tuple[Running, Running], models: Path, demos: dict[str, Any]
) -> None:
    single, split = pair
    with httpx.Client(base_url=split.url, timeout=60) as client:
        ping = client.get("/ping")
        loaded = client.post("/models", json={"model_name": "digits-copy", "url": str(models / "digits")})
        again = client.post("/models", json={"model_name": "digits-copy", "url": str(models / "digits")})
        invoked = client.post("/models/digits-copy/invoke", json={"instances": images(demos, 2).tolist()})
        listed = client.get("/models").json()
        stats = client.get("/stats").json()
        metrics = client.get("/metrics").text
        unloaded = client.delete("/models/digits-copy")
        gone = client.get("/models/digits-copy")
        # Known to the endpoint still: its next request loads it again, in the model process.
        reloaded = client.post("/models/digits-copy/invoke", json={"instances": images(demos, 2).tolist()})
    with httpx.Client(base_url=single.url, timeout=60) as client:
        expected = client.post(
            "/invocations", json={"instances": images(demos, 2).tolist()}, headers={TARGET: "digits"}
        )

    assert ping.status_code == 200 and ping.json()["models"] == ["digits", "digits-cnn"]
    assert loaded.status_code == 200 and loaded.json()["providers"] == ["CPUExecutionProvider"]
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert invoked.status_code == 200 and invoked.content == expected.content
    assert {m["modelName"] for m in listed["models"]} == {"digits", "digits-cnn", "digits-copy"}
    assert stats["frontends"]["count"] == 2 and stats["frontends"]["engine_pid"] != stats["frontends"]["pid"]
    assert stats["models"]["digits-cnn"]["batcher"]["requests"] > 0
    assert 'aimass_inference_rows_total{model="digits-cnn"}' in metrics
    assert unloaded.status_code == 200 and gone.status_code == 404
    assert reloaded.status_code == 200 and reloaded.content == expected.content


def test_one_front_end_is_the_server_process_itself_and_serves_through_the_model_process(
    models: Path, demos: dict[str, Any], pair: tuple[Running, Running]
) -> None:
    single, _ = pair
    # Given the server with one front end, which uvicorn runs in the server's own process
    with (
        running(models, {**SETTINGS, "AIMASS_GPU_FRONTENDS": "1"}, timeout_s=START_TIMEOUT_S) as one,
        httpx.Client(base_url=one.url, timeout=60) as client,
    ):
        # When it is asked to predict
        answered = client.post(
            "/invocations", json={"instances": images(demos, 2).tolist()}, headers={TARGET: "digits"}
        )
        stats = client.get("/stats").json()
    with httpx.Client(base_url=single.url, timeout=60) as client:
        expected = client.post(
            "/invocations", json={"instances": images(demos, 2).tolist()}, headers={TARGET: "digits"}
        )

    # Then it stayed up and answered as the single process does, the model in the model process
    assert answered.status_code == 200 and answered.content == expected.content
    assert stats["frontends"]["count"] == 1 and stats["frontends"]["pid"] == one.pid
    assert stats["frontends"]["engine_pid"] != one.pid


def running_still(pid: int) -> bool:
    """Whether the process has not exited. One that has but is not reaped yet (a zombie, state Z) has:
    its reaping is init's once its parent is gone, and when init does it is not the server's."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def front_end_pids(server_pid: int) -> set[int]:
    """The server's uvicorn worker processes (multiprocessing's spawned children)."""
    children: set[int] = set()
    for task in os.listdir(f"/proc/{server_pid}/task"):
        with open(f"/proc/{server_pid}/task/{task}/children") as handle:
            children |= {int(pid) for pid in handle.read().split()}
    found = set()
    for pid in children:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.add(pid)
    return found


def wait_until(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout_s} s")


def test_a_front_end_that_dies_is_started_again(models: Path, demos: dict[str, Any]) -> None:
    env = {**SETTINGS, "AIMASS_GPU_FRONTENDS": "2"}
    with running(models, env, timeout_s=START_TIMEOUT_S) as server:
        before = wait_until(
            lambda: len(pids := front_end_pids(server.pid)) == 2 and pids, 30, "two front ends"
        )
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        after = wait_until(
            lambda: len(pids := front_end_pids(server.pid)) == 2 and victim not in pids and pids,
            30,
            "a front end started in place of the killed one",
        )
        ping = wait_until(
            lambda: httpx.get(f"{server.url}/ping", timeout=10).status_code == 200, 30, "ping 200"
        )
        answered = [
            httpx.post(
                f"{server.url}/invocations",
                json={"instances": images(demos, 1).tolist()},
                headers={TARGET: "digits-cnn", "connection": "close"},
                timeout=60,
            ).status_code
            for _ in range(6)
        ]

    assert len(after - before) == 1 and ping
    assert answered == [200] * 6


def test_the_server_stops_with_a_clear_message_when_its_model_process_dies(models: Path) -> None:
    import tempfile

    env = _environment(free_port(), {**SETTINGS, "AIMASS_GPU_FRONTENDS": "2"})
    with tempfile.TemporaryFile(mode="w+") as log:
        process = _spawn(models, env, log)
        server = Running(f"http://127.0.0.1:{env['SAGEMAKER_BIND_TO_PORT']}", log, process.pid)
        try:
            _wait_ready(process, server, True, START_TIMEOUT_S)
            engine = httpx.get(f"{server.url}/stats", timeout=10).json()["frontends"]["engine_pid"]
            os.kill(engine, signal.SIGKILL)
            code = process.wait(timeout=60)
        finally:
            stop(process)
        output = server.log_tail()

    assert code == 1, output
    assert f"the model process {engine} exited with -9: stopping the server" in output
    assert "the model process exited with -9; the server stopped" in output


def test_a_server_killed_outright_takes_its_model_process_and_front_ends_with_it(models: Path) -> None:
    env = {**SETTINGS, "AIMASS_GPU_FRONTENDS": "2"}
    with running(models, env, timeout_s=START_TIMEOUT_S) as server:
        engine = httpx.get(f"{server.url}/stats", timeout=10).json()["frontends"]["engine_pid"]
        front_ends = wait_until(
            lambda: len(pids := front_end_pids(server.pid)) == 2 and pids, 30, "front ends"
        )
        os.kill(server.pid, signal.SIGKILL)
        # Orphaned, the model process notices within a second and stops; the front ends, losing it
        # with their server gone, stop too: nothing keeps the port answering.
        processes = {engine, *front_ends}
        try:
            wait_until(lambda: not any(running_still(pid) for pid in processes), 30, "all gone")
        except TimeoutError:
            left = {
                pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in processes if running_still(pid)
            }
            raise AssertionError(f"still running: {left}\n{server.log_tail()}") from None
        port = int(server.url.rsplit(":", 1)[1])
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5)
