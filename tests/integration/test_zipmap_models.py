"""skl2onnx's default export (a ZipMap: `output_probability` as a list of {class index: probability})
served with the class labels it was pushed with: V1 probabilities keyed by class name, V2 metadata
that says what infer returns, and rules on class names checked at save time and applied. Pushed
without class labels, the classes the ZipMap gives for a probe row are what rules are checked
against (string targets keep their names), and class labels of the wrong count are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from aimass.api.app import create_app
from aimass.serving.backends.onnx import inspect
from aimass.signature import from_session

LABELS = ["setosa", "versicolor", "virginica"]
MODEL = "iris-zipmap"


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    features, target = load_iris(return_X_y=True)
    return features.astype(np.float32), target


def default_export(estimator: Any, iris: tuple[np.ndarray, np.ndarray]) -> bytes:
    features, target = iris
    estimator.fit(features, target)
    return to_onnx(estimator, features[:1]).SerializeToString()  # type: ignore[no-any-return]


@pytest.fixture(params=["logistic-regression", "random-forest"])
def client(
    request: pytest.FixtureRequest, registered: Any, iris: tuple[np.ndarray, np.ndarray]
) -> Iterator[TestClient]:
    estimator = (
        LogisticRegression(max_iter=500)
        if request.param == "logistic-regression"
        else RandomForestClassifier(n_estimators=10, random_state=0)
    )
    model = default_export(estimator, iris)
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        # Given the default export pushed as `aimass models push --labels setosa,versicolor,virginica` does
        pushed = test_client.post(
            f"/v1/models/{MODEL}/versions",
            files={"model": ("model.onnx", model)},
            data={"metadata": json.dumps({"class_labels": LABELS})},
        )
        assert pushed.status_code == 201, pushed.text
        yield test_client


def test_the_default_export_is_a_classifier_whose_probabilities_travel_as_bytes(iris: Any) -> None:
    # When the signature of a default export is read
    signature = from_session(inspect(default_export(LogisticRegression(max_iter=500), iris)))
    # Then it is a classifier whose ZipMap output is described as V2 carries it: BYTES, one per row
    outputs = {o.name: (o.dtype, o.shape) for o in signature.outputs}
    assert signature.task == "classification"
    assert outputs == {"output_label": ("int64", [None]), "output_probability": ("string", [None])}


def virginica(iris: tuple[np.ndarray, np.ndarray]) -> list[list[float]]:
    return iris[0][-2:].tolist()  # type: ignore[no-any-return]


def test_v1_probabilities_are_keyed_by_class_name(client: TestClient, iris: Any) -> None:
    # When an iris of the last class is predicted
    response = client.post(f"/v1/models/{MODEL}:predict", json={"instances": virginica(iris)})
    # Then the label and the probabilities' keys are the class labels
    assert response.status_code == 200, response.text
    for prediction in response.json()["predictions"]:
        assert prediction["label"] == "virginica"
        assert list(prediction["probabilities"]) == LABELS
        assert prediction["probabilities"]["virginica"] > 0.5


def test_v2_metadata_describes_what_infer_returns(client: TestClient, iris: Any) -> None:
    # When the metadata is read and a request is inferred
    metadata = client.get(f"/v2/models/{MODEL}").json()
    rows = virginica(iris)
    body = {
        "inputs": [
            {"name": "X", "datatype": "FP32", "shape": [2, 4], "data": [x for row in rows for x in row]}
        ]
    }
    response = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    # Then every output has the datatype and rank the metadata gave it
    described = {o["name"]: o for o in metadata["outputs"]}
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert set(outputs) == set(described) == {"output_label", "output_probability"}
    for name, output in outputs.items():
        assert output["datatype"] == described[name]["datatype"], name
        assert len(output["shape"]) == len(described[name]["shape"]), name
    # And the probabilities are JSON objects keyed by class name
    probabilities = [json.loads(row) for row in outputs["output_probability"]["data"]]
    assert [list(p) for p in probabilities] == [LABELS, LABELS]


def test_a_rule_on_a_class_name_is_accepted_and_fires(client: TestClient, iris: Any) -> None:
    # Given a rule written against a class name
    ruleset = {
        "rules": [
            {
                "id": "refer-virginica",
                "stage": "post",
                "when": "output.probabilities['virginica'] > 0.5",
                "then": {"set": {"decision": "refer"}},
            }
        ]
    }
    saved = client.put(f"/v1/models/{MODEL}/rules", json=ruleset)
    assert saved.status_code == 200, saved.text
    # When an iris of that class is predicted
    response = client.post(f"/v1/models/{MODEL}:predict", json={"instances": virginica(iris)})
    # Then the rule fires on every prediction
    assert [p.get("decision") for p in response.json()["predictions"]] == ["refer", "refer"]


def test_a_rule_on_a_class_the_model_does_not_have_is_refused_at_save_time(client: TestClient) -> None:
    # Given a rule reading a class the version does not output
    ruleset = {
        "rules": [
            {
                "id": "typo",
                "stage": "post",
                "when": "output.probabilities['virginca'] > 0.5",
                "then": {"flag": "virginica"},
            }
        ]
    }
    # When it is saved, then it is a 422 naming the rule and the unknown field
    response = client.put(f"/v1/models/{MODEL}/rules", json=ruleset)
    assert response.status_code == 422, response.text
    assert "virginca" in response.text


ESTIMATORS = {
    "logistic-regression": lambda: LogisticRegression(max_iter=500),
    "random-forest": lambda: RandomForestClassifier(n_estimators=10, random_state=0),
}
UNLABELLED = "iris-names"


def push(client: TestClient, name: str, model: bytes, metadata: dict[str, Any] | None = None) -> Any:
    data = {"metadata": json.dumps(metadata)} if metadata is not None else {}
    return client.post(f"/v1/models/{name}/versions", files={"model": ("model.onnx", model)}, data=data)


@pytest.fixture(params=sorted(ESTIMATORS))
def named_client(
    request: pytest.FixtureRequest, registered: Any, iris: tuple[np.ndarray, np.ndarray]
) -> Iterator[TestClient]:
    features, target = iris
    # Given the default export of a classifier trained on the class names themselves
    model = default_export(ESTIMATORS[request.param](), (features, np.array(LABELS)[target]))
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        # pushed without class labels (`aimass models push iris-names model.onnx`)
        pushed = push(test_client, UNLABELLED, model)
        assert pushed.status_code == 201, pushed.text
        # Then the version records the classes the model outputs, as the answers name them
        assert pushed.json()["signature"]["output_classes"] == LABELS
        assert pushed.json()["signature"]["class_labels"] is None
        yield test_client


def test_without_labels_a_rule_on_a_string_class_is_accepted_and_fires(
    named_client: TestClient, iris: Any
) -> None:
    ruleset = {
        "rules": [
            {
                "id": "refer-virginica",
                "stage": "post",
                "when": "output.probabilities['virginica'] > 0.5",
                "then": {"set": {"decision": "refer"}},
            }
        ]
    }
    saved = named_client.put(f"/v1/models/{UNLABELLED}/rules", json=ruleset)
    assert saved.status_code == 200, saved.text
    response = named_client.post(f"/v1/models/{UNLABELLED}:predict", json={"instances": virginica(iris)})
    assert response.status_code == 200, response.text
    # The answers are as before: string classes keep their names
    for prediction in response.json()["predictions"]:
        assert prediction["label"] == "virginica"
        assert list(prediction["probabilities"]) == LABELS
        assert prediction["decision"] == "refer"


def test_without_labels_a_rule_on_a_misspelt_class_is_a_422_naming_the_classes(
    named_client: TestClient,
) -> None:
    ruleset = {
        "rules": [
            {
                "id": "typo",
                "stage": "post",
                "when": "output.probabilities['virginca'] > 0.5",
                "then": {"flag": "virginica"},
            }
        ]
    }
    response = named_client.put(f"/v1/models/{UNLABELLED}/rules", json=ruleset)
    assert response.status_code == 422, response.text
    [detail] = response.json()["error"]["details"]
    assert detail["type"] == "unknown_field" and detail["loc"] == ["rules", 0, "when"]
    assert "output.probabilities['virginca']" in detail["message"]
    assert "did you mean 'virginica'?" in detail["message"]
    assert "setosa, versicolor, virginica" in detail["message"]


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_class_labels_of_the_wrong_count_are_a_422_length_mismatch(
    estimator: str, registered: Any, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    # Given the default export of a classifier of 3 integer classes
    model = default_export(ESTIMATORS[estimator](), iris)
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        # When it is pushed with 2 class labels
        response = push(client, "iris-two-labels", model, {"class_labels": ["setosa", "versicolor"]})
        # Then it is refused before any version is registered
        assert response.status_code == 422, response.text
        [detail] = response.json()["error"]["details"]
        assert (
            "2 class labels for 3 classes the model outputs (0, 1, 2)" in response.json()["error"]["message"]
        )
        assert detail["type"] == "length_mismatch" and detail["loc"] == ["metadata", "class_labels"]
        assert client.get("/v1/models/iris-two-labels").status_code == 404


@pytest.mark.parametrize(
    ("targets", "labels", "refused"),
    [
        # integer classes 1..3: a label names class i by its number, which 1..3 do not fit
        (lambda target: target + 1, LABELS, "this model's classes are 1, 2, 3, not 0..2"),
        # classes the model names itself: labels that rename them would never match an answer
        (lambda target: np.array(LABELS)[target], ["a", "b", "c"], "names its classes itself"),
    ],
)
def test_class_labels_that_cannot_name_the_models_classes_are_a_422(
    targets: Any, labels: list[str], refused: str, registered: Any, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    features, target = iris
    model = default_export(LogisticRegression(max_iter=500), (features, targets(target)))
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        response = push(client, "iris-misnamed", model, {"class_labels": labels})
        assert response.status_code == 422, response.text
        assert refused in response.json()["error"]["message"]
        [detail] = response.json()["error"]["details"]
        assert detail["type"] == "labels_mismatch" and detail["loc"] == ["metadata", "class_labels"]
        # The same labels as the model's own class names are accepted
        if all(isinstance(c, str) for c in targets(target)[:1].tolist()):
            same = push(client, "iris-misnamed", model, {"class_labels": LABELS})
            assert same.status_code == 201, same.text
