"""Data quality through the API: baselines at registration, checks and anomaly scores on every
prediction under the model's policy, and batch reports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aimass import aws
from aimass.api.app import create_app
from aimass.contracts.quality import QualityReport

PREDICT = "/v1/models/breast-cancer:predict"
POLICY = "/v1/models/breast-cancer/quality"


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def rows(demos: dict[str, Any], count: int = 5) -> list[dict[str, float]]:
    names = [f.name for f in demos["breast-cancer"].enrichment.features]
    return [dict(zip(names, row, strict=True)) for row in demos["breast-cancer"].holdout[:count].tolist()]


def test_a_version_registered_with_reference_data_has_a_model_monitor_baseline(client: TestClient) -> None:
    record = client.get("/v1/models/breast-cancer/versions/1").json()
    baseline = record["baseline"]
    assert baseline["item_count"] == 426 and baseline["source"] == "breast-cancer demo training data"
    stored = aws.client("s3").list_objects_v2(Bucket="aimass-test", Prefix="models/breast-cancer/1/baseline/")
    assert {o["Key"].rsplit("/", 1)[1] for o in stored["Contents"]} == {
        "statistics.json",
        "constraints.json",
        "anomaly.json",
        "background.json",
    }
    assert set(baseline["sha256"]) == {
        "statistics.json",
        "constraints.json",
        "anomaly.json",
        "background.json",
    }
    constraints = json.loads(
        aws.client("s3")
        .get_object(Bucket="aimass-test", Key="models/breast-cancer/1/baseline/constraints.json")["Body"]
        .read()
    )
    assert (
        constraints["features"][0]["name"] == "mean_radius"
        and constraints["features"][0]["completeness"] == 1
    )


def test_every_prediction_has_an_anomaly_score_and_an_outlier_is_flagged(
    client: TestClient, demos: dict[str, Any]
) -> None:
    instances = rows(demos, 20)
    instances[3] = {k: v * 3 for k, v in instances[3].items()}
    predictions = client.post(PREDICT, json={"instances": instances}).json()["predictions"]
    anomalous = [i for i, p in enumerate(predictions) if p["anomaly"]["anomalous"]]
    assert anomalous == [3]
    assert predictions[3]["anomaly"]["score"] > 10 * predictions[3]["anomaly"]["threshold"]
    assert {v["check"] for v in predictions[3]["quality"]} == {"range"}
    assert "label" in predictions[3] and "probabilities" in predictions[3]


def test_a_reject_policy_refuses_out_of_range_values_with_field_details(
    client: TestClient, demos: dict[str, Any]
) -> None:
    assert client.get(POLICY).json() == {
        "violations": "flag",
        "anomalies": "flag",
        "pii": "erase",
        "pii_features": [],
    }
    saved = client.put(POLICY, json={"violations": "reject", "anomalies": "flag"})
    assert saved.status_code == 200
    instances = rows(demos, 2)
    instances[1]["mean_radius"] = 99.0
    response = client.post(PREDICT, json={"instances": instances})
    assert response.status_code == 422
    (detail,) = response.json()["error"]["details"]
    assert detail["loc"] == ["instances", 1, "mean_radius"] and detail["type"] == "quality_range"
    # The training data's range, widened by a tenth of it on each side.
    assert detail["message"] == "99 is outside [5.6491, 30.1519]"
    trail = client.get("/v1/models/breast-cancer/audit").json()
    assert [r["details"]["policy"]["violations"] for r in trail if r["action"] == "set_quality_policy"] == [
        "reject"
    ]


def test_policies_choose_between_rejecting_flagging_and_ignoring_anomalies(
    client: TestClient, demos: dict[str, Any]
) -> None:
    outlier = {k: v * 3 for k, v in rows(demos, 1)[0].items()}
    client.put(POLICY, json={"violations": "ignore", "anomalies": "reject"})
    refused = client.post(PREDICT, json={"instances": [outlier]})
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["type"] == "anomaly"
    client.put(POLICY, json={"violations": "ignore", "anomalies": "ignore"})
    (quiet,) = client.post(PREDICT, json={"instances": [outlier]}).json()["predictions"]
    assert set(quiet) == {"label", "probabilities"}


def test_unknown_features_are_reported_when_flagged_and_refused_when_rejected(
    client: TestClient, demos: dict[str, Any]
) -> None:
    instance = rows(demos, 1)[0] | {"patient_id": 7.0}
    (item,) = client.post(PREDICT, json={"instances": [instance]}).json()["predictions"]
    assert {
        "feature": "patient_id",
        "check": "unknown_feature",
        "message": "not a feature of the model",
    } in item["quality"]
    client.put(POLICY, json={"violations": "reject"})
    refused = client.post(PREDICT, json={"instances": [instance]})
    assert refused.status_code == 422
    (detail,) = refused.json()["error"]["details"]
    # docs/quality.md names this type: the decoder's, not a `quality_` one.
    assert (detail["loc"], detail["type"]) == (["instances", 0, "patient_id"], "unknown_feature")


def test_an_invalid_policy_is_a_field_error(client: TestClient) -> None:
    response = client.put(POLICY, json={"violations": "shout"})
    assert response.status_code == 422 and response.json()["error"]["details"][0]["loc"] == [
        "body",
        "violations",
    ]


def test_the_image_model_scores_noise_as_anomalous(client: TestClient, demos: dict[str, Any]) -> None:
    images = demos["digits"].holdout[5:10].tolist()
    noise = np.random.default_rng(0).random((8, 8)).tolist()
    predictions = client.post("/v1/models/digits:predict", json={"instances": [*images, noise]}).json()[
        "predictions"
    ]
    assert [p["anomaly"]["anomalous"] for p in predictions] == [False] * 5 + [True]


def test_a_quality_check_reports_drift_for_a_shifted_batch_and_none_for_a_clean_one(
    client: TestClient, demos: dict[str, Any]
) -> None:
    clean = client.post("/v1/models/breast-cancer/quality:check", json={"instances": rows(demos, 143)})
    assert clean.status_code == 200
    report = QualityReport.model_validate(clean.json())
    assert report.item_count == 143 and report.completeness["mean_radius"] == 1.0
    assert sum(d.drifted for d in report.drift) <= 3 and len(report.drift) == 30
    shifted = [{k: v * 1.3 for k, v in row.items()} for row in rows(demos, 143)]
    drifted = QualityReport.model_validate(
        client.post("/v1/models/breast-cancer/quality:check", json={"instances": shifted}).json()
    )
    assert sum(d.drifted for d in drifted.drift) >= 25
    kinds = {v.constraint_check_type for v in drifted.violations}
    assert {"baseline_drift_check", "value_range_check"} <= kinds
    assert report.anomalies is not None and drifted.anomalies is not None
    assert drifted.anomalies.rate > report.anomalies.rate


def _csv(rows_: list[dict[str, float]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows_[0]))
    writer.writeheader()
    writer.writerows(rows_)
    return out.getvalue().encode()


def _upload(client: TestClient, demos: dict[str, Any], **parts: Any) -> Any:
    demo = demos["breast-cancer"]
    return client.post(
        "/v1/models/breast-cancer/versions",
        files={"model": ("m.onnx", demo.model), **parts.pop("files", {})},
        data={"metadata": demo.enrichment.model_dump_json(), **parts},
    )


def test_an_uploaded_reference_file_or_s3_uri_becomes_the_new_versions_baseline(
    client: TestClient, demos: dict[str, Any]
) -> None:
    reference = _csv(rows(demos, 100))
    uploaded = _upload(client, demos, files={"reference": ("ref.csv", reference)})
    assert uploaded.status_code == 201 and uploaded.json()["baseline"]["item_count"] == 100
    aws.client("s3").put_object(Bucket="aimass-test", Key="datasets/breast-cancer/ref.csv", Body=reference)
    from_s3 = _upload(client, demos, reference_uri="s3://aimass-test/datasets/breast-cancer/ref.csv")
    assert from_s3.status_code == 201 and from_s3.json()["baseline"]["source"].startswith("s3://")


def test_a_reference_without_the_models_columns_is_refused_before_a_version_is_taken(
    client: TestClient, demos: dict[str, Any]
) -> None:
    partial = [{k: v for k, v in row.items() if k != "worst_area"} for row in rows(demos, 10)]
    response = _upload(client, demos, files={"reference": ("ref.csv", _csv(partial))})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"loc": ["reference", "worst_area"], "message": "column is missing", "type": "missing_column"}
    ]
    assert client.get("/v1/models/breast-cancer").json()["latest_version"] == 1


def test_v2_responses_carry_the_anomaly_scores_as_parameters(
    client: TestClient, demos: dict[str, Any]
) -> None:
    images = np.concatenate([demos["digits"].holdout[5:7], np.ones((1, 8, 8), dtype=np.float32) * 0.9])
    body = {
        "inputs": [
            {"name": "image", "shape": [3, 8, 8], "datatype": "FP32", "data": images.reshape(-1).tolist()}
        ]
    }
    parameters = client.post("/v2/models/digits/infer", json=body).json()["parameters"]
    assert parameters["anomalous"] == [False, False, True] and len(parameters["anomaly_scores"]) == 3


def test_a_reference_uri_that_cannot_be_read_is_a_field_error(
    client: TestClient, demos: dict[str, Any]
) -> None:
    for uri in ("s3://aimass-test/datasets/none.csv", "s3://no-such-bucket/ref.csv", "ref.csv"):
        response = _upload(client, demos, reference_uri=uri)
        assert response.status_code == 422, (uri, response.text)
        assert response.json()["error"]["details"][0]["loc"] == ["body", "reference_uri"]


def test_a_reject_policy_refuses_a_v2_request_too(client: TestClient, demos: dict[str, Any]) -> None:
    client.put(POLICY, json={"violations": "reject", "anomalies": "flag"})
    held = demos["breast-cancer"].holdout[:2].astype(float)
    held[1, 0] = 99.0  # mean_radius, far outside the training range
    [spec] = client.get("/v2/models/breast-cancer").json()["inputs"]
    body = {
        "inputs": [
            {
                "name": spec["name"],
                "shape": list(held.shape),
                "datatype": "FP32",
                "data": held.ravel().tolist(),
            }
        ]
    }
    response = client.post("/v2/models/breast-cancer/infer", json=body)
    assert response.status_code == 422
    assert "mean_radius" in response.json()["error"] and "99" in response.json()["error"]


def test_a_versions_baseline_route_gives_its_statistics_and_constraints_as_stored(client: TestClient) -> None:
    # Given breast-cancer v1, registered with a reference dataset
    stored = {
        name: json.loads(
            aws.client("s3")
            .get_object(Bucket="aimass-test", Key=f"models/breast-cancer/1/baseline/{name}.json")["Body"]
            .read()
        )
        for name in ("statistics", "constraints")
    }

    # When its baseline is asked for
    response = client.get("/v1/models/breast-cancer/versions/1/baseline")

    # Then it is the two files in S3, as they are
    assert response.status_code == 200
    assert response.json() == {"version": 1, **stored}


def test_a_version_without_a_baseline_or_an_unknown_one_is_a_404(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given a version registered without a reference dataset
    version = _upload(client, demos).json()["version"]

    # When its baseline, and an unknown version's, are asked for
    missing = client.get(f"/v1/models/breast-cancer/versions/{version}/baseline")
    unknown = client.get("/v1/models/breast-cancer/versions/99/baseline")

    # Then both are 404s that say why
    assert missing.status_code == 404 and "has no baseline" in missing.json()["error"]["message"]
    assert unknown.status_code == 404
