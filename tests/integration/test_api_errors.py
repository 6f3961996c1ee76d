"""What a client sees for each kind of bad request: the right 4xx, JSON, field-level details, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass.api.app import create_app
from tests.conftest import reset_caches
from tests.support import binary_input, binary_request, error_of

PREDICT = "/v1/models/breast-cancer:predict"


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        PREDICT, content=b'{"instances": [1,', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and error_of(response)["code"] == "bad_json"


def test_a_body_that_is_not_json_is_415(client: TestClient) -> None:
    response = client.post(PREDICT, data={"instances": "1"})
    assert response.status_code == 415


def test_missing_or_empty_instances_is_422_naming_the_field(client: TestClient) -> None:
    for body in ({}, {"instances": []}):
        response = client.post(PREDICT, json=body)
        assert response.status_code == 422
        assert error_of(response)["details"][0]["loc"] == ["body", "instances"]


def test_unknown_model_version_and_alias_are_404(client: TestClient) -> None:
    body = {"instances": [[0.0] * 30]}
    for path in (
        "/v1/models/nope:predict",
        "/v1/models/breast-cancer/versions/7:predict",
        "/v1/models/breast-cancer/labels/canary:predict",
        "/v1/models/nope",
    ):
        response = client.post(path, json=body) if path.endswith("predict") else client.get(path)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "path", ["/v1/models/breast-cancer/versions/one:predict", "/v2/models/breast-cancer/versions/1.5/infer"]
)
def test_a_version_that_is_not_a_number_is_422_naming_the_path_parameter(
    client: TestClient, path: str
) -> None:
    # The prediction routes read their path parameters themselves (aimass.api.online): same answer as
    # FastAPI's validation gave.
    response = client.post(path, json={"instances": [[1.0]], "inputs": []})

    assert response.status_code == 422
    body = response.json()
    if path.startswith("/v1"):
        assert body["error"]["details"] == [
            {
                "loc": ["path", "version"],
                "message": "Input should be a valid integer, unable to parse string as an integer",
                "type": "int_parsing",
            }
        ]
    else:  # V2's error is the protocol's string, the details folded into it
        assert "version" in body["error"]


def test_an_unknown_route_is_a_json_404_and_a_wrong_method_a_405(client: TestClient) -> None:
    assert error_of(client.get("/v3/anything"))["code"] == "not_found"
    assert client.delete("/health").status_code == 405


def test_a_get_on_a_custom_method_is_405_not_an_unknown_model(client: TestClient) -> None:
    model = "/v1/models/breast-cancer"
    for path in (PREDICT, f"{model}/versions/1:predict", f"{model}/rules:evaluate"):
        response = client.get(path)
        assert (response.status_code, response.headers["allow"]) == (405, "POST"), path
        assert error_of(response)["code"] == "method_not_allowed"
    assert client.get(model).status_code == 200


def test_a_version_that_is_not_a_number_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/models/breast-cancer/versions/latest:predict", json={"instances": [[0.0] * 30]}
    )
    assert response.status_code == 422 and error_of(response)["details"][0]["loc"] == ["path", "version"]


def test_a_payload_over_the_limit_is_413(registered: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_MAX_PAYLOAD_BYTES", "1000")
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as small:
        response = small.post(PREDICT, json={"instances": [[0.0] * 30] * 40})
        assert response.status_code == 413 and error_of(response)["code"] == "payload_too_large"


def test_too_many_instances_is_422(registered: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_MAX_INSTANCES", "3")
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as small:
        response = small.post(PREDICT, json={"instances": [[0.0] * 30] * 4})
        assert response.status_code == 422 and error_of(response)["details"][0]["type"] == "too_many"


def test_with_an_api_key_configured_every_route_but_health_needs_it(
    registered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMASS_API_KEY", "s3cret")
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as keyed:
        assert keyed.get("/health").status_code == 200
        assert keyed.get("/v1/models").status_code == 401
        assert keyed.get("/v1/models", headers={"x-api-key": "wrong"}).status_code == 401
        assert keyed.get("/v1/models", headers={"x-api-key": "s3cret"}).status_code == 200


def test_v2_input_errors_are_422_with_the_tensor_named(client: TestClient) -> None:
    body = {"inputs": [{"name": "image", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    response = client.post("/v2/models/digits/infer", json=body)
    assert response.status_code == 422
    assert "inputs.0.shape: expected [N, 8, 8], got [1, 64]" in error_of(response)


def test_v2_routes_answer_errors_in_the_protocols_shape_one_string(client: TestClient) -> None:
    # Given V2 clients (tritonclient) that read `error` as a string
    # When a V2 route refuses: an unknown model, an unknown version, a route that does not exist
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/digits/versions/99", "/v2/nothing"):
        response = client.get(path)
        # Then the body is {"error": "<message>"}, and V1 keeps its richer shape
        assert response.status_code == 404, path
        assert set(response.json()) == {"error"} and isinstance(error_of(response), str), response.text
        assert error_of(response), path
    assert error_of(client.get("/v1/models/nope"))["code"] == "not_found"


def test_uploading_a_file_that_is_not_onnx_is_422_and_registers_nothing(client: TestClient) -> None:
    response = client.post("/v1/models/breast-cancer/versions", files={"model": ("m.onnx", b"garbage")})
    assert response.status_code == 422 and error_of(response)["details"][0]["type"] == "invalid_onnx"
    assert client.get("/v1/models/breast-cancer").json()["latest_version"] == 1


def test_upload_metadata_that_does_not_fit_is_422(client: TestClient, demos: dict[str, Any]) -> None:
    model = ("m.onnx", demos["breast-cancer"].model)
    response = client.post(
        "/v1/models/breast-cancer/versions",
        files={"model": model},
        data={"metadata": json.dumps({"features": ["a"]})},
    )
    assert (
        response.status_code == 422 and "1 features for an input of width 30" in error_of(response)["message"]
    )
    response = client.post(
        "/v1/models/breast-cancer/versions",
        files={"model": model},
        data={"metadata": json.dumps({"colour": "red"})},
    )
    assert response.status_code == 422 and error_of(response)["details"][0]["loc"] == [
        "body",
        "metadata",
        "colour",
    ]
    response = client.post("/v1/models/breast-cancer/versions", data={"metadata": "{}"})
    assert response.status_code == 422 and error_of(response)["details"][0]["loc"] == ["body", "model"]


def test_an_alias_to_a_missing_version_is_404_and_a_bad_body_422(client: TestClient) -> None:
    assert client.put("/v1/models/breast-cancer/aliases/champion", json={"version": 5}).status_code == 404
    assert client.put("/v1/models/breast-cancer/aliases/champion", json={"version": 0}).status_code == 422


def test_the_audit_trail_is_readable(client: TestClient) -> None:
    trail = client.get("/v1/models/breast-cancer/audit").json()
    assert [r["action"] for r in trail] == ["register_version", "set_alias"]


def test_an_alias_moved_through_this_server_is_used_by_its_next_prediction(
    client: TestClient, demos: dict[str, Any]
) -> None:
    body = {"instances": [demos["breast-cancer"].holdout[0].tolist()]}
    assert client.post(PREDICT, json=body).json()["model"]["version"] == 1
    client.post(
        "/v1/models/breast-cancer/versions",
        files={"model": ("m.onnx", demos["breast-cancer"].model)},
        data={"metadata": demos["breast-cancer"].enrichment.model_dump_json()},
    )
    client.put("/v1/models/breast-cancer/aliases/champion", json={"version": 2})
    assert client.post(PREDICT, json=body).json()["model"]["version"] == 2


def test_v2_binary_data_of_the_wrong_size_is_a_422_that_names_the_input(client: TestClient) -> None:
    # Given a binary request whose image has 63 floats where its shape takes 64
    content, headers = binary_request(
        {"inputs": [binary_input("image", [1, 8, 8], "FP32", 252)]}, b"\0" * 252
    )
    response = client.post("/v2/models/digits/infer", content=content, headers=headers)

    # Then it is refused with the place and the sizes in the protocol's one string
    assert response.status_code == 422
    assert "inputs.0.parameters.binary_data_size: expected 256 bytes" in error_of(response)


def push_again(client: TestClient, demos: dict[str, Any]) -> None:
    client.post(
        "/v1/models/breast-cancer/versions",
        files={"model": ("m.onnx", demos["breast-cancer"].model)},
        data={"metadata": demos["breast-cancer"].enrichment.model_dump_json()},
    )


def test_deleting_the_champion_alias_serves_the_latest_version(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given v1 champion and a v2
    push_again(client, demos)
    body = {"instances": [demos["breast-cancer"].holdout[0].tolist()]}
    # When the champion alias is deleted
    response = client.delete("/v1/models/breast-cancer/aliases/champion")
    # Then the answer names the version it pointed at, and predictions come from the latest
    assert response.status_code == 200, response.text
    assert response.json()["previous_version"] == 1
    assert client.post(PREDICT, json=body).json()["model"]["version"] == 2
    assert client.get("/v1/models/breast-cancer/audit").json()[-1]["action"] == "remove_alias"


def test_deleting_an_alias_that_is_not_there_is_404(client: TestClient) -> None:
    response = client.delete("/v1/models/breast-cancer/aliases/challenger")
    assert response.status_code == 404 and error_of(response)["details"][0]["loc"] == ["path", "alias"]


def test_archiving_the_champions_version_is_409_naming_the_alias(client: TestClient) -> None:
    response = client.patch("/v1/models/breast-cancer/versions/1", json={"archived": True})
    assert response.status_code == 409 and "champion" in error_of(response)["message"]


def test_an_archived_version_is_served_by_number_only_and_takes_no_alias(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given v1 champion and a v2, archived
    push_again(client, demos)
    response = client.patch("/v1/models/breast-cancer/versions/2", json={"archived": True})
    assert response.status_code == 200, response.text
    assert response.json() == {**response.json(), "archived": True, "latest_active_version": 1}
    # Then it takes no alias (409 naming the field), yet answers when asked for by number
    moved = client.put("/v1/models/breast-cancer/aliases/challenger", json={"version": 2})
    assert moved.status_code == 409 and error_of(moved)["details"][0]["loc"] == ["body", "version"]
    body = {"instances": [demos["breast-cancer"].holdout[0].tolist()]}
    by_number = client.post("/v1/models/breast-cancer/versions/2:predict", json=body)
    assert by_number.json()["model"]["version"] == 2
    assert client.get("/v1/models/breast-cancer").json()["archived_versions"] == [2]


def test_a_bad_archive_body_is_422_with_the_field(client: TestClient) -> None:
    response = client.patch("/v1/models/breast-cancer/versions/1", json={"archived": "maybe"})
    assert response.status_code == 422 and error_of(response)["details"][0]["loc"] == ["body", "archived"]
    assert client.patch("/v1/models/breast-cancer/versions/7", json={"archived": True}).status_code == 404


def test_the_audit_trail_comes_a_page_at_a_time_with_the_next_page_linked(client: TestClient) -> None:
    # Given a trail of five changes
    for version in (1, 1, 1):
        client.put("/v1/models/breast-cancer/aliases/challenger", json={"version": version})
    pages, url = [], "/v1/models/breast-cancer/audit?limit=2"
    # When it is read two records at a time, following the Link header
    while url:
        page = client.get(url)
        pages.append([r["action"] for r in page.json()])
        url = page.links.get("next", {}).get("url")
    # Then every record comes once, oldest first, and a forged page token is a 422
    assert pages == [["register_version", "set_alias"], ["set_alias", "set_alias"], ["set_alias"]]
    forged = client.get("/v1/models/breast-cancer/audit?after=bm90LWEta2V5")
    assert forged.status_code == 422 and forged.json()["error"]["details"][0]["loc"] == ["query", "after"]
    assert client.get("/v1/models/breast-cancer/audit?limit=0").status_code == 422
