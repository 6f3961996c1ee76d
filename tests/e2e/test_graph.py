"""Graph versions on `aimass serve`, over real HTTP: an ensemble of the breast-cancer champion and a
second version composed with the CLI and served with each step's predictions (V1 and V2); a switch
that routes each instance by a feature."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from aimass.local import demo
from tests.e2e.conftest import Stack
from tests.support import retrained

pytestmark = pytest.mark.e2e
MODEL = "breast-cancer"


@pytest.fixture(scope="module")
def second_version(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> int:
    """A second breast-cancer version beside the demo's champion: the same graph in other bytes, as a
    retrained model's file would be, with the same features and labels."""
    bc = demo.load_or_train(MODEL, stack.state_dir)
    model = tmp_path_factory.mktemp("graph") / "retrained.onnx"
    model.write_bytes(retrained(bc.model))
    features = ",".join(f if isinstance(f, str) else f.name for f in bc.enrichment.features or [])
    pushed = stack.cli(
        "models", "push", MODEL, str(model), "--features", features, "--labels", "malignant,benign", "--json"
    )
    assert pushed.returncode == 0, pushed.stderr
    return int(json.loads(pushed.stdout)["version"])


def test_an_ensemble_of_the_champion_and_a_second_version_serves_its_steps_over_http(
    stack: Stack, second_version: int
) -> None:
    bc = demo.load_or_train(MODEL, stack.state_dir)
    # Given an ensemble of the champion and the second version, composed with the CLI
    made = stack.cli(
        "models", "compose", MODEL, "--ensemble", f"{MODEL}@champion,{MODEL}@{second_version}",
        "--weights", "2,1", "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    graph = json.loads(made.stdout)
    assert graph["backend"] == "graph" and graph["graph"]["members"][0]["version"] == 1
    rows = bc.holdout[:3].tolist()
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        # When it is asked with ?detail=steps
        answer = client.post(
            f"/v1/models/{MODEL}/versions/{graph['version']}:predict?detail=steps", json={"instances": rows}
        )
        # Then it answers in the champion's form, with each member's own predictions
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == {"name": MODEL, "version": graph["version"], "backend": "graph"}
        assert [s["step"] for s in body["steps"]] == [f"{MODEL}@1", f"{MODEL}@{second_version}"]
        champion = client.post(f"/v1/models/{MODEL}/versions/1:predict", json={"instances": rows}).json()
        for mine, step, theirs in zip(
            body["predictions"], body["steps"][0]["predictions"], champion["predictions"], strict=True
        ):
            assert mine["label"] == step["label"] == theirs["label"]
            assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-6)
        # and V2 gets the same steps in its parameters
        table = {
            "name": "input",
            "shape": [3, 30],
            "datatype": "FP32",
            "data": bc.holdout[:3].ravel().tolist(),
        }
        infer = client.post(
            f"/v2/models/{MODEL}/versions/{graph['version']}/infer",
            json={"inputs": [table], "parameters": {"detail": "steps"}},
        )
        assert infer.status_code == 200, infer.text
        assert len(infer.json()["parameters"]["steps"]) == 2


def test_a_switch_routes_each_instance_by_a_feature(
    stack: Stack, second_version: int, tmp_path: Path
) -> None:
    bc = demo.load_or_train(MODEL, stack.state_dir)
    # Given a switch: tumours with a mean radius over 15 to the second version, the rest to v1
    spec = tmp_path / "switch.yaml"
    spec.write_text(
        "branches:\n"
        f"  - when: input.mean_radius > 15.0\n    model: {MODEL}@{second_version}\n"
        f"default: {MODEL}@1\n"
    )
    made = stack.cli("models", "compose", MODEL, "--switch", str(spec), "--json")
    assert made.returncode == 0, made.stderr
    version = json.loads(made.stdout)["version"]
    rows = bc.holdout[:8].tolist()
    large = [i for i, row in enumerate(rows) if row[0] > 15.0]
    assert 0 < len(large) < len(rows)
    # When the rows are predicted with their steps (the CLI's --steps)
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"instances": rows}))
    answered = stack.cli(
        "predict", MODEL, "--version", str(version), "--file", str(body), "--steps", "--json"
    )
    assert answered.returncode == 0, answered.stderr
    answer = json.loads(answered.stdout)
    # Then each branch took the instances its condition chose, and every instance has its prediction
    assert {s["step"]: s["instances"] for s in answer["steps"]} == {
        f"{MODEL}@{second_version}": large,
        f"{MODEL}@1": [i for i in range(len(rows)) if i not in large],
    }
    assert len(answer["predictions"]) == len(rows)
