"""Personal features through the API and the batch (moto): predictions as without them, capture and
rejected rows holding tokens or "[erased]", never the raw values; bad settings refused."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import aws, wiring
from aimass.api.app import create_app
from aimass.batch.formats import FileFormat
from aimass.batch.job import Options, Outputs, predict_file
from aimass.capture import PredictionId
from aimass.privacy import ERASED, WITHHELD, token
from tests.conftest import reset_caches

BUCKET = "aimass-test"
MODEL = "breast-cancer"
POLICY = f"/v1/models/{MODEL}/quality"
SECRET_KEY = "8f1c" * 16  # the secret's text: 64 hex digits, as the template's generated one


@pytest.fixture
def client(registered: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    # The key as in AWS: a Secrets Manager secret named by AIMASS_PII_KEY_SECRET
    arn = aws.client("secretsmanager").create_secret(Name="aimass-pii", SecretString=SECRET_KEY)["ARN"]
    monkeypatch.setenv("AIMASS_PII_KEY_SECRET", arn)
    monkeypatch.delenv("AIMASS_PII_KEY", raising=False)
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def names(demos: dict[str, Any]) -> list[str]:
    return [f.name for f in demos[MODEL].enrichment.features]


def instances(demos: dict[str, Any], count: int) -> list[dict[str, Any]]:
    return [dict(zip(names(demos), row, strict=True)) for row in demos[MODEL].holdout[:count].tolist()]


def push_with_personal_feature(client: TestClient, demos: dict[str, Any], personal: str) -> int:
    features = [
        {**f.model_dump(exclude_none=True), "pii": f.name == personal}
        for f in demos[MODEL].enrichment.features
    ]
    metadata = demos[MODEL].enrichment.model_copy(update={"features": None}).model_dump(exclude_none=True)
    response = client.post(
        f"/v1/models/{MODEL}/versions",
        files={"model": ("m.onnx", demos[MODEL].model)},
        data={"metadata": json.dumps({**metadata, "features": features})},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["version"])


def captured_inputs(ids: list[str]) -> list[dict[str, Any]]:
    wiring.flush_capture()
    key = PredictionId.parse(ids[0]).key
    body = aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    by_id = {}
    for line in body.splitlines():
        event = json.loads(line)
        by_id[event["eventMetadata"]["eventId"]] = json.loads(event["captureData"]["endpointInput"]["data"])
    return [by_id[i] for i in ids]


def test_a_personal_feature_is_captured_as_a_token_and_the_predictions_are_unchanged(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given a version pushed with mean_radius marked personal, tokenised by the model's policy
    version = push_with_personal_feature(client, demos, "mean_radius")
    assert client.put(POLICY, json={"pii": "tokenise"}).status_code == 200
    sent = instances(demos, 3)
    with_extra = [{**row, "email": f"patient{i}@example.com"} for i, row in enumerate(sent)]
    # When its instances (with a field that is not a feature) are predicted by it and by v1
    answer = client.post(f"/v1/models/{MODEL}/versions/{version}:predict", json={"instances": with_extra})
    plain = client.post(f"/v1/models/{MODEL}/versions/1:predict", json={"instances": sent})
    assert answer.status_code == plain.status_code == 200
    # Then the model saw the raw values: the same labels and probabilities as the unmarked version
    got, expected = answer.json()["predictions"], plain.json()["predictions"]
    assert [(p["label"], p["probabilities"]) for p in got] == [
        (p["label"], p["probabilities"]) for p in expected
    ]
    # And the capture holds the token of each raw value, no raw value, and no field but the features
    captured = captured_inputs(answer.json()["prediction_ids"])
    key = bytes.fromhex(SECRET_KEY)
    assert [c["mean_radius"] for c in captured] == [token(key, row["mean_radius"]) for row in sent]
    assert all(list(c) == names(demos) for c in captured)
    assert captured[0]["mean_texture"] == pytest.approx(sent[0]["mean_texture"], rel=1e-6)


def test_a_feature_the_policy_marks_personal_is_erased_in_capture(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given v1 (registered before pii existed) and a policy that marks one of its features personal
    saved = client.put(POLICY, json={"pii_features": ["mean_area"]})
    assert saved.status_code == 200 and saved.json()["pii"] == "erase"
    # When a V2 request's tensor is predicted
    rows = demos[MODEL].holdout[:2]
    response = client.post(
        f"/v2/models/{MODEL}/infer",
        json={
            "inputs": [
                {"name": "input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.tolist()}
            ]
        },
    )
    assert response.status_code == 200, response.text
    # Then that column is erased in what was captured, the others kept
    captured = captured_inputs(response.json()["parameters"]["prediction_ids"])
    assert [c["mean_area"] for c in captured] == [ERASED, ERASED]
    assert captured[1]["mean_radius"] == pytest.approx(float(rows[1][0]), rel=1e-6)


def test_a_rejected_batch_row_keeps_no_raw_personal_value(
    client: TestClient, demos: dict[str, Any], tmp_path: Path
) -> None:
    # Given a policy that rejects out-of-range rows and marks mean_radius personal
    policy = {"violations": "reject", "pii": "tokenise", "pii_features": ["mean_radius"]}
    assert client.put(POLICY, json=policy).status_code == 200
    rows = instances(demos, 3)
    rows[1]["mean_radius"] = 987.654
    out = io.StringIO()
    writer = csv.DictWriter(out, ["id", *rows[0]])
    writer.writeheader()
    writer.writerows({"id": f"r{i}", **row} for i, row in enumerate(rows))
    source = tmp_path / "in.csv"
    source.write_text(out.getvalue())
    # When the file is predicted, carrying mean_radius to the predictions
    outputs = Outputs(tmp_path / "predicted.csv", tmp_path / "rejected.jsonl")
    report = predict_file(
        wiring.serving(), MODEL, source, FileFormat.of("in.csv"), outputs, Options(carry=("mean_radius",))
    )
    # Then the bad row is rejected with its value tokenised, in its record and its reason
    assert report["rows"] == {"in": 3, "predicted": 2, "rejected": 1}
    text = outputs.rejected.read_text()
    assert "987.654" not in text
    [rejected] = [json.loads(line) for line in text.splitlines()]
    key = bytes.fromhex(SECRET_KEY)
    assert rejected["record"]["mean_radius"] == token(key, 987.654) and rejected["id"] == "r1"
    assert [r["message"] for r in rejected["reasons"] if r.get("field") == "mean_radius"] == [WITHHELD]
    # And the carried column of the predictions holds tokens too
    with outputs.predictions.open(newline="") as predicted:
        carried = [r["mean_radius"] for r in csv.DictReader(predicted)]
    assert carried == [token(key, rows[0]["mean_radius"]), token(key, rows[2]["mean_radius"])]


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"pii_features": ["mean_radius", "postcode"]}, ["body", "pii_features", 1], "unknown_feature"),
        ({"pii": "hash"}, ["body", "pii"], "literal_error"),
    ],
)
def test_a_policy_naming_no_feature_or_an_unknown_protection_is_refused(
    client: TestClient, body: dict[str, Any], loc: list[Any], kind: str
) -> None:
    before = client.get(POLICY).json()
    response = client.put(POLICY, json=body)
    assert response.status_code == 422
    assert [(d["loc"], d["type"]) for d in response.json()["error"]["details"]] == [(loc, kind)]
    assert client.get(POLICY).json() == before


def test_pii_naming_a_feature_the_model_does_not_have_is_refused_at_push(
    client: TestClient, demos: dict[str, Any]
) -> None:
    metadata = {**json.loads(demos[MODEL].enrichment.model_dump_json(exclude_none=True)), "pii": ["postcode"]}
    response = client.post(
        f"/v1/models/{MODEL}/versions",
        files={"model": ("m.onnx", demos[MODEL].model)},
        data={"metadata": json.dumps(metadata)},
    )
    assert response.status_code == 422
    assert [(d["loc"], d["type"]) for d in response.json()["error"]["details"]] == [
        (["metadata", "pii", 0], "unknown_feature")
    ]
    assert client.get(f"/v1/models/{MODEL}").json()["latest_version"] == 1


def test_the_local_stack_keeps_one_key_readable_by_its_owner_only(tmp_path: Path) -> None:
    from aimass.local.stack import pii_key

    first = pii_key(tmp_path / "state")
    assert pii_key(tmp_path / "state") == first and len(bytes.fromhex(first)) == 32
    assert (tmp_path / "state" / "pii.key").stat().st_mode & 0o077 == 0
    assert pii_key(tmp_path / "other") != first
