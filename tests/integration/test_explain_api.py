"""`:explain` through the API: Kernel SHAP of a registered version's predictions, additive to its
output, within the request budget; 4xx with field details for what cannot be explained."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aimass import explain, wiring
from aimass.api.app import create_app
from aimass.registration import register_version

CANCER = "/v1/models/breast-cancer"


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def additive(item: dict[str, Any]) -> float:
    return abs(item["base_value"] + sum(item["attributions"].values()) - item["value"])


def test_explaining_breast_cancer_adds_up_to_the_predicted_probability(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given two holdout rows, When they are explained with the defaults
    rows = demos["breast-cancer"].holdout[:2].tolist()
    response = client.post(CANCER + ":explain", json={"instances": rows})
    # Then each has its predicted class explained, against 100 reference rows, and adds up
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["samples"] == explain.default_samples(30) and body["exact"] is False
    assert body["background"] == {"rows": 100, "source": "reference sample"}
    for prediction, item in zip(body["predictions"], body["shap"], strict=True):
        assert item["class"] == prediction["label"]
        assert item["value"] == pytest.approx(prediction["probabilities"][prediction["label"]], abs=1e-6)
        assert len(item["attributions"]) == 30 and additive(item) < explain.TOLERANCE
    # And Clarify's shape holds the same numbers
    first = body["explanations"]["kernel_shap"][0]
    assert first[0]["feature_header"] == "mean_radius"
    assert first[0]["attributions"][0]["attribution"] == [body["shap"][0]["attributions"]["mean_radius"]]


def test_a_class_can_be_named_and_digits_explains_each_pixel(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given a digits image, When its probability of being a 3 is explained with few samples
    image = demos["digits"].holdout[0].tolist()
    body = {"instances": [image], "parameters": {"class": "3", "samples": 64, "seed": 7, "background": 10}}
    response = client.post("/v1/models/digits/labels/champion:explain", json=body)
    # Then the class is 3, every pixel has its attribution, and they add up
    assert response.status_code == 200, response.text
    item = response.json()["shap"][0]
    assert item["class"] == "3" and len(item["attributions"]) == 64
    assert list(item["attributions"])[:2] == ["image[0][0]", "image[0][1]"]
    assert additive(item) < explain.TOLERANCE
    assert response.json()["samples"] == 64 and response.json()["background"]["rows"] == 10


def test_the_same_seed_gives_the_same_attributions(client: TestClient, demos: dict[str, Any]) -> None:
    body = {"instances": demos["breast-cancer"].holdout[:1].tolist(), "parameters": {"samples": 100}}
    first = client.post(CANCER + "/versions/1:explain", json=body).json()
    again = client.post(CANCER + "/versions/1:explain", json=body).json()
    other = client.post(
        CANCER + "/versions/1:explain", json={**body, "parameters": {"samples": 100, "seed": 1}}
    ).json()
    assert first["shap"] == again["shap"]
    assert first["shap"][0]["attributions"] != other["shap"][0]["attributions"]


def test_a_request_over_the_row_budget_is_422_naming_the_figures(
    client: TestClient, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a budget of a million model rows
    monkeypatch.setenv("AIMASS_EXPLAIN_MAX_ROWS", "1000000")
    from aimass.config import settings

    settings.cache_clear()
    # When 5 instances are explained at the default samples over 100 background rows (1,054,105 rows)
    rows = demos["breast-cancer"].holdout[:5].tolist()
    response = client.post(CANCER + ":explain", json={"instances": rows})
    # Then it is refused before the model runs, with the figures and the budget
    assert response.status_code == 422
    error = response.json()["error"]
    assert "1000000" in error["message"] and "2108 coalitions" in error["message"]
    assert error["details"][0]["loc"] == ["body", "parameters", "samples"]
    assert error["details"][0]["type"] == "over_budget"
    # And fewer background rows fit
    smaller = {"instances": rows, "parameters": {"background": 20}}
    assert client.post(CANCER + ":explain", json=smaller).status_code == 200
    settings.cache_clear()


@pytest.mark.parametrize(
    ("path", "body", "status", "loc"),
    [
        ("/v1/models/nope:explain", {"instances": [[0.0] * 30]}, 404, None),
        (CANCER + "/versions/9:explain", {"instances": [[0.0] * 30]}, 404, None),
        (CANCER + "/labels/nope:explain", {"instances": [[0.0] * 30]}, 404, None),
        (CANCER + ":explain", {"instances": []}, 422, ["body", "instances"]),
        (CANCER + ":explain", {"instances": [[0.0] * 29]}, 422, ["instances", 0]),
        (CANCER + ":explain", {"instances": [[0.0] * 30], "parameters": {"class": "x"}}, 422, None),
        (CANCER + ":explain", {"instances": [[0.0] * 30], "parameters": {"samples": 0}}, 422, None),
        (CANCER + ":explain", {"instances": [[0.0] * 30], "parameters": {"sample": 9}}, 422, None),
    ],
)
def test_bad_requests_are_4xx_with_details(
    client: TestClient, path: str, body: dict[str, Any], status: int, loc: list[Any] | None
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if loc is not None:
        assert error["details"][0]["loc"] == loc
    if status == 422:
        assert error["details"]


def test_a_get_on_explain_is_405(client: TestClient) -> None:
    response = client.get(CANCER + ":explain")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_a_version_without_a_baseline_is_409_saying_how_to_get_one(
    client: TestClient, demos: dict[str, Any]
) -> None:
    demo = demos["breast-cancer"]
    record = register_version(
        wiring.registry(), "aimass-test", "breast-cancer", demo.model, "t", demo.enrichment
    )
    response = client.post(f"{CANCER}/versions/{record.version}:explain", json={"instances": [[0.0] * 30]})
    assert response.status_code == 409
    assert "--reference" in response.json()["error"]["message"]


def test_a_baseline_from_before_background_rows_explains_against_the_means(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given a version whose baseline has statistics but no background rows (registered before them)
    demo = demos["breast-cancer"]
    first = wiring.registry().get_version("breast-cancer", 1)
    assert first.baseline is not None and first.baseline.background_uri is not None
    older = first.baseline.model_copy(update={"background_uri": None})
    record = register_version(
        wiring.registry(),
        "aimass-test",
        "breast-cancer",
        demo.model,
        "t",
        demo.enrichment,
        baseline_ref=older,
    )
    # When it is explained
    rows = demo.holdout[:1].tolist()
    response = client.post(f"{CANCER}/versions/{record.version}:explain", json={"instances": rows})
    # Then the means are its one background row, and the attributions still add up
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["background"] == {"rows": 1, "source": "statistics means"}
    assert additive(body["shap"][0]) < explain.TOLERANCE


def captured() -> int:
    from aimass import aws

    wiring.flush_capture()
    return int(aws.client("s3").list_objects_v2(Bucket="aimass-test", Prefix="capture/").get("KeyCount", 0))


def test_an_explanation_is_not_captured_where_a_prediction_is(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given the online traffic's capture on, When one instance is explained
    body = {"instances": demos["breast-cancer"].holdout[:1].tolist(), "parameters": {"samples": 40}}
    answer = client.post(CANCER + ":explain", json=body)
    # Then nothing is captured (thousands of rows nobody sent), while its prediction would be
    assert answer.status_code == 200 and "prediction_ids" not in answer.json()
    assert captured() == 0
    assert "prediction_ids" in client.post(CANCER + ":predict", json={"instances": body["instances"]}).json()
    assert captured() > 0


def test_the_global_summary_is_each_features_mean_absolute_shap_over_the_background(
    client: TestClient,
) -> None:
    # Given breast-cancer's champion and its background rows
    from aimass.serving.explanations import global_importance

    store = wiring.serving().store
    model = store.load("breast-cancer")
    background = store.background_for(model.version)
    assert background is not None
    # When its global summary is taken over the first 5 background rows
    summary = global_importance(store, model, samples=64, rows=5)
    # Then it is, per feature name, the mean |SHAP| that `:explain` gives those rows
    body = {"instances": background["rows"][:5], "parameters": {"samples": 64}}
    explained = client.post(CANCER + ":explain", json=body).json()["shap"]
    names = [f.name for f in model.version.signature.features or []]
    expected = np.abs([[item["attributions"][n] for n in names] for item in explained]).mean(axis=0)
    assert list(summary) == names
    np.testing.assert_allclose(list(summary.values()), expected, rtol=1e-9, atol=1e-12)


def test_background_rows_missing_a_required_value_are_left_out(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given a version whose reference has 5 rows, 2 of them missing a (not nullable) feature's value
    from aimass.registration import Reference

    demo = demos["breast-cancer"]
    header, *lines = demo.reference_csv.decode().splitlines()[:6]
    lines = [("," + line.split(",", 1)[1]) if i < 2 else line for i, line in enumerate(lines)]
    reference = Reference("\n".join([header, *lines]).encode(), "ref.csv", "five rows, two incomplete")
    record = register_version(
        wiring.registry(),
        "aimass-test",
        "breast-cancer",
        demo.model,
        "t",
        demo.enrichment,
        reference=reference,
    )
    # When an instance is explained against it
    body = {"instances": demo.holdout[:1].tolist()}
    response = client.post(f"{CANCER}/versions/{record.version}:explain", json=body)
    # Then only the 3 complete rows are its background, and the attributions add up
    assert response.status_code == 200, response.text
    assert response.json()["background"] == {"rows": 3, "source": "reference sample"}
    assert additive(response.json()["shap"][0]) < explain.TOLERANCE
