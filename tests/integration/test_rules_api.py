"""Business rules through the API: saved, versioned and audited, applied to predictions, tried dry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass.api.app import create_app

RULES = "/v1/models/breast-cancer/rules"
PREDICT = "/v1/models/breast-cancer:predict"
RULESET: dict[str, Any] = {
    "hit_policy": "all",
    "rules": [
        {
            "id": "beyond-training",
            "stage": "pre",
            "when": "input.mean_radius > 1000.0",
            "then": {"reject": "radius beyond anything the model was trained on"},
        },
        {
            "id": "refer-malignant",
            "stage": "post",
            "when": "output.label == 'malignant'",
            "then": {"set": {"decision": "refer"}},
        },
        {
            "id": "clear-benign",
            "stage": "post",
            "when": "output.probabilities['benign'] > 0.5",
            "then": {"set": {"decision": "discharge"}},
        },
        {
            "id": "uncertain",
            "stage": "post",
            "when": "output.probabilities['benign'] > 0.05 && output.probabilities['benign'] < 0.95",
            "then": {"flag": "probability between 5% and 95%"},
        },
    ],
}


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def instances(demos: dict[str, Any], count: int = 20) -> list[list[float]]:
    return demos["breast-cancer"].holdout[:count].tolist()  # type: ignore[no-any-return]


def test_saved_rules_are_versioned_and_audited(client: TestClient) -> None:
    assert client.get(RULES).status_code == 404
    first = client.put(RULES, json=RULESET)
    second = client.put(RULES, json={"hit_policy": "first", "rules": RULESET["rules"][:1]})
    assert (first.status_code, first.json()["version"], second.json()["version"]) == (200, 1, 2)
    assert client.get(RULES).json()["ruleset"]["hit_policy"] == "first"
    trail = client.get("/v1/models/breast-cancer/audit").json()
    assert [r["details"]["rules_version"] for r in trail if r["action"] == "set_rules"] == [1, 2]


def test_each_prediction_says_which_rules_fired_and_what_they_did(
    client: TestClient, demos: dict[str, Any]
) -> None:
    client.put(RULES, json=RULESET)
    predictions = client.post(PREDICT, json={"instances": instances(demos)}).json()["predictions"]
    for item in predictions:
        fired = [r["id"] for r in item["rules"]]
        expected_decision = "refer" if item["label"] == "malignant" else "discharge"
        assert item["decision"] == expected_decision and "probabilities" in item
        assert ("uncertain" in fired) == (0.05 < item["probabilities"]["benign"] < 0.95)
        assert ("flags" in item) == ("uncertain" in fired)


def test_a_reject_rule_refuses_the_request_naming_the_rule(client: TestClient, demos: dict[str, Any]) -> None:
    client.put(RULES, json=RULESET)
    rows = instances(demos, 3)
    rows[1][0] = 2000.0
    response = client.post(PREDICT, json={"instances": rows})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "rule_rejected" and "beyond-training" in error["message"]
    assert error["details"] == [
        {
            "loc": ["instances", 1],
            "message": "rule beyond-training: radius beyond anything the model was trained on",
            "type": "rule_rejected",
        }
    ]


def test_a_ruleset_that_does_not_compile_is_refused_with_the_rule_and_position(client: TestClient) -> None:
    broken = {
        "rules": [RULESET["rules"][1], {"id": "typo", "when": "input.mean_radius >", "then": {"flag": "x"}}]
    }
    response = client.put(RULES, json=broken)
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert detail["loc"] == ["rules", 1, "when"] and "typo" in detail["message"] and "1:" in detail["message"]
    assert client.get(RULES).status_code == 404


def test_a_rule_on_an_unknown_feature_is_refused(client: TestClient) -> None:
    response = client.put(
        RULES, json={"rules": [{"id": "age", "when": "input.age > 3.0", "then": {"flag": "x"}}]}
    )
    assert response.status_code == 422 and response.json()["error"]["details"][0]["loc"] == [
        "rules",
        0,
        "when",
    ]


def test_rules_can_be_tried_on_given_predictions_without_saving(
    client: TestClient, demos: dict[str, Any]
) -> None:
    rows = instances(demos, 2)
    given = [{"label": "malignant", "probabilities": {"malignant": 0.6, "benign": 0.4}}] * 2
    response = client.post(
        "/v1/models/breast-cancer/rules:evaluate",
        json={"instances": rows, "predictions": given, "ruleset": RULESET},
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [[r["id"] for r in result["rules"]] for result in results] == [
        ["refer-malignant", "uncertain"]
    ] * 2
    assert results[0]["prediction"]["decision"] == "refer" and response.json()["rules_version"] is None
    assert client.get(RULES).status_code == 404


def test_evaluating_saved_rules_runs_the_model_once_when_no_predictions_are_given(
    client: TestClient, demos: dict[str, Any]
) -> None:
    client.put(RULES, json=RULESET)
    response = client.post("/v1/models/breast-cancer/rules:evaluate", json={"instances": instances(demos, 2)})
    assert response.status_code == 200 and response.json()["rules_version"] == 1
    assert all(r["prediction"]["decision"] in ("refer", "discharge") for r in response.json()["results"])


def test_the_champion_cannot_move_to_a_version_the_rules_do_not_fit(
    client: TestClient, demos: dict[str, Any]
) -> None:
    client.put(RULES, json=RULESET)
    digits = demos["digits"]
    client.post("/v1/models/breast-cancer/versions", files={"model": ("digits.onnx", digits.model)})
    response = client.put("/v1/models/breast-cancer/aliases/champion", json={"version": 2})
    assert response.status_code == 422
    assert client.get("/v1/models/breast-cancer").json()["aliases"]["champion"] == 1


def v2_body(client: TestClient, rows: list[list[float]]) -> dict[str, Any]:
    [spec] = client.get("/v2/models/breast-cancer").json()["inputs"]
    flat = [value for row in rows for value in row]
    return {
        "inputs": [
            {"name": spec["name"], "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": flat}
        ]
    }


def test_a_reject_rule_refuses_a_v2_request_too(client: TestClient, demos: dict[str, Any]) -> None:
    client.put(RULES, json=RULESET)
    rows = instances(demos, 3)
    rows[1][0] = 2000.0
    response = client.post("/v2/models/breast-cancer/infer", json=v2_body(client, rows))
    assert response.status_code == 422
    assert "beyond-training" in response.json()["error"]


def test_v2_answers_say_which_rules_fired_and_what_they_set_as_v1_items_do(
    client: TestClient, demos: dict[str, Any]
) -> None:
    client.put(RULES, json=RULESET)
    rows = instances(demos)
    v1 = client.post(PREDICT, json={"instances": rows}).json()["predictions"]
    answer = client.post("/v2/models/breast-cancer/infer", json=v2_body(client, rows)).json()
    ruled = answer["parameters"]["rules"]
    assert [r["rules"] for r in ruled] == [item["rules"] for item in v1]
    assert [r["set"]["decision"] for r in ruled] == [item["decision"] for item in v1]
    assert [r.get("flags") for r in ruled] == [item.get("flags") for item in v1]
    assert {o["name"] for o in answer["outputs"]} >= {"label", "probabilities"}
