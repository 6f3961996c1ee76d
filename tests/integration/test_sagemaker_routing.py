"""Versions served by a SageMaker endpoint, through the API: the inference server runs as the endpoint
(behind SageMaker Runtime's InvokeEndpoint, as the local stack runs it), reached by boto3's real
sagemaker-runtime client; the registry and artifacts are moto's.

Throttling is the one answer the emulated endpoint cannot give on demand: a recorded SageMaker
Runtime answers it (the status, headers and body AWS sends), over real HTTP, so the client's own
retries and error parsing run."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aimass import wiring
from aimass.api.app import create_app
from aimass.local.demo import Demo
from aimass.registration import Reference, register_version, save_ruleset, set_alias
from gpu_endpoints.process import Running, free_port, running
from tests.conftest import reset_caches
from tests.support import added, prometheus_samples, retrained

ENDPOINT = "bc-endpoint"
MODEL = "breast-cancer"
PREDICT = f"/v1/models/{MODEL}:predict"


@contextmanager
def serving_endpoint(model_dir: Path, model: bytes) -> Iterator[Running]:
    """The inference server as the endpoint ENDPOINT, with `model` as its only model."""
    (model_dir / "model.onnx").write_bytes(model)
    env = {
        "AIMASS_GPU_RUNTIME_ENDPOINT": ENDPOINT,
        "AIMASS_GPU_PRODUCTION_VARIANT": "primary",
        "AIMASS_GPU_INTRA_OP_THREADS": "1",
        "AIMASS_GPU_BATCHING": "false",
    }
    with running(model_dir, env) as server:
        yield server


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Iterator[Running]:
    """The inference server with the breast-cancer demo's ONNX file as its only model."""
    with serving_endpoint(tmp_path_factory.mktemp("endpoint"), demos[MODEL].model) as server:
        yield server


def use_runtime(monkeypatch: pytest.MonkeyPatch, url: str, **settings: str) -> None:
    monkeypatch.setenv("AIMASS_SAGEMAKER_RUNTIME_URL", url)
    for name, value in settings.items():
        monkeypatch.setenv(f"AIMASS_{name.upper()}", value)
    reset_caches()


def on_endpoint(demo: Demo, backend: str = f"sagemaker:{ENDPOINT}") -> int:
    """The demo's own model registered again as a version its endpoint serves."""
    reference = Reference(demo.reference_csv, "reference.csv", "demo")
    record = register_version(
        wiring.registry(),
        "aimass-test",
        demo.name,
        demo.model,
        "t",
        demo.enrichment,
        reference=reference,
        backend=backend,
    )
    return record.version


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def probabilities(answer: dict[str, Any]) -> np.ndarray:
    return np.array([[p["probabilities"]["malignant"], p["probabilities"]["benign"]] for p in answer])


def instances(demo: Demo, count: int) -> list[dict[str, float]]:
    names = [f if isinstance(f, str) else f.name for f in demo.enrichment.features or []]
    return [dict(zip(names, row, strict=True)) for row in demo.holdout[:count].tolist()]


