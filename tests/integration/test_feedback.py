"""Ground truth against moto: predictions get ids, labels for them become training rows that the next
Ingest snapshots, and they add up to each version's live accuracy."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aimass import aws, feedback, wiring
from aimass.api.app import create_app
from aimass.capture import PredictionId
from aimass.contracts.feedback import MAX_FEEDBACK_LABELS
from aimass.contracts.registry import SignatureEnrichment
from aimass.local.lambda_runtime import LambdaContext, load_handler
from aimass.pipeline import data
from aimass.registration import register_version
from aimass.serving.build import request_pipeline
from tests.conftest import reset_caches
from tests.support import event

BUCKET = "aimass-test"
CLASSES = ["malignant", "benign"]


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def features(demos: dict[str, Any]) -> list[str]:
    return [f.name for f in demos["breast-cancer"].enrichment.features]


def instances(demos: dict[str, Any], count: int) -> list[dict[str, float]]:
    rows = demos["breast-cancer"].holdout[:count]
    return [dict(zip(features(demos), map(float, row), strict=True)) for row in rows]


def predict(client: TestClient, demos: dict[str, Any], count: int) -> dict[str, Any]:
    response = client.post("/v1/models/breast-cancer:predict", json={"instances": instances(demos, count)})
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def objects(prefix: str) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def read(key: str) -> bytes:
    return aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()  # type: ignore[no-any-return]


def problems(response: Any) -> list[tuple[Any, str]]:
    return [(tuple(d["loc"]), d["type"]) for d in response.json()["error"]["details"]]


def test_a_prediction_names_each_instance_and_its_capture_holds_what_the_model_saw(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given three instances keyed by feature name, when they are predicted
    answer = predict(client, demos, 3)
    # Then each prediction has an id naming one capture object and consecutive lines of it (requests
    # arriving together share an object), and that object holds them there
    ids = answer["prediction_ids"]
    assert len(ids) == 3 and len(set(ids)) == 3
    parsed = [PredictionId.parse(i) for i in ids]
    assert {p.model for p in parsed} == {"breast-cancer"} and len({p.key for p in parsed}) == 1
    first = parsed[0].index
    assert [p.index for p in parsed] == [first, first + 1, first + 2]
    wiring.flush_capture()
    every = [json.loads(line) for line in read(parsed[0].key).splitlines()]
    lines = every[first : first + 3]
    assert [line["eventMetadata"]["eventId"] for line in lines] == ids
    assert lines[0]["eventMetadata"]["modelVersion"] == 1
    captured = json.loads(lines[0]["captureData"]["endpointInput"]["data"])
    sent = instances(demos, 1)[0]
    assert list(captured) == features(demos)
    np.testing.assert_allclose([captured[k] for k in sent], list(sent.values()), rtol=1e-6)
    output = json.loads(lines[0]["captureData"]["endpointOutput"]["data"])
    assert output["label"] == answer["predictions"][0]["label"]


def test_v2_infer_carries_the_prediction_ids_in_its_parameters(
    client: TestClient, demos: dict[str, Any]
) -> None:
    rows = demos["digits"].holdout[:2]
    response = client.post(
        "/v2/models/digits/infer",
        json={
            "inputs": [
                {"name": "image", "shape": list(rows.shape), "datatype": "FP32", "data": rows.tolist()}
            ]
        },
    )
    assert response.status_code == 200
    ids = response.json()["parameters"]["prediction_ids"]
    assert len(ids) == 2 and ids[0].startswith("digits:")
    # The capture holds the V1-shaped answer, so a label can be checked against it
    wiring.flush_capture()
    line = json.loads(read(PredictionId.parse(ids[0]).key).splitlines()[0])
    assert json.loads(line["captureData"]["endpointOutput"]["data"])["label"] == str(
        int(np.argmax(demos["digits"].holdout_probabilities[0]))
    )


def test_labels_become_training_rows_that_the_next_ingest_snapshots(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given four predictions and their true labels, as names and as class indices
    ids = predict(client, demos, 4)["prediction_ids"]
    truth = [0, 1, 1, 0]
    labels = [
        {"prediction_id": pid, "label": CLASSES[t] if i % 2 else t}
        for i, (pid, t) in enumerate(zip(ids, truth, strict=True))
    ]
    # When they are sent
    response = client.post("/v1/models/breast-cancer/feedback", json={"labels": labels})
    # Then all are accepted, as one CSV under datasets/<model>/feedback/ with the features and label
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 4 and body["rejected"] == []
    [key] = objects("datasets/breast-cancer/feedback/")
    assert body["files"] == [f"s3://{BUCKET}/{key}"] and key.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(read(key).decode())))
    assert [r["prediction_id"] for r in rows] == ids
    assert [r["label"] for r in rows] == [CLASSES[t] for t in truth]
    assert float(rows[0][features(demos)[0]]) == pytest.approx(instances(demos, 1)[0][features(demos)[0]])
    # And the next Ingest snapshots them with the rest of the model's data, once each
    snapshot = data.ingest(BUCKET, "breast-cancer", "run-1", features(demos), "label")
    assert [f["key"] for f in snapshot["files"]] == [key] and snapshot["rows"] == 4
    header, records = data.read_snapshot(snapshot["uri"], snapshot["sha256"])
    assert [r[header.index("label")] for r in records] == [CLASSES[t] for t in truth]


def test_the_label_column_is_the_one_the_training_settings_name(
    client: TestClient, demos: dict[str, Any]
) -> None:
    aws.client("s3").put_object(
        Bucket=BUCKET, Key="datasets/breast-cancer/training.json", Body=b'{"label": "diagnosis"}'
    )
    [pid] = predict(client, demos, 1)["prediction_ids"]
    response = client.post(
        "/v1/models/breast-cancer/feedback", json={"labels": [{"prediction_id": pid, "label": "benign"}]}
    )
    assert response.status_code == 200
    [key] = objects("datasets/breast-cancer/feedback/")
    assert next(csv.DictReader(io.StringIO(read(key).decode())))["diagnosis"] == "benign"


def test_live_accuracy_counts_labelled_and_correct_predictions_per_version(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given four predictions, three labelled with what the model said and one with the other class
    answer = predict(client, demos, 4)
    said = [p["label"] for p in answer["predictions"]]
    given = [*said[:3], CLASSES[1 - CLASSES.index(said[3])]]
    labels = [{"prediction_id": p, "label": g} for p, g in zip(answer["prediction_ids"], given, strict=True)]
    posted = client.post("/v1/models/breast-cancer/feedback", json={"labels": labels}).json()
    # Then the answer and the feedback route both say 3 of 4 right for v1
    expected = [
        {
            "version": 1,
            "task": "classification",
            "labelled": 4,
            "correct": 3,
            "accuracy": 0.75,
            "mae": None,
        }
    ]
    assert posted["versions"] == expected
    live = client.get("/v1/models/breast-cancer/feedback")
    assert live.status_code == 200 and live.json() == {"model": "breast-cancer", "versions": expected}
    assert client.get("/v1/models/digits/feedback").json()["versions"] == []


def test_a_prediction_keeps_its_first_label(client: TestClient, demos: dict[str, Any]) -> None:
    [pid] = predict(client, demos, 1)["prediction_ids"]
    first = client.post(
        "/v1/models/breast-cancer/feedback", json={"labels": [{"prediction_id": pid, "label": 0}]}
    )
    assert first.status_code == 200
    # When the same prediction is labelled again, it is refused and nothing more is written or counted
    again = client.post(
        "/v1/models/breast-cancer/feedback", json={"labels": [{"prediction_id": pid, "label": 1}]}
    )
    assert again.status_code == 422
    assert problems(again) == [(("body", "labels", 0, "prediction_id"), "already_labelled")]
    assert len(objects("datasets/breast-cancer/feedback/")) == 1
    assert client.get("/v1/models/breast-cancer/feedback").json()["versions"][0]["labelled"] == 1


def test_each_bad_label_is_refused_with_its_reason(client: TestClient, demos: dict[str, Any]) -> None:
    ids = predict(client, demos, 2)["prediction_ids"]
    digits = client.post(
        "/v1/models/digits:predict", json={"instances": [demos["digits"].holdout[0].tolist()]}
    )
    unknown = str(PredictionId("breast-cancer", "2020010100", "0" * 32, 0))
    labels = [
        {"prediction_id": unknown, "label": "benign"},
        {"prediction_id": digits.json()["prediction_ids"][0], "label": "3"},
        {"prediction_id": ids[0], "label": "maybe"},
        {"prediction_id": ids[1], "label": 7},
        {"prediction_id": ids[1].rsplit(":", 1)[0] + ":5", "label": "benign"},
    ]
    response = client.post("/v1/models/breast-cancer/feedback", json={"labels": labels})
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
    assert problems(response) == [
        (("body", "labels", 0, "prediction_id"), "unknown_prediction"),
        (("body", "labels", 1, "prediction_id"), "model_mismatch"),
        (("body", "labels", 2, "label"), "unknown_label"),
        (("body", "labels", 3, "label"), "unknown_label"),
        (("body", "labels", 4, "prediction_id"), "unknown_prediction"),
    ]
    assert objects("datasets/breast-cancer/feedback/") == []


def test_a_label_given_twice_in_one_request_is_refused_the_second_time(
    client: TestClient, demos: dict[str, Any]
) -> None:
    [pid] = predict(client, demos, 1)["prediction_ids"]
    labels = [{"prediction_id": pid, "label": "benign"}, {"prediction_id": pid, "label": "malignant"}]
    response = client.post("/v1/models/breast-cancer/feedback", json={"labels": labels})
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert [(d["loc"], d["type"]) for d in response.json()["rejected"]] == [
        (["body", "labels", 1, "prediction_id"], "duplicate")
    ]


def test_good_labels_are_recorded_and_bad_ones_reported_alongside(
    client: TestClient, demos: dict[str, Any]
) -> None:
    ids = predict(client, demos, 2)["prediction_ids"]
    labels = [{"prediction_id": ids[0], "label": "benign"}, {"prediction_id": ids[1], "label": "maybe"}]
    response = client.post("/v1/models/breast-cancer/feedback", json={"labels": labels})
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1 and body["versions"][0]["labelled"] == 1
    assert [(d["loc"], d["type"]) for d in body["rejected"]] == [
        (["body", "labels", 1, "label"], "unknown_label")
    ]
    [key] = objects("datasets/breast-cancer/feedback/")
    assert [r["prediction_id"] for r in csv.DictReader(io.StringIO(read(key).decode()))] == [ids[0]]


def test_malformed_too_many_and_unknown_model_requests_are_4xx(client: TestClient) -> None:
    malformed = client.post(
        "/v1/models/breast-cancer/feedback", json={"labels": [{"prediction_id": "abc", "label": 1}]}
    )
    assert malformed.status_code == 422
    assert problems(malformed) == [(("body", "labels", 0, "prediction_id"), "string_pattern_mismatch")]
    pid = str(PredictionId("breast-cancer", "2020010100", "0" * 32, 0))
    many = [{"prediction_id": pid, "label": 1}] * (MAX_FEEDBACK_LABELS + 1)
    too_many = client.post("/v1/models/breast-cancer/feedback", json={"labels": many})
    assert too_many.status_code == 422 and problems(too_many) == [(("body", "labels"), "too_long")]
    nope = str(PredictionId("nope", "2020010100", "0" * 32, 0))
    unknown = client.post("/v1/models/nope/feedback", json={"labels": [{"prediction_id": nope, "label": 1}]})
    assert unknown.status_code == 404 and client.get("/v1/models/nope/feedback").status_code == 404


def test_a_regression_model_gets_a_live_mae(client: TestClient) -> None:
    # Given a linear regression y = 2a + b registered with named features
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    model = to_onnx(LinearRegression().fit(x, 2 * x[:, 0] + x[:, 1]), x[:1])
    enrichment = SignatureEnrichment(features=["a", "b"], task="regression")
    register_version(wiring.registry(), BUCKET, "line", model.SerializeToString(), "t", enrichment)
    answer = client.post("/v1/models/line:predict", json={"instances": [{"a": 1.0, "b": 1.0}, [0.0, 0.0]]})
    ids = answer.json()["prediction_ids"]
    # When the true values are 3.5 and 1.0 (errors 0.5 and 1.0)
    labels = [{"prediction_id": ids[0], "label": 3.5}, {"prediction_id": ids[1], "label": 1}]
    response = client.post("/v1/models/line/feedback", json={"labels": labels})
    # Then the live MAE is 0.75, and a label that is not a number is refused
    assert response.status_code == 200, response.text
    [version] = response.json()["versions"]
    assert version["task"] == "regression" and version["labelled"] == 2 and version["accuracy"] is None
    assert version["mae"] == pytest.approx(0.75, abs=1e-5)
    text = client.post(
        "/v1/models/line/feedback",
        json={"labels": [{"prediction_id": ids[0].rsplit(":", 1)[0] + ":0", "label": "high"}]},
    )
    assert text.status_code == 422


def test_a_capture_that_cannot_be_written_does_not_fail_the_prediction(
    registered: Any, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a capture bucket that does not exist (models are read from their own artifact URIs)
    monkeypatch.setenv("AIMASS_BUCKET", "aimass-no-such-bucket")
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR):
        # When a prediction is made, it is answered, and the failed write is logged
        answer = predict(client, demos, 1)
        wiring.flush_capture()
    assert answer["predictions"] and answer["prediction_ids"]
    assert any(
        "capture s3://aimass-no-such-bucket/capture/breast-cancer/" in r.message for r in caplog.records
    )


def test_a_capture_that_raises_leaves_the_prediction_without_ids(
    registered: Any, demos: dict[str, Any], tmp_path: Any
) -> None:
    def broken(_: Any) -> list[str]:
        raise RuntimeError("capture is broken")

    serving = request_pipeline(wiring.registry(), tmp_path, capture=broken)
    answer = serving.predict("breast-cancer", instances(demos, 1), captured=True)
    assert answer["predictions"] and "prediction_ids" not in answer


def test_only_online_traffic_is_captured_not_batch_files(registered: Any, demos: dict[str, Any]) -> None:
    # The batch job predicts through the same serving, without asking for capture
    answer = wiring.serving().predict("breast-cancer", instances(demos, 2))
    wiring.flush_capture()
    assert "prediction_ids" not in answer and objects("capture/") == []


@pytest.mark.parametrize(
    "setting", [{"AIMASS_CAPTURE_ENABLED": "false"}, {"AIMASS_CAPTURE_SAMPLE_FRACTION": "0"}]
)
def test_with_capture_off_predictions_have_no_ids_and_nothing_is_captured(
    registered: Any, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch, setting: dict[str, str]
) -> None:
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    with TestClient(create_app()) as client:
        answer = predict(client, demos, 2)
    assert "prediction_ids" not in answer and objects("capture/") == []


def test_the_lambda_handler_writes_its_capture_before_it_returns_and_counts_feedback(
    registered: Any, demos: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    online = load_handler("online")
    predicted = online(event("v1_predict_breast_cancer"), LambdaContext())
    [pid, *_] = json.loads(predicted["body"])["prediction_ids"]
    # The capture is in S3 once the invocation has returned: nothing is left for a frozen environment
    assert objects(PredictionId.parse(pid).key)
    feedback = event("v1_predict_breast_cancer") | {
        "rawPath": "/v1/models/breast-cancer/feedback",
        "body": json.dumps({"labels": [{"prediction_id": pid, "label": "benign"}]}),
    }
    feedback["requestContext"]["http"]["path"] = "/v1/models/breast-cancer/feedback"
    feedback["headers"].pop("content-length", None)
    capsys.readouterr()
    answered = online(feedback, LambdaContext())
    assert answered["statusCode"] == 200, answered["body"]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [metrics] = [m for m in printed if "FeedbackLabels" in m]
    assert metrics["model"] == "breast-cancer" and metrics["FeedbackLabels"] == metrics[
        "FeedbackCorrect"
    ] == [1]


def test_labels_whose_rows_cannot_be_written_are_taken_back_and_can_be_sent_again(
    client: TestClient, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    [pid] = predict(client, demos, 1)["prediction_ids"]
    body = {"labels": [{"prediction_id": pid, "label": "benign"}]}

    def unwritable(*args: Any) -> str:
        raise RuntimeError("S3 is down")

    with monkeypatch.context() as patched:
        patched.setattr(feedback.artifacts, "put", unwritable)
        assert client.post("/v1/models/breast-cancer/feedback", json=body).status_code == 500
    assert client.get("/v1/models/breast-cancer/feedback").json()["versions"] == []
    again = client.post("/v1/models/breast-cancer/feedback", json=body)
    assert again.status_code == 200 and again.json()["versions"][0]["labelled"] == 1


def test_a_full_capture_object_is_written_and_the_next_request_opens_another(
    client: TestClient, demos: dict[str, Any]
) -> None:
    from aimass.capture import CaptureWriter
    from aimass.serving.pipeline import Answered

    # Given a writer whose objects hold 4 lines and stay open an hour
    writer = CaptureWriter(BUCKET, max_lines=4, max_age_s=3600)
    record = wiring.registry().get_version("breast-cancer", 1)
    rows = instances(demos, 3)

    def answered(n: int) -> Answered:
        return Answered(record, n, given=rows[:n], predictions=[{"label": "benign"}] * n)

    # When requests of 3, 1 and 2 instances come
    ids = [writer(answered(n)) or [] for n in (3, 1, 2)]
    # Then the first two fill one object, which is written as soon as the third opens the next; the
    # third's object is written by flush; every id is in its object
    keys = [PredictionId.parse(i[0]).key for i in ids]
    assert keys[0] == keys[1] != keys[2]
    writer.flush()
    assert writer.pending_lines == 0
    for request in ids:
        captured = [
            json.loads(line)["eventMetadata"]["eventId"]
            for line in read(keys[ids.index(request)]).splitlines()
        ]
        assert set(request) <= set(captured)
    assert len(read(keys[0]).splitlines()) == 4 and len(read(keys[2]).splitlines()) == 2
