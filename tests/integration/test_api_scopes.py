"""The local server's admin key: a caller with the API key predicts and reads, only the admin key
changes the registry (push, archive, aliases, rules, quality policy, pipeline runs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass.api.app import create_app
from aimass.api.scopes import ADMIN_ROUTES, PREDICT_WRITES, needs_admin
from tests.conftest import reset_caches

PREDICT = "/v1/models/breast-cancer:predict"
CALLER = {"x-api-key": "caller-key"}
ADMIN = {"x-api-key": "admin-key"}


@pytest.fixture
def keyed(registered: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("AIMASS_API_KEY", "caller-key")
    monkeypatch.setenv("AIMASS_ADMIN_KEY", "admin-key")
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


def test_every_write_route_of_the_app_is_either_admin_or_a_predict_write() -> None:
    # Given the app's routes, When one takes a method other than GET, Then the scopes list names it,
    # so a new write route cannot be left in the predict scope by accident.
    listed = [(m.lower(), pattern) for m, pattern in (*ADMIN_ROUTES, *PREDICT_WRITES) if m != "GET"]
    writes = [
        (method, path)
        for path, item in create_app().openapi()["paths"].items()
        for method in item
        if method != "get"
    ]
    assert len(writes) == len(listed)
    for method, path in writes:
        assert any(m == method and p.match(path) for m, p in listed), f"{method} {path} has no scope"


def test_the_api_key_predicts_and_reads_but_the_admin_key_does_too(
    keyed: TestClient, demos: dict[str, Any]
) -> None:
    body = {"instances": [demos["breast-cancer"].holdout[0].tolist()]}
    for headers in (CALLER, ADMIN):
        assert keyed.post(PREDICT, json=body, headers=headers).status_code == 200
        assert keyed.post("/v2/models/digits/infer", json={}, headers=headers).status_code == 422
        assert keyed.get("/v1/models/breast-cancer", headers=headers).status_code == 200


def test_the_api_key_cannot_move_an_alias_and_is_told_the_scope_it_needs(keyed: TestClient) -> None:
    # Given a caller with the predict key, When it moves the champion alias
    response = keyed.put("/v1/models/breast-cancer/aliases/champion", json={"version": 1}, headers=CALLER)
    # Then it is refused with a 403 that names the admin scope, and the alias is unchanged
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert "aimass/admin" in error["message"]
    assert "PUT /v1/models/breast-cancer/aliases/champion" in error["message"]
    assert keyed.get("/v1/models/breast-cancer/audit", headers=CALLER).json()[-1]["action"] == "set_alias"
    assert len(keyed.get("/v1/models/breast-cancer/audit", headers=CALLER).json()) == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/breast-cancer/versions"),
        ("PATCH", "/v1/models/breast-cancer/versions/1"),
        ("DELETE", "/v1/models/breast-cancer/aliases/champion"),
        ("PUT", "/v1/models/breast-cancer/rules"),
        ("PUT", "/v1/models/breast-cancer/quality"),
        ("POST", "/v1/models/breast-cancer/pipeline:run"),
        # webhook subscriptions name where events go: reading them is an admin's too
        ("GET", "/v1/subscriptions"),
        ("POST", "/v1/subscriptions"),
        ("DELETE", "/v1/subscriptions/0a1b2c3d4e5f6a7b"),
    ],
)
def test_every_registry_write_refuses_the_api_key(keyed: TestClient, method: str, path: str) -> None:
    response = keyed.request(method, path, json={}, headers=CALLER)
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_the_admin_key_moves_an_alias_and_no_key_is_401(keyed: TestClient) -> None:
    path = "/v1/models/breast-cancer/aliases/champion"
    assert keyed.put(path, json={"version": 1}, headers=ADMIN).status_code == 200
    missing = keyed.put(path, json={"version": 1})
    assert missing.status_code == 401 and "admin key" in missing.json()["error"]["message"]


def test_a_v2_route_refused_answers_in_the_v2_shape(keyed: TestClient) -> None:
    response = keyed.post("/v2/models/digits/infer", json={})
    assert response.status_code == 401 and isinstance(response.json()["error"], str)


def test_template_paths_and_app_paths_get_the_same_scope() -> None:
    assert needs_admin("POST", "/v1/models/{name}/pipeline:run")
    assert needs_admin("post", "/v1/models/m/pipeline:run")
    assert not needs_admin("POST", "/v1/models/m:predict")
    assert not needs_admin("GET", "/v1/models/m/pipeline/runs")


def test_the_audit_actor_is_the_key_that_opened_the_route_and_a_header_only_adds_a_note(
    keyed: TestClient,
) -> None:
    # Given the admin key, When an alias moves with a header claiming to be someone else and a note
    claims = {"x-aimass-actor": "arn:aws:iam::123456789012:user/admin", "x-aimass-note": "CHG-42\nrollback"}
    moved = keyed.put(
        "/v1/models/breast-cancer/aliases/challenger", json={"version": 1}, headers=ADMIN | claims
    )
    # Then the trail names the key, not the claim, and keeps the note's printable text
    assert moved.status_code == 200
    last = keyed.get("/v1/models/breast-cancer/audit", headers=CALLER).json()[-1]
    assert (last["action"], last["actor"], last["note"]) == ("set_alias", "local:admin-key", "CHG-42rollback")
