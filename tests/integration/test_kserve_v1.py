"""KServe V1's conventions: `GET /`, the names listing, a model's `ready`, and JSON bodies sent by
plain `curl -d` (labelled application/x-www-form-urlencoded)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import artifacts, aws
from aimass.api.app import create_app

FORM = {"content-type": "application/x-www-form-urlencoded"}
ROW = [0.0] * 30


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def test_root_says_alive(client: TestClient) -> None:
    response = client.get("/")
    assert (response.status_code, response.json()) == (200, {"status": "alive"})


def test_the_listing_is_kserves_names_and_the_detail_is_a_query_away(client: TestClient) -> None:
    assert client.get("/v1/models").json() == {"models": ["breast-cancer", "digits"]}
    detailed = client.get("/v1/models", params={"detail": "true"}).json()["models"]
    assert [(m["name"], m["aliases"]) for m in detailed] == [
        ("breast-cancer", {"champion": 1}),
        ("digits", {"champion": 1}),
    ]


def test_a_model_is_ready_while_its_champions_file_is_in_s3(client: TestClient) -> None:
    model = client.get("/v1/models/breast-cancer").json()
    assert model["ready"] is True
    bucket, key = artifacts.parse_uri(model["versions"][0]["artifact_uri"])
    aws.client("s3").delete_object(Bucket=bucket, Key=key)
    assert client.get("/v1/models/breast-cancer").json()["ready"] is False


def test_a_json_body_labelled_form_urlencoded_is_read_as_json(client: TestClient) -> None:
    body = json.dumps({"instances": [ROW]})
    predicted = client.post("/v1/models/breast-cancer:predict", content=body, headers=FORM)
    assert predicted.status_code == 200 and len(predicted.json()["predictions"]) == 1
    checked = client.post("/v1/models/breast-cancer/quality:check", content=body, headers=FORM)
    assert checked.status_code == 200 and checked.json()["item_count"] == 1


def test_a_form_urlencoded_body_that_is_not_json_is_415_saying_why(client: TestClient) -> None:
    for path in ("/v1/models/breast-cancer:predict", "/v1/models/breast-cancer/quality:check"):
        response = client.post(path, content=b"instances=1", headers=FORM)
        assert response.status_code == 415, path
        error = response.json()["error"]
        assert error["code"] == "unsupported_media_type" and "form-urlencoded" in error["message"]
        assert [(d["loc"], d["type"]) for d in error["details"]] == [(["body"], "json_invalid")]


def test_other_content_types_keep_their_415_even_with_a_json_body(client: TestClient) -> None:
    body = json.dumps({"instances": [ROW]})
    for content_type in ("text/plain", "multipart/form-data; boundary=x"):
        response = client.post(
            "/v1/models/breast-cancer:predict", content=body, headers={"content-type": content_type}
        )
        assert response.status_code == 415, content_type
