"""Compressing a version through the API against moto (aimass.compression): the digits demo's
network quantized to int8 and float16 and registered as the challenger with its figures, the
breast-cancer demo's ONNX-ML linear model refused as having nothing to quantize, and a threshold
the int8 model cannot meet refused with the figures, nothing registered."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import artifacts, wiring
from aimass.api.app import create_app
from aimass.compression import rows_from_baseline, weight_ops

BUCKET = "aimass-test"


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def holdout_csv(demos: dict[str, Any]) -> str:
    """The digits demo's held-out images (unseen by its baseline) with their labels, in S3."""
    demo = demos["digits"]
    header = [f"image[{i}][{j}]" for i in range(8) for j in range(8)]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*header, "label"])
    labels = demo.holdout_probabilities.argmax(axis=1)  # the estimator's own answers, as labels
    for image, label in zip(demo.holdout.reshape(len(demo.holdout), -1).tolist(), labels, strict=True):
        writer.writerow([*image, str(label)])
    return artifacts.put(BUCKET, "datasets/digits/holdout.csv", out.getvalue().encode(), "text/csv")


def test_dynamic_int8_is_registered_as_the_challenger_with_its_figures(
    client: TestClient, demos: dict[str, Any]
) -> None:
    uri = holdout_csv(demos)

    made = client.post("/v1/models/digits/versions/1/quantize", json={"reference_uri": uri})

    assert made.status_code == 201, made.text
    body = made.json()
    figures = body["figures"]
    assert body["alias"] == "challenger"
    assert figures["method"] == "dynamic" and figures["rows"] == len(demos["digits"].holdout)
    assert figures["quantized_ops"] == {"MatMul": 2}
    assert figures["agreement"] >= 0.99
    assert 0 < figures["max_probability_difference"] < 0.2
    assert figures["metric"] == "accuracy" and figures["metric_original"] == 1.0
    assert figures["metric_delta"] == figures["metric_compressed"] - figures["metric_original"]
    assert figures["size_bytes_compressed"] < figures["size_bytes_original"]
    version = body["version"]
    assert version["version"] == 2
    assert version["lineage"]["compressed_from"] == 1
    assert version["lineage"]["compression"] == figures
    assert version["baseline"] == client.get("/v1/models/digits/versions/1").json()["baseline"]
    model = client.get("/v1/models/digits").json()
    assert model["aliases"] == {"champion": 1, "challenger": 2}
    # The registered copy serves: its answers are the original's on the held-out images
    images = demos["digits"].holdout[:20].tolist()
    original = client.post("/v1/models/digits/versions/1:predict", json={"instances": images}).json()
    copy = client.post("/v1/models/digits/versions/2:predict", json={"instances": images}).json()
    labels = [p["label"] for p in original["predictions"]]
    assert [p["label"] for p in copy["predictions"]] == labels


def test_float16_without_rows_is_judged_on_rows_drawn_from_the_baseline(client: TestClient) -> None:
    made = client.post("/v1/models/digits/versions/1/quantize", json={"method": "float16"})

    assert made.status_code == 201, made.text
    figures = made.json()["figures"]
    assert figures["rows_from"].startswith("1000 rows drawn from the baseline")
    assert figures["metric"] is None
    assert figures["max_probability_difference"] < 0.01
    assert figures["agreement"] >= 0.99


def test_a_threshold_the_copy_misses_is_refused_with_the_figures(client: TestClient) -> None:
    before = client.get("/v1/models/digits").json()

    refused = client.post(
        "/v1/models/digits/versions/1/quantize", json={"method": "dynamic", "min_agreement": 1.0}
    )

    # int8 weights move some of the drawn rows' labels: 1.0 is more than it gives
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert "agreement" in error["message"] and "size x" in error["message"]
    assert error["details"][0]["loc"] == ["body", "min_agreement"]
    assert error["details"][0]["type"] == "agreement_too_low"
    assert client.get("/v1/models/digits").json() == before


def test_a_model_without_weight_operators_has_nothing_to_quantize(client: TestClient) -> None:
    refused = client.post("/v1/models/breast-cancer/versions/1/quantize", json={})
    # said before any rows are read: the model is what is wrong
    unread = client.post(
        "/v1/models/breast-cancer/versions/1/quantize", json={"reference_uri": "s3://aimass-test/none.csv"}
    )

    for answer in (refused, unread):
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert error["message"].startswith("nothing to quantize")
        assert error["details"][0]["type"] == "nothing_to_quantize"


def test_bad_requests_are_refused_by_field(client: TestClient) -> None:
    answers = {
        "method": client.post("/v1/models/digits/versions/1/quantize", json={"method": "int4"}),
        "min_agreement": client.post("/v1/models/digits/versions/1/quantize", json={"min_agreement": 2}),
        "reference_uri": client.post(
            "/v1/models/digits/versions/1/quantize", json={"reference_uri": "s3://aimass-test/none.csv"}
        ),
    }
    for field, answer in answers.items():
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["details"][0]["loc"][:2] == ["body", field]
    assert client.post("/v1/models/digits/versions/9/quantize").status_code == 404
    assert client.post("/v1/models/unknown/versions/1/quantize").status_code == 404


def test_rows_drawn_from_a_baseline_keep_each_feature_within_its_reference(registered: Any) -> None:
    record = wiring.registry().get_version("breast-cancer", 1)
    assert record.baseline is not None
    statistics = json.loads(artifacts.get(record.baseline.statistics_uri))

    rows = rows_from_baseline(statistics, record.signature, 500)

    for j, feature in enumerate(statistics["features"]):
        numbers = feature["numerical_statistics"]
        assert numbers["min"] <= rows.matrix[:, j].min() <= rows.matrix[:, j].max() <= numbers["max"]
    assert rows.labels is None
    assert weight_ops(artifacts.get(record.artifact_uri)) == {}


@pytest.fixture
def api(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The CLI's HTTP calls go to the API in this process."""
    import httpx

    monkeypatch.setattr(
        httpx, "request", lambda method, url, timeout=None, **kw: client.request(method, url, **kw)
    )
    return client


def quantize(*args: str) -> Any:
    from typer.testing import CliRunner

    from aimass.cli import app

    command = ["models", "quantize", *args, "--endpoint", "http://aimass.test"]
    return CliRunner().invoke(app, command, catch_exceptions=False)


def test_the_cli_prints_the_new_challenger_and_exits_1_on_a_refusal(api: TestClient) -> None:
    made = quantize("digits", "1", "--method", "static", "--json")

    assert made.exit_code == 0, made.output
    answer = json.loads(made.stdout)
    assert answer["alias"] == "challenger" and answer["figures"]["method"] == "static"
    assert api.get("/v1/models/digits").json()["aliases"]["challenger"] == answer["version"]["version"]

    shown = quantize("digits", "1", "--method", "float16")
    assert shown.exit_code == 0, shown.output
    assert "as challenger" in shown.stdout and "agreement" in shown.stdout

    refused = quantize("breast-cancer", "1")
    assert refused.exit_code == 1
    assert "nothing to quantize" in refused.output
