"""The Lambda handlers fed the sample API Gateway events from events/, against moto."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from aimass import wiring
from aimass.contracts.rules import Ruleset
from aimass.local.lambda_runtime import LambdaContext, load_handler
from tests.support import binary_input, binary_request, event


@pytest.fixture(scope="module")
def online() -> Any:
    return load_handler("online")


@pytest.fixture(scope="module")
def admin() -> Any:
    return load_handler("registry")


def invoke(handler: Any, event_name: str, **overrides: Any) -> tuple[int, Any]:
    response = handler(event(event_name) | overrides, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_health_answers_without_touching_aws(online: Any) -> None:
    assert invoke(online, "health") == (200, {"status": "ok", "version": "0.1.0"})


@pytest.mark.parametrize(
    "event_name",
    ["v1_predict_breast_cancer", "v1_predict_breast_cancer_lists", "v1_predict_version", "v1_predict_alias"],
)
def test_v1_predictions_for_every_selector(
    online: Any, registered: Any, demos: dict[str, Any], event_name: str
) -> None:
    status, body = invoke(online, event_name)
    assert status == 200
    expected = demos["breast-cancer"].holdout_probabilities[:2]
    got = [[p["probabilities"]["malignant"], p["probabilities"]["benign"]] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert body["model"] == {"name": "breast-cancer", "version": 1, "backend": "lambda"}


def test_v1_digits_gives_the_digit(online: Any, registered: Any, demos: dict[str, Any]) -> None:
    status, body = invoke(online, "v1_predict_digits")
    assert status == 200
    assert body["predictions"][0]["label"] == str(int(np.argmax(demos["digits"].holdout_probabilities[0])))


def test_v2_infer_metadata_and_ready(online: Any, registered: Any, demos: dict[str, Any]) -> None:
    status, body = invoke(online, "v2_infer_digits")
    assert status == 200 and body["id"] == "req-1" and body["model_version"] == "1"
    probabilities = next(o for o in body["outputs"] if o["name"] == "probabilities")
    np.testing.assert_allclose(
        probabilities["data"], demos["digits"].holdout_probabilities[0], atol=1e-5, rtol=0
    )
    status, metadata = invoke(online, "v2_model_metadata")
    assert status == 200 and metadata["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": [-1, 8, 8]}
    ]
    assert invoke(online, "v2_model_ready") == (200, {"name": "digits", "ready": True})


def binary_event(data: list[float]) -> dict[str, Any]:
    """The V2 infer event with its tensor sent as binary data, as API Gateway hands a binary body to
    Lambda: base64, with isBase64Encoded."""
    raw, binary_headers = binary_request(
        {
            "id": "req-b",
            "inputs": [binary_input("image", [1, 8, 8], "FP32", 256)],
            "parameters": {"binary_data_output": True},
        },
        np.asarray(data, dtype="<f4").tobytes(),
    )
    base = event("v2_infer_digits")
    headers = base["headers"] | binary_headers | {"content-length": str(len(raw))}
    return {"headers": headers, "body": base64.b64encode(raw).decode(), "isBase64Encoded": True}


def test_v2_binary_tensors_survive_api_gateways_base64_both_ways(
    online: Any, registered: Any, demos: dict[str, Any]
) -> None:
    # Given the digits image as FP32 bytes in a base64-encoded API Gateway event
    image = json.loads(event("v2_infer_digits")["body"])["inputs"][0]["data"]

    # When the online function answers it, every output asked for in binary
    response = online(event("v2_infer_digits") | binary_event(image), LambdaContext())

    # Then the answer is binary too, base64 for API Gateway: a JSON header, then the raw outputs
    assert response["statusCode"] == 200 and response["isBase64Encoded"] is True
    assert response["headers"]["content-type"] == "application/octet-stream"
    content = base64.b64decode(response["body"])
    size = int(response["headers"]["inference-header-content-length"])
    header = json.loads(content[:size])
    assert header["id"] == "req-b"
    offset = size
    outputs = {}
    for output in header["outputs"]:
        length = output["parameters"]["binary_data_size"]
        outputs[output["name"]] = content[offset : offset + length]
        offset += length
    assert offset == len(content)
    np.testing.assert_allclose(
        np.frombuffer(outputs["probabilities"], dtype="<f4"),
        demos["digits"].holdout_probabilities[0],
        atol=1e-5,
        rtol=0,
    )


@pytest.mark.parametrize(
    ("event_name", "status", "code"),
    [
        ("v1_predict_bad_json", 400, "bad_json"),
        ("v1_predict_unknown_model", 404, "not_found"),
        ("v1_predict_invalid_instance", 422, "validation_error"),
    ],
)
def test_bad_requests_get_a_clear_4xx(
    online: Any, registered: Any, event_name: str, status: int, code: str
) -> None:
    got_status, body = invoke(online, event_name)
    assert (got_status, body["error"]["code"]) == (status, code)


def test_an_invalid_instance_names_every_bad_field(online: Any, registered: Any) -> None:
    _, body = invoke(online, "v1_predict_invalid_instance")
    problems = {tuple(d["loc"][2:]): d["type"] for d in body["error"]["details"]}
    assert problems == {("mean_radius",): "missing", ("colour",): "unknown_feature"}


def test_a_field_of_the_wrong_type_is_reported_once_the_keys_are_right(
    online: Any, registered: Any, demos: dict[str, Any]
) -> None:
    body = json.loads(event("v1_predict_breast_cancer")["body"])
    body["instances"][0]["mean_texture"] = "high"
    status, body = invoke(online, "v1_predict_breast_cancer", body=json.dumps(body))
    assert status == 422
    assert body["error"]["details"][0]["loc"] == ["instances", 0, "mean_texture"]


def test_registry_lists_shows_and_moves_aliases(admin: Any, registered: Any) -> None:
    status, listing = invoke(admin, "registry_list_models")
    assert status == 200 and listing == {"models": ["breast-cancer", "digits"]}
    status, model = invoke(admin, "registry_get_model")
    assert status == 200 and model["aliases"] == {"champion": 1} and len(model["versions"]) == 1
    assert model["ready"] is True
    status, alias = invoke(admin, "registry_set_alias")
    assert status == 200 and alias["version"] == 1 and alias["alias"] == "challenger"


def test_uploading_a_version_reads_the_signature_and_records_the_caller(admin: Any, registered: Any) -> None:
    status, record = invoke(admin, "registry_upload_version")
    assert status == 201
    assert record["version"] == 2 and record["signature"]["task"] == "classification"
    assert record["signature"]["features"][0]["name"] == "mean_radius"
    assert record["created_by"] == "arn:aws:iam::123456789012:user/data-scientist"


def test_a_graph_version_is_composed_through_the_registry_function_and_serves_online(
    admin: Any, online: Any, registered: Any
) -> None:
    # Given v2 uploaded, when an ensemble of the champion and v2 is composed (events/)
    assert invoke(admin, "registry_upload_version")[0] == 201
    status, record = invoke(admin, "registry_compose_version")
    assert status == 201, record
    assert record["version"] == 3 and record["backend"] == "graph"
    assert record["created_by"] == "arn:aws:iam::123456789012:user/data-scientist"
    # Then the online function serves it, with its steps on request
    predict = event("v1_predict_version")
    path = "/v1/models/breast-cancer/versions/3:predict"
    predict["rawPath"], predict["rawQueryString"] = path, "detail=steps"
    predict["requestContext"]["http"]["path"] = path
    status, answer = invoke(online, "v1_predict_version", **predict)
    assert status == 200, answer
    assert answer["model"]["backend"] == "graph" and len(answer["steps"]) == 2


def test_each_prediction_is_counted_per_model_in_the_metrics_log(
    online: Any, registered: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    invoke(online, "v1_predict_breast_cancer")
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    predictions = [m for m in emf if "Predictions" in m]
    assert (
        predictions
        and predictions[-1]["Predictions"] == [2.0]
        and predictions[-1]["model"] == "breast-cancer"
    )
    # Both rows are ordinary: counted, and none of them anomalous or flagged.
    assert predictions[-1]["Anomalies"] == [0.0] and predictions[-1]["QualityFlagged"] == [0.0]


def test_the_quality_policy_is_set_through_the_registry_function_and_applies_online(
    admin: Any, online: Any, registered: Any
) -> None:
    status, policy = invoke(admin, "registry_put_quality_policy")
    assert (status, policy) == (
        200,
        {"violations": "reject", "anomalies": "flag", "pii": "erase", "pii_features": []},
    )
    predict = event("v1_predict_breast_cancer")
    body = json.loads(predict["body"])
    body["instances"][0]["mean_radius"] = 500.0
    status, refused = invoke(online, "v1_predict_breast_cancer", body=json.dumps(body))
    assert status == 422 and refused["error"]["details"][0]["type"] == "quality_range"


def test_a_quality_check_answers_through_the_online_function(online: Any, registered: Any) -> None:
    status, report = invoke(online, "v1_quality_check")
    assert status == 200 and report["item_count"] == 2 and report["model"]["name"] == "breast-cancer"
    assert set(report["completeness"].values()) == {1.0}


def test_a_rule_rejection_is_counted_per_model_in_the_metrics_log(
    online: Any, registered: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a rule that rejects an implausible radius
    rule = {
        "id": "huge",
        "stage": "pre",
        "when": "input.mean_radius > 1000.0",
        "then": {"reject": "implausible"},
    }
    wiring.registry().put_ruleset("breast-cancer", Ruleset.model_validate({"rules": [rule]}), "test")
    body = json.loads(event("v1_predict_breast_cancer")["body"])
    body["instances"][0]["mean_radius"] = 5000.0
    capsys.readouterr()
    # When the online function is asked for a prediction the rule rejects
    status, _ = invoke(online, "v1_predict_breast_cancer", body=json.dumps(body))
    # Then the invocation's metrics line counts one rule rejection for the model, and no prediction
    assert status == 422
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    rejected = [m for m in emf if "RuleRejections" in m]
    assert rejected and rejected[-1]["RuleRejections"] == [1.0] and rejected[-1]["model"] == "breast-cancer"
    assert "Predictions" not in rejected[-1]


def test_the_functions_log_lines_carry_the_api_gateway_request_id(online: Any) -> None:
    from aimass.api.lambda_entry import logger

    invoke(online, "health")

    assert logger.get_correlation_id() == event("health")["requestContext"]["requestId"]
