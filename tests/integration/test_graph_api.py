"""Graph versions through the API on moto: composed, checked, audited; served by V1 and V2 with their
steps on request; a step's failure named with its status; rules at the graph's inputs; S3 batch,
a graph as a rollout's canary, capture and feedback as for any version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import aws, explain, wiring
from aimass.batch.formats import FileFormat
from aimass.batch.job import Options, Outputs, predict_file
from aimass.registration import register_version
from tests.integration.test_batch_job import csv_bytes, holdout
from tests.integration.test_traffic_api import client
from tests.support import error_of

__all__ = ["client"]  # the fixture, shared with test_traffic_api

MODEL = "/v1/models/breast-cancer"
ENSEMBLE = {"kind": "ensemble", "members": ["breast-cancer@champion", "breast-cancer@2"]}


def rows(demos: dict[str, Any], count: int = 3) -> list[list[float]]:
    return [row.tolist() for row in demos["breast-cancer"].holdout[:count]]


def compose(client: TestClient, graph: dict[str, Any], name: str = "breast-cancer") -> Any:
    return client.post(f"/v1/models/{name}/versions:compose", json={"graph": graph, "description": "g"})


def test_an_ensemble_is_registered_with_its_members_resolved_and_is_audited(client: TestClient) -> None:
    # When an ensemble of the champion (v1) and v2 is composed
    made = compose(client, {**ENSEMBLE, "weights": [2, 1]})
    # Then it is v3, on the graph backend, its alias resolved to v1 and kept as given
    assert made.status_code == 201, made.text
    record = made.json()
    assert record["version"] == 3 and record["backend"] == "graph"
    assert record["graph"]["members"] == [
        {"given": "breast-cancer@champion", "name": "breast-cancer", "version": 1},
        {"given": "breast-cancer@2", "name": "breast-cancer", "version": 2},
    ]
    # its signature and baseline are the champion's
    v1 = client.get(f"{MODEL}/versions/1").json()
    assert record["signature"]["features"] == v1["signature"]["features"]
    assert record["signature"]["class_labels"] == ["malignant", "benign"]
    assert record["baseline"] == v1["baseline"]
    assert record["artifact_uri"].endswith("/3/graph.json")
    # and its registration is audited like any version's
    audit = client.get(f"{MODEL}/audit").json()
    assert audit[-1]["action"] == "register_version" and audit[-1]["details"]["version"] == 3


def test_an_ensemble_answers_the_weighted_mean_of_its_members_and_its_steps_on_request(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given an ensemble v3 of v1 and v2 (the same model: the mean is their answer)
    assert compose(client, {**ENSEMBLE, "weights": [2, 1]}).status_code == 201
    body = {"instances": rows(demos)}
    plain = client.post(f"{MODEL}/versions/1:predict", json=body).json()
    # When it predicts without and with ?detail=steps
    answer = client.post(f"{MODEL}/versions/3:predict", json=body).json()
    detailed = client.post(f"{MODEL}/versions/3:predict?detail=steps", json=body).json()
    # Then it answers as a plain version would, in the champion's form
    assert answer["model"] == {"name": "breast-cancer", "version": 3, "backend": "graph"}
    assert "steps" not in answer
    for mine, theirs in zip(answer["predictions"], plain["predictions"], strict=True):
        assert mine["label"] == theirs["label"]
        assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-6)
    # and with the detail, each step's own predictions under its name
    assert [s["step"] for s in detailed["steps"]] == ["breast-cancer@1", "breast-cancer@2"]
    assert detailed["steps"][0]["model"]["version"] == 1
    assert detailed["steps"][1]["predictions"][0]["label"] == plain["predictions"][0]["label"]
    assert detailed["predictions"] == answer["predictions"]
    # and, every member's session loaded, it is answered from the process alone
    assert wiring.serving().store.local("breast-cancer", version=3)


def test_a_v2_request_asks_for_the_steps_in_its_parameters(client: TestClient, demos: dict[str, Any]) -> None:
    assert compose(client, ENSEMBLE).status_code == 201
    table = rows(demos, 2)
    request = {
        "inputs": [
            {"name": "input", "shape": [2, 30], "datatype": "FP32", "data": [v for row in table for v in row]}
        ],
        "parameters": {"detail": "steps"},
    }
    answer = client.post("/v2/models/breast-cancer/versions/3/infer", json=request)
    assert answer.status_code == 200, answer.text
    steps = answer.json()["parameters"]["steps"]
    assert [s["step"] for s in steps] == ["breast-cancer@1", "breast-cancer@2"]
    assert {o["name"] for o in answer.json()["outputs"]} == {"label", "probabilities"}
    # Any other detail is the caller's mistake, named
    request["parameters"] = {"detail": "everything"}
    refused = client.post("/v2/models/breast-cancer/versions/3/infer", json=request)
    assert refused.status_code == 422


def test_a_switch_sends_each_instance_to_the_branch_its_features_choose(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given a switch: large tumours to v2, the rest to the champion
    switch = {
        "kind": "switch",
        "branches": [{"when": "input.mean_radius > 15.0", "model": "breast-cancer@2"}],
        "default": "breast-cancer@champion",
    }
    made = compose(client, switch)
    assert made.status_code == 201, made.text
    instances = rows(demos, 6)
    large = [i for i, row in enumerate(instances) if row[0] > 15.0]
    assert 0 < len(large) < len(instances)
    # When the instances are predicted with their steps
    answer = client.post(f"{MODEL}/versions/3:predict?detail=steps", json={"instances": instances}).json()
    # Then each branch took its instances, and the answer has one prediction per instance in order
    taken = {s["step"]: s["instances"] for s in answer["steps"]}
    assert taken == {
        "breast-cancer@2": large,
        "breast-cancer@1": [i for i in range(len(instances)) if i not in large],
    }
    plain = client.post(f"{MODEL}/versions/1:predict", json={"instances": instances}).json()
    assert [p["label"] for p in answer["predictions"]] == [p["label"] for p in plain["predictions"]]


def test_a_graph_that_cannot_run_is_refused_naming_the_field(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # An unknown alias, an unknown model, a member of other classes, a condition over no feature
    digits = {"kind": "ensemble", "members": ["breast-cancer@1", "digits@champion"]}
    cases: list[tuple[dict[str, Any], list[str | int]]] = [
        ({"kind": "ensemble", "members": ["breast-cancer@nope", "breast-cancer@2"]}, ["members", 0]),
        ({"kind": "ensemble", "members": ["breast-cancer@1", "no-such@1"]}, ["members", 1]),
        (digits, ["members", 1]),
        (
            {
                "kind": "switch",
                "branches": [{"when": "input.radius > 1.0", "model": "breast-cancer@2"}],
                "default": "breast-cancer@1",
            },
            ["branches", 0, "when"],
        ),
        ({"kind": "ensemble", "members": ["breast-cancer@1", "breast-cancer@1"]}, ["members", 1]),
        (
            {"kind": "ensemble", "members": ["breast-cancer@1", "breast-cancer@2"], "weights": [1]},
            ["ensemble", "weights"],  # pydantic names the kind of graph in the location
        ),
    ]
    for graph, loc in cases:
        refused = compose(client, graph)
        assert refused.status_code == 422, (graph, refused.text)
        details = error_of(refused)["details"]
        assert details[0]["loc"][: 2 + len(loc)] == ["body", "graph", *loc], details
    # and nothing was registered
    assert client.get(MODEL).json()["latest_version"] == 2


def test_a_graph_of_a_graph_is_refused(client: TestClient) -> None:
    assert compose(client, ENSEMBLE).status_code == 201
    refused = compose(client, {"kind": "ensemble", "members": ["breast-cancer@3", "breast-cancer@1"]})
    assert refused.status_code == 422
    assert error_of(refused)["details"][0]["type"] == "nested_graph"


def test_a_sequence_feeds_each_step_from_the_graphs_inputs_and_earlier_outputs(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # A sequence of v1 then v2, v2 taking the graph's input through: the last step answers
    sequence = {
        "kind": "sequence",
        "steps": [
            {"model": "breast-cancer@1", "name": "first"},
            {"model": "breast-cancer@2", "name": "second", "inputs": {"input": "input"}},
        ],
    }
    made = compose(client, sequence)
    assert made.status_code == 201, made.text
    answer = client.post(f"{MODEL}/versions/3:predict?detail=steps", json={"instances": rows(demos)}).json()
    assert [s["step"] for s in answer["steps"]] == ["first", "second"]
    # the answer is the last step's (with the graph's anomaly score at its inputs beside it)
    assert [{k: p[k] for k in ("label", "probabilities")} for p in answer["predictions"]] == answer["steps"][
        1
    ]["predictions"]
    # A step fed from an output that does not fit its input is refused, naming the step's input
    bad = {
        "kind": "sequence",
        "steps": [
            {"model": "breast-cancer@1", "name": "first"},
            {"model": "breast-cancer@2", "inputs": {"input": "first.label"}},
        ],
    }
    refused = compose(client, bad)
    assert refused.status_code == 422
    assert error_of(refused)["details"][0]["loc"] == ["body", "graph", "steps", 1, "inputs", "input"]
    assert error_of(refused)["details"][0]["type"] == "input_mismatch"


def test_a_step_that_fails_is_named_and_keeps_its_status(client: TestClient, demos: dict[str, Any]) -> None:
    # Given an ensemble whose second member's file is then corrupted in S3
    assert compose(client, ENSEMBLE).status_code == 201
    aws.client("s3").put_object(Bucket="aimass-test", Key="models/breast-cancer/2/model.onnx", Body=b"x")
    # When the graph is asked for
    failed = client.post(f"{MODEL}/versions/3:predict", json={"instances": rows(demos)})
    # Then the answer names the step and keeps the member's status (a 409 integrity refusal), not a 500
    assert failed.status_code == 409, failed.text
    error = error_of(failed)
    assert error["code"] == "artifact_integrity"
    assert error["message"].startswith("step breast-cancer@2 (breast-cancer@2) failed:")
    assert error["details"][0]["loc"] == ["graph", "steps", "breast-cancer@2"]


def test_the_graphs_rules_run_at_its_inputs(client: TestClient, demos: dict[str, Any]) -> None:
    # Given a graph v3 and a rule that rejects large tumours
    assert compose(client, ENSEMBLE).status_code == 201
    rules = {
        "rules": [
            {
                "id": "large",
                "stage": "pre",
                "when": "input.mean_radius > 15.0",
                "then": {"reject": "too large"},
            }
        ]
    }
    assert client.put(f"{MODEL}/rules", json=rules).status_code == 200
    large = [row for row in rows(demos, 20) if row[0] > 15.0][:1]
    refused = client.post(f"{MODEL}/versions/3:predict", json={"instances": large})
    assert refused.status_code == 422 and error_of(refused)["code"] == "rule_rejected"


def test_a_graph_is_a_rollouts_canary_and_its_answers_are_captured_and_take_feedback(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given the ensemble v3 as a canary taking every request
    assert compose(client, ENSEMBLE).status_code == 201
    started = client.put(f"{MODEL}/rollout", json={"version": 3, "canary": 100})
    assert started.status_code == 200, started.text
    answer = client.post(f"{MODEL}:predict", json={"instances": rows(demos, 1)}).json()
    assert answer["model"]["version"] == 3 and answer["variant"] == "canary"
    # Its answers are captured (prediction ids) and take feedback
    wiring.flush_capture()
    [prediction_id] = answer["prediction_ids"]
    label = answer["predictions"][0]["label"]
    feedback = client.post(
        f"{MODEL}/feedback", json={"labels": [{"prediction_id": prediction_id, "label": label}]}
    )
    assert feedback.status_code in (200, 201), feedback.text


def test_a_batch_file_is_predicted_by_a_graph_version(
    client: TestClient, demos: dict[str, Any], tmp_path: Path
) -> None:
    # Given the ensemble v3 as champion
    assert compose(client, ENSEMBLE).status_code == 201
    assert client.put(f"{MODEL}/aliases/champion", json={"version": 3}).status_code == 200
    source = tmp_path / "rows.csv"
    source.write_bytes(csv_bytes(holdout(demos, 5)))
    outputs = Outputs(tmp_path / "predicted.csv", tmp_path / "rejected.jsonl")
    # When a file goes through the batch job
    report = predict_file(
        wiring.serving(), "breast-cancer", source, FileFormat.of("rows.csv"), outputs, Options()
    )
    # Then the graph predicted every row
    assert report["status"] == "succeeded", json.dumps(report)
    assert report["model"] == {"name": "breast-cancer", "version": 3, "backend": "graph"}
    assert report["rows"] == {"in": 5, "predicted": 5, "rejected": 0}


def test_an_ensemble_of_regressors_answers_the_weighted_mean_of_their_values(client: TestClient) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression, Ridge

    from aimass.contracts.registry import SignatureEnrichment
    from aimass.export import sklearn_to_onnx

    # Given two regressors of scikit-learn's diabetes data, registered as versions of one model
    x, y = load_diabetes(return_X_y=True)
    x = x.astype("float32")
    enrichment = SignatureEnrichment(features=[f"f{i}" for i in range(x.shape[1])], task="regression")
    for estimator in (LinearRegression(), Ridge(alpha=1.0)):
        model = sklearn_to_onnx(estimator.fit(x, y), x.shape[1])
        register_version(wiring.registry(), "aimass-test", "diabetes", model, "t", enrichment)
    # When an ensemble weighted 1:3 predicts
    made = compose(
        client, {"kind": "ensemble", "members": ["diabetes@1", "diabetes@2"], "weights": [1, 3]}, "diabetes"
    )
    assert made.status_code == 201, made.text
    body = {"instances": x[:4].tolist()}
    answer = client.post("/v1/models/diabetes/versions/3:predict", json=body).json()["predictions"]
    first = client.post("/v1/models/diabetes/versions/1:predict", json=body).json()["predictions"]
    second = client.post("/v1/models/diabetes/versions/2:predict", json=body).json()["predictions"]
    # Then each value is the weighted mean of the members' values
    assert answer == pytest.approx([(a + 3 * b) / 4 for a, b in zip(first, second, strict=True)], rel=1e-5)
    # and a vote of regressors is refused at `combine`
    refused = compose(
        client, {"kind": "ensemble", "members": ["diabetes@1", "diabetes@2"], "combine": "vote"}, "diabetes"
    )
    assert refused.status_code == 422 and error_of(refused)["details"][0]["loc"] == [
        "body",
        "graph",
        "combine",
    ]


def test_an_ensemble_explains_through_its_runner_and_adds_up_to_its_probability(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given an ensemble v3 of v1 and v2, weighted 2:1
    assert compose(client, {**ENSEMBLE, "weights": [2, 1]}).status_code == 201
    body = {"instances": rows(demos, 2), "parameters": {"samples": 128}}
    # When two instances are explained
    response = client.post(f"{MODEL}/versions/3:explain", json=body)
    # Then the graph is explained against its first member's background, each instance's predicted class
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == {"name": "breast-cancer", "version": 3, "backend": "graph"}
    assert answer["background"] == {"rows": 100, "source": "reference sample"}
    predicted = client.post(f"{MODEL}/versions/3:predict", json={"instances": body["instances"]}).json()
    for prediction, item in zip(predicted["predictions"], answer["shap"], strict=True):
        # and base value + attributions add up to the ensemble's predicted probability
        assert item["class"] == prediction["label"]
        assert item["value"] == pytest.approx(prediction["probabilities"][prediction["label"]], abs=1e-6)
        total = item["base_value"] + sum(item["attributions"].values())
        assert abs(total - item["value"]) < explain.TOLERANCE
