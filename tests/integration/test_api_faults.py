"""Through the API, with moto: what clients see while AWS cannot be reached (a loaded model serves,
the rest is 503 aws_unavailable with Retry-After, readiness says why, recovery needs no restart),
and an answer from another version than the one resolved, because its artifact is refused."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import artifacts, aws, wiring
from aimass.api.app import create_app
from aimass.config import settings
from aimass.registration import register_version, set_alias
from tests.support import retrained

PREDICT = "/v1/models/breast-cancer:predict"


@pytest.fixture
def client(registered: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    # A TTL of 0: every request asks the registry, so an outage (or a move) is met at once.
    monkeypatch.setenv("AIMASS_REGISTRY_TTL_S", "0")
    settings.cache_clear()
    wiring.reset()
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client
    monkeypatch.undo()
    settings.cache_clear()
    aws.reset()
    wiring.reset()


def aws_at(endpoint: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AWS client made anew against `endpoint` (None: moto in-process)."""
    if endpoint is None:
        monkeypatch.delenv("AIMASS_AWS_ENDPOINT_URL", raising=False)
    else:
        monkeypatch.setenv("AIMASS_AWS_ENDPOINT_URL", endpoint)
    settings.cache_clear()
    aws.reset()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rows(demos: dict[str, Any], name: str) -> list[Any]:
    return [demos[name].holdout[0].tolist()]


def test_while_aws_is_down_a_loaded_model_serves_the_rest_is_503_and_readiness_says_why(
    client: TestClient, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given breast-cancer served once, then AWS unreachable
    assert client.post(PREDICT, json={"instances": rows(demos, "breast-cancer")}).status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    aws_at(f"http://127.0.0.1:{closed_port()}", monkeypatch)

    # When breast-cancer is asked again: it answers, from what was read
    served = client.post(PREDICT, json={"instances": rows(demos, "breast-cancer")})
    assert served.status_code == 200 and served.json()["model"]["version"] == 1

    # When digits, never read, is asked (V1 and V2): 503 aws_unavailable, Retry-After, no 500
    refused = client.post("/v1/models/digits:predict", json={"instances": rows(demos, "digits")})
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert refused.json()["error"]["code"] == "aws_unavailable"
    infer = client.post(
        "/v2/models/digits/infer",
        json={"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]},
    )
    assert infer.status_code == 503 and "AWS cannot be reached" in infer.json()["error"]

    # Then readiness is 503 with the reason
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert "EndpointConnectionError" in ready.json()["reason"]

    # When AWS is back: ready again and digits serves, with no restart
    aws_at(None, monkeypatch)
    assert client.get("/v2/health/ready").json() == {"ready": True}
    back = client.post("/v1/models/digits:predict", json={"instances": rows(demos, "digits")})
    assert back.status_code == 200


def test_an_sdk_error_met_outside_the_store_is_503_too(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The registry's routes read DynamoDB directly: the API's handler classifies what they meet
    aws_at(f"http://127.0.0.1:{closed_port()}", monkeypatch)
    response = client.get("/v1/models")
    assert response.status_code == 503 and response.json()["error"]["code"] == "aws_unavailable"


def test_an_answer_from_another_version_than_the_one_resolved_says_so_in_v1_and_v2(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given v1 served, then v2 the champion with its stored bytes altered
    demo = demos["breast-cancer"]
    metadata = client.get("/v2/models/breast-cancer").json()
    tensor = {
        "name": metadata["inputs"][0]["name"],
        "shape": [1, len(demo.holdout[0])],
        "datatype": "FP32",
        "data": demo.holdout[0].tolist(),
    }
    assert client.post(PREDICT, json={"instances": rows(demos, "breast-cancer")}).status_code == 200
    assert client.post("/v2/models/breast-cancer/infer", json={"inputs": [tensor]}).status_code == 200
    v2 = register_version(
        wiring.registry(), "aimass-test", "breast-cancer", retrained(demo.model), "t", demo.enrichment
    )
    set_alias(wiring.registry(), "breast-cancer", "champion", v2.version, "t")
    artifacts.put("aimass-test", f"models/breast-cancer/{v2.version}/model.onnx", demos["digits"].model)

    # When the champion is asked for, in V1 and in V2
    v1_answer = client.post(PREDICT, json={"instances": rows(demos, "breast-cancer")}).json()
    v2_answer = client.post("/v2/models/breast-cancer/infer", json={"inputs": [tensor]}).json()

    # Then v1 answers, and both say v2 was resolved and refused for its sha256
    resolved = {"name": "breast-cancer", "version": v2.version, "backend": "lambda"}
    assert v1_answer["model"]["version"] == 1
    assert v1_answer["fallback"]["from"] == resolved
    assert v1_answer["fallback"]["reason"] == "artifact_integrity"
    assert "sha256" in v1_answer["fallback"]["message"]
    assert v2_answer["model_version"] == "1"
    assert v2_answer["parameters"]["fallback"]["from"] == resolved
    assert v2_answer["parameters"]["fallback"]["reason"] == "artifact_integrity"


def test_the_lambda_counts_predictions_answered_stale_in_its_metrics(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the online function (its metrics), breast-cancer served once, then AWS unreachable
    from aimass.local.lambda_runtime import LambdaContext, load_handler
    from tests.support import event

    online = load_handler("online")
    predict = event("v1_predict_breast_cancer")
    assert online(predict, LambdaContext())["statusCode"] == 200
    aws_at(f"http://127.0.0.1:{closed_port()}", monkeypatch)
    capsys.readouterr()

    # When it answers again, from the registry as last read
    assert online(predict, LambdaContext())["statusCode"] == 200

    # Then its EMF line counts the instances answered stale, for the model
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    stale = [m for m in emf if "StalePredictions" in m]
    assert stale and stale[-1]["StalePredictions"] == [2.0] and stale[-1]["model"] == "breast-cancer"