def test_a_version_on_an_endpoint_answers_as_the_same_model_in_the_lambda(
    client: TestClient, endpoint: Running, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(monkeypatch, endpoint.url)
    demo = demos[MODEL]
    version = on_endpoint(demo)
    body = {"instances": instances(demo, 20)}

    remote = client.post(f"/v1/models/{MODEL}/versions/{version}:predict", json=body)
    local = client.post(f"/v1/models/{MODEL}/versions/1:predict", json=body)
    v2 = client.post(
        f"/v2/models/{MODEL}/versions/{version}/infer",
        json={
            "inputs": [
                {"name": "input", "shape": [1, 30], "datatype": "FP32", "data": demo.holdout[0].tolist()}
            ]
        },
    )

    assert remote.status_code == 200, remote.text
    assert remote.json()["model"] == {"name": MODEL, "version": version, "backend": f"sagemaker:{ENDPOINT}"}
    np.testing.assert_allclose(
        probabilities(remote.json()["predictions"]), probabilities(local.json()["predictions"]), atol=1e-6
    )
    assert [p["label"] for p in remote.json()["predictions"]] == [
        p["label"] for p in local.json()["predictions"]
    ]
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_version"] == str(version)


def test_rules_and_quality_checks_apply_to_an_endpoints_answers(
    client: TestClient, endpoint: Running, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(monkeypatch, endpoint.url)
    demo = demos[MODEL]
    version = on_endpoint(demo)
    set_alias(wiring.registry(), MODEL, "champion", version, "t")
    ruleset = {
        "rules": [
            {"id": "large", "stage": "pre", "when": "input.mean_radius > 25.0", "then": {"reject": "refer"}},
            {"id": "decide", "stage": "post", "when": "true", "then": {"set": {"decision": "seen"}}},
        ]
    }
    from aimass.contracts.rules import Ruleset

    save_ruleset(wiring.registry(), MODEL, Ruleset.model_validate(ruleset), "t")
    client.put(f"/v1/models/{MODEL}/quality", json={"violations": "reject", "anomalies": "flag"})
    rows = instances(demo, 2)

    answered = client.post(PREDICT, json={"instances": rows})
    rejected = client.post(PREDICT, json={"instances": [{**rows[0], "mean_radius": 26.0}]})
    out_of_range = client.post(PREDICT, json={"instances": [{**rows[0], "mean_texture": -1e6}]})

    assert answered.status_code == 200, answered.text
    assert answered.json()["model"]["backend"] == f"sagemaker:{ENDPOINT}"
    assert [p["decision"] for p in answered.json()["predictions"]] == ["seen", "seen"]
    assert rejected.status_code == 422 and rejected.json()["error"]["code"] == "rule_rejected"
    assert out_of_range.status_code == 422, out_of_range.text
    assert out_of_range.json()["error"]["details"][0]["loc"][:2] == ["instances", 0]


class RecordedRuntime(http.server.BaseHTTPRequestHandler):
    """Answers every InvokeEndpoint as SageMaker Runtime answers a throttled one, counting calls."""

    calls: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        RecordedRuntime.calls.append(self.path)
        body = json.dumps({"message": "Rate exceeded"}).encode()
        self.send_response(400)
        self.send_header("x-amzn-ErrorType", "ThrottlingException")
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def throttling() -> Iterator[str]:
    RecordedRuntime.calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordedRuntime)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_throttled_endpoint_is_a_429_with_retry_after_after_bounded_retries(
    client: TestClient, throttling: str, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(
        monkeypatch,
        throttling,
        sagemaker_max_attempts="3",
        sagemaker_read_timeout_s="1",
        sagemaker_retry_after_s="7",
    )
    version = on_endpoint(demos[MODEL])

    answer = client.post(
        f"/v1/models/{MODEL}/versions/{version}:predict", json={"instances": instances(demos[MODEL], 1)}
    )

    assert answer.status_code == 429, answer.text
    assert answer.headers["Retry-After"] == "7"
    assert answer.json()["error"]["code"] == "backend_throttled"
    assert "Rate exceeded" in answer.json()["error"]["message"]
    assert RecordedRuntime.calls == [f"/endpoints/{ENDPOINT}/invocations"] * 3


def test_an_endpoint_that_is_down_is_a_503_and_the_fallback_version_answers_when_there_is_one(
    client: TestClient, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(monkeypatch, f"http://127.0.0.1:{free_port()}", sagemaker_max_attempts="2")
    demo = demos[MODEL]
    version = on_endpoint(demo)
    set_alias(wiring.registry(), MODEL, "champion", version, "t")
    body = {"instances": instances(demo, 3)}
    v2_body = {
        "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": demo.holdout[0].tolist()}]
    }

    before = prometheus_samples(client.get("/metrics").text)
    down = client.post(PREDICT, json=body)
    set_alias(wiring.registry(), MODEL, "fallback", 1, "t")
    wiring.registry_changed(MODEL)
    fell_back = client.post(PREDICT, json=body)
    fell_back_v2 = client.post(f"/v2/models/{MODEL}/infer", json=v2_body)
    pinned = client.post(f"/v1/models/{MODEL}/versions/{version}:predict", json=body)

    assert down.status_code == 503, down.text
    assert down.headers["Retry-After"] == "2"
    assert down.json()["error"]["code"] == "backend_unavailable"
    assert fell_back.status_code == 200, fell_back.text
    answer = fell_back.json()
    assert answer["model"] == {"name": MODEL, "version": 1, "backend": "lambda"}
    assert answer["fallback"]["from"] == {
        "name": MODEL,
        "version": version,
        "backend": f"sagemaker:{ENDPOINT}",
    }
    assert answer["fallback"]["reason"] == "backend_unavailable"
    np.testing.assert_allclose(
        probabilities(answer["predictions"]), demo.holdout_probabilities[:3], atol=1e-5
    )
    assert fell_back_v2.status_code == 200, fell_back_v2.text
    assert fell_back_v2.json()["model_version"] == "1"
    assert fell_back_v2.json()["parameters"]["fallback"]["from"]["version"] == version
    # A request for one version by number gets that version or an error, never another version.
    assert pinned.status_code == 503
    # The local server's metrics count both fallbacks, and the two 503s by their code
    after = prometheus_samples(client.get("/metrics").text)
    assert added(before, after, "aimass_fallbacks_total", model=MODEL) == 2
    assert added(before, after, "aimass_errors_total", model=MODEL, code="backend_unavailable") == 2


def test_an_endpoint_serving_another_model_is_a_502_not_a_500(
    client: TestClient, endpoint: Running, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(monkeypatch, endpoint.url)
    version = on_endpoint(demos["digits"])  # the endpoint holds the breast-cancer model

    answer = client.post(
        f"/v1/models/digits/versions/{version}:predict",
        json={"instances": demos["digits"].holdout[:1].tolist()},
    )

    assert answer.status_code == 502, answer.text
    assert answer.json()["error"]["code"] == "backend_error"
    assert "ModelError" in answer.json()["error"]["message"]


def test_a_version_whose_endpoint_now_serves_another_model_is_refused_or_falls_back(
    client: TestClient, endpoint: Running, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(monkeypatch, endpoint.url)
    demo = demos[MODEL]
    # A retrained version registered for the endpoint, while the endpoint still runs the file it
    # was deployed with.
    stale = register_version(
        wiring.registry(),
        "aimass-test",
        MODEL,
        retrained(demo.model),
        "t",
        demo.enrichment,
        backend=f"sagemaker:{ENDPOINT}",
    ).version
    set_alias(wiring.registry(), MODEL, "champion", stale, "t")
    body = {"instances": instances(demo, 1)}

    pinned = client.post(f"/v1/models/{MODEL}/versions/{stale}:predict", json=body)
    set_alias(wiring.registry(), MODEL, "fallback", 1, "t")
    wiring.registry_changed(MODEL)
    fell_back = client.post(PREDICT, json=body)

    assert pinned.status_code == 502, pinned.text
    assert "now serves another model" in pinned.json()["error"]["message"]
    assert fell_back.status_code == 200, fell_back.text
    assert fell_back.json()["model"]["version"] == 1
    assert fell_back.json()["fallback"]["reason"] == "backend_error"


def upload(client: TestClient, demo: Demo, **form: str) -> Any:
    return client.post(
        f"/v1/models/{MODEL}/versions",
        files={"model": ("model.onnx", demo.model)},
        data={"metadata": demo.enrichment.model_dump_json(), **form},
    )


def test_a_model_too_large_for_the_lambda_is_routed_to_the_stacks_endpoint(
    client: TestClient, endpoint: Running, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = demos[MODEL]
    limit = str(len(demo.model) - 1)
    use_runtime(monkeypatch, endpoint.url, lambda_max_model_bytes=limit, sagemaker_endpoint=ENDPOINT)
    registered = upload(client, demo)
    version = registered.json()["version"]
    answer = client.post(
        f"/v1/models/{MODEL}/versions/{version}:predict", json={"instances": instances(demo, 2)}
    )

    use_runtime(monkeypatch, endpoint.url, lambda_max_model_bytes=limit, sagemaker_endpoint="")
    nowhere = upload(client, demo)
    forced = upload(client, demo, backend="lambda")
    malformed = upload(client, demo, backend="sagemaker:")

    assert registered.status_code == 201, registered.text
    assert registered.json()["backend"] == f"sagemaker:{ENDPOINT}"
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"]["backend"] == f"sagemaker:{ENDPOINT}"
    np.testing.assert_allclose(
        probabilities(answer.json()["predictions"]), demo.holdout_probabilities[:2], atol=1e-5
    )
    assert nowhere.status_code == 422
    assert nowhere.json()["error"]["details"][0]["loc"] == ["body", "model"]
    assert "no GPU endpoint" in nowhere.json()["error"]["message"]
    assert forced.status_code == 422
    assert forced.json()["error"]["details"][0]["loc"] == ["body", "backend"]
    assert malformed.status_code == 422
    assert malformed.json()["error"]["details"][0]["type"] == "pattern"
    # Refused uploads take no version number.
    assert wiring.registry().get_model(MODEL).latest_version == version


def test_a_version_on_an_endpoint_is_never_local_so_its_requests_leave_the_event_loop(
    client: TestClient, endpoint: Running, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a version on the endpoint that has answered, and the Lambda's own version 1 that has too
    use_runtime(monkeypatch, endpoint.url)
    version = on_endpoint(demos[MODEL])
    body = {"instances": instances(demos[MODEL], 1)}
    for number in (version, 1):
        assert client.post(f"/v1/models/{MODEL}/versions/{number}:predict", json=body).status_code == 200
    # Then only the Lambda's is answered from the process alone: the endpoint's waits on the network
    store = wiring.serving().store
    assert store.local(MODEL, version=1) and not store.local(MODEL, version=version)


def test_a_shadow_on_an_endpoint_is_invoked_by_the_worker_and_compared_never_answering(
    client: TestClient, endpoint: Running, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(monkeypatch, endpoint.url)
    demo = demos[MODEL]
    # Given the same model on the endpoint, shadowing every request the Lambda's v1 answers
    version = on_endpoint(demo)
    assert (
        client.put(f"/v1/models/{MODEL}/rollout", json={"version": version, "shadow": 100}).status_code == 200
    )
    answers = [client.post(PREDICT, json={"instances": instances(demo, 3)}).json() for _ in range(4)]
    # Then v1 answered each, and the endpoint's answers agree with them
    assert {a["model"]["backend"] for a in answers} == {"lambda"}
    assert wiring.serving().shadows.drain()
    shadow = client.get(f"/v1/models/{MODEL}/rollout").json()["live"]["shadow"]
    assert (shadow["requests"], shadow["errors"], shadow["compared"], shadow["agreement"]) == (4, 0, 12, 1.0)


def test_a_shadow_whose_endpoint_is_down_is_counted_and_the_answers_are_the_lambdas(
    client: TestClient, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(monkeypatch, f"http://127.0.0.1:{free_port()}", sagemaker_max_attempts="1")
    demo = demos[MODEL]
    version = on_endpoint(demo)
    body = {"instances": instances(demo, 3)}
    before = client.post(f"/v1/models/{MODEL}/versions/1:predict", json=body).json()["predictions"]
    assert (
        client.put(f"/v1/models/{MODEL}/rollout", json={"version": version, "shadow": 100}).status_code == 200
    )
    responses = [client.post(PREDICT, json=body) for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert all(r.json()["predictions"] == before for r in responses)
    assert wiring.serving().shadows.drain()
    shadow = client.get(f"/v1/models/{MODEL}/rollout").json()["live"]["shadow"]
    assert (shadow["requests"], shadow["errors"], shadow["compared"]) == (3, 3, 0)
