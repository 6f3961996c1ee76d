"""A graph's spec, its checks and how an ensemble combines its members' answers: weighted means of
probabilities and of values, majority votes and their ties, a switch's rows put back in order, and
a step's error named with its status."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from aimass.contracts.graph import ComposeRequest, Ensemble, Graph, ResolvedMember, split_member
from aimass.contracts.registry import Feature, ModelVersion, Signature, TensorSpec
from aimass.errors import BackendThrottled, ValidationFailed
from aimass.graph import ensemble_signature, sequence_plan, switch_signature
from aimass.serving.backends import StepRun
from aimass.serving.backends.graph import (
    Classifier,
    combine_classifiers,
    merge_rows,
    step_failed,
    vote,
    weighted_mean,
)

CLASSIFIER = Classifier("label", "probabilities")


def version(
    name: str = "m",
    number: int = 1,
    inputs: list[TensorSpec] | None = None,
    outputs: list[TensorSpec] | None = None,
    task: str = "classification",
    labels: list[str] | None = None,
    features: list[str] | None = None,
) -> ModelVersion:
    signature = Signature(
        inputs=inputs or [TensorSpec(name="input", dtype="float32", shape=[None, 2])],
        outputs=outputs
        or [
            TensorSpec(name="label", dtype="int64", shape=[None]),
            TensorSpec(name="probabilities", dtype="float32", shape=[None, 2]),
        ],
        task=task,  # type: ignore[arg-type]
        class_labels=labels,
        label_output="label" if task == "classification" else None,
        probabilities_output="probabilities" if task == "classification" else None,
        features=[Feature(name=f) for f in features] if features else None,
    )
    return ModelVersion(
        name=name, version=number, artifact_uri="s3://b/k", sha256="0", size_bytes=1, signature=signature
    )


def test_members_are_name_at_version_or_name_at_alias() -> None:
    assert split_member("breast-cancer@3") == ("breast-cancer", 3, None)
    assert split_member("breast-cancer@champion") == ("breast-cancer", None, "champion")
    for bad in ("breast-cancer", "breast-cancer@", "Bad@1", "a@0", "a@Champion"):
        with pytest.raises(ValidationError):
            Ensemble(kind="ensemble", members=[bad, "a@1"])


def test_a_spec_says_what_is_wrong_with_it() -> None:
    with pytest.raises(ValidationError, match="1 weights for 2 members"):
        Ensemble(kind="ensemble", members=["a@1", "b@1"], weights=[1])
    with pytest.raises(ValidationError, match="above 0"):
        Ensemble(kind="ensemble", members=["a@1", "b@1"], weights=[1, 0])
    with pytest.raises(ValidationError, match="at least 2"):
        Ensemble(kind="ensemble", members=["a@1"])
    with pytest.raises(ValidationError, match="Extra inputs"):
        ComposeRequest.model_validate({"graph": {"kind": "ensemble", "members": ["a@1", "b@1"], "x": 1}})
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        ComposeRequest.model_validate({"graph": {"kind": "splitter"}})


def test_a_graph_keeps_each_member_as_given_and_as_resolved() -> None:
    spec = Ensemble(kind="ensemble", members=["a@champion", "b@2"])
    graph = Graph(
        spec=spec,
        members=[
            ResolvedMember(given="a@champion", name="a", version=4),
            ResolvedMember(given="b@2", name="b", version=2),
        ],
    )
    assert graph.given() == ["a@champion", "b@2"]
    assert graph.step_names() == ["a@4", "b@2"]
    assert Graph.model_validate_json(graph.model_dump_json()) == graph


def test_the_weighted_mean_of_probabilities_picks_the_label_of_the_most_probable_class() -> None:
    # Member a says class 0 at 0.6, member b class 1 at 0.9; weighted 2:1, class 1 still wins (17/30)
    a = {"label": np.array([0]), "probabilities": np.array([[0.6, 0.4]], dtype=np.float32)}
    b = {"label": np.array([1]), "probabilities": np.array([[0.1, 0.9]], dtype=np.float32)}
    labels, probabilities = combine_classifiers([a, b], [CLASSIFIER, CLASSIFIER], [2, 1], "mean")
    assert probabilities.dtype == np.float32 and probabilities[0] == pytest.approx([13 / 30, 17 / 30])
    assert labels.tolist() == [1] and labels.dtype == a["label"].dtype
    # With equal weights the mean is plain
    _, even = combine_classifiers([a, b], [CLASSIFIER, CLASSIFIER], [1, 1], "mean")
    assert even[0] == pytest.approx([0.35, 0.65])


def test_the_label_of_each_probability_column_is_read_from_the_members_own_answers() -> None:
    # Labels that are not column indexes (classes 1 and 2), and a member whose row ties: the tied row
    # says nothing of which column its label stands for
    a = {"label": np.array([2, 1]), "probabilities": np.array([[0.5, 0.5], [0.9, 0.1]])}
    b = {"label": np.array([2, 2]), "probabilities": np.array([[0.2, 0.8], [0.3, 0.7]])}
    labels, _ = combine_classifiers([a, b], [CLASSIFIER, CLASSIFIER], [1, 1], "mean")
    assert labels.tolist() == [2, 1]


def test_zipmap_probabilities_are_combined_by_class_key() -> None:
    # ZipMap rows: {class: probability}; the keys may come in any order
    a = {"label": ["no"], "probabilities": [{"no": 0.8, "yes": 0.2}]}
    b = {"label": ["yes"], "probabilities": [{"yes": 0.6, "no": 0.4}]}
    labels, probabilities = combine_classifiers([a, b], [CLASSIFIER, CLASSIFIER], [1, 1], "mean")
    assert labels == ["no"]
    assert probabilities[0] == pytest.approx({"no": 0.6, "yes": 0.4})


def test_a_vote_is_the_weighted_majority_and_a_tie_goes_to_the_first_member() -> None:
    assert vote([[0, 1], [1, 1], [1, 0]], [1, 1, 1]) == [1, 1]
    # a 1-1 tie: the first member's label
    assert vote([["a"], ["b"]], [1, 1]) == ["a"]
    assert vote([["b"], ["a"]], [1, 1]) == ["b"]
    # three members, a three-way tie: the first member's; weights break what counts do not
    assert vote([["x"], ["y"], ["z"]], [1, 1, 1]) == ["x"]
    assert vote([["x"], ["y"], ["y"]], [3, 1, 1]) == ["x"]


def test_a_vote_answers_each_classs_share_of_the_votes() -> None:
    answers = [
        {"label": np.array([0, 1]), "probabilities": np.array([[0.9, 0.1], [0.2, 0.8]])},
        {"label": np.array([1, 1]), "probabilities": np.array([[0.4, 0.6], [0.3, 0.7]])},
        {"label": np.array([1, 0]), "probabilities": np.array([[0.1, 0.9], [0.6, 0.4]])},
    ]
    labels, shares = combine_classifiers(answers, [CLASSIFIER] * 3, [1, 1, 1], "vote")
    assert labels.tolist() == [1, 1]
    np.testing.assert_allclose(shares, [[1 / 3, 2 / 3], [1 / 3, 2 / 3]])


def test_regressors_are_averaged_with_their_weights() -> None:
    mean = weighted_mean([np.array([[1.0], [2.0]]), np.array([[4.0], [8.0]])], [1, 2])
    assert mean.tolist() == [[3.0], [6.0]]


def test_a_switchs_rows_are_put_back_in_the_instances_order() -> None:
    member = version()
    runs = [
        StepRun("a", member, {"label": np.array([7, 9]), "p": [{"k": 1}, {"k": 3}]}, rows=[1, 3]),
        StepRun("b", member, {"label": np.array([6, 8]), "p": [{"k": 0}, {"k": 2}]}, rows=[0, 2]),
    ]
    merged = merge_rows(runs, 4)
    assert merged["label"].tolist() == [6, 7, 8, 9]
    assert merged["p"] == [{"k": 0}, {"k": 1}, {"k": 2}, {"k": 3}]


def test_a_failed_step_keeps_its_errors_status_and_headers_and_is_named() -> None:
    member = version("scorer", 2)
    throttled = BackendThrottled("endpoint e is throttling requests", headers={"Retry-After": "2"})
    failed = step_failed("score", member, throttled)
    assert isinstance(failed, BackendThrottled) and failed.status == 429
    assert failed.headers == {"Retry-After": "2"}
    assert failed.message == "step score (scorer@2) failed: endpoint e is throttling requests"
    assert failed.details[0]["loc"] == ["graph", "steps", "score"]
    # anything else a member raises is the step's 502
    other = step_failed("score", member, RuntimeError("boom"))
    assert other.status == 502 and other.message == "step score (scorer@2) failed: RuntimeError: boom"


def test_an_ensembles_members_must_agree_on_inputs_task_and_classes() -> None:
    spec = Ensemble(kind="ensemble", members=["a@1", "b@1"])
    a = version("a", labels=["x", "y"])
    # Then its signature is the first member's
    assert ensemble_signature(spec, [a, version("b", labels=["x", "y"])]) == a.signature
    wide = version(
        "b", inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 3])], labels=["x", "y"]
    )
    other_classes = version("b", labels=["y", "x"])
    regressor = version(
        "b", task="regression", outputs=[TensorSpec(name="v", dtype="float32", shape=[None, 1])]
    )
    for b, kind in ((wide, "inputs_differ"), (other_classes, "classes_differ"), (regressor, "task_differs")):
        with pytest.raises(ValidationFailed) as refused:
            ensemble_signature(spec, [a, b])
        assert refused.value.details[0]["type"] == kind
        assert refused.value.details[0]["loc"] == ["body", "graph", "members", 1]


def test_a_switch_needs_named_features_for_its_conditions() -> None:
    spec: Any = ComposeRequest.model_validate(
        {
            "graph": {
                "kind": "switch",
                "branches": [{"when": "input.size > 1.0", "model": "a@1"}],
                "default": "b@1",
            }
        }
    ).graph
    named = [version("a", features=["size", "age"]), version("b", features=["size", "age"])]
    assert switch_signature(spec, named).features == named[0].signature.features
    with pytest.raises(ValidationFailed) as refused:
        switch_signature(spec, [version("a"), version("b")])
    assert refused.value.details[0]["type"] == "no_features"


def test_a_sequences_steps_are_fed_by_name_or_by_mapping() -> None:
    scaler = version(
        "scaler",
        task="other",
        outputs=[TensorSpec(name="scaled", dtype="float32", shape=[None, 2])],
    )
    classifier = version("clf", inputs=[TensorSpec(name="scaled", dtype="float32", shape=[None, 2])])
    spec: Any = ComposeRequest.model_validate(
        {"graph": {"kind": "sequence", "steps": [{"model": "scaler@1"}, {"model": "clf@1"}]}}
    ).graph
    # `scaled` is fed by the step before, by name
    assert [w.sources for w in sequence_plan(spec, [scaler, classifier])] == [
        {"input": ("input", "input")},
        {"scaled": ("scaler", "scaled")},
    ]
    # A mapping to the graph's input passes it through
    spec.steps[1].inputs = {"scaled": "input"}
    assert sequence_plan(spec, [scaler, classifier])[1].sources == {"scaled": ("input", "input")}
    # A source of another dtype is refused at the step's input
    spec.steps[1].inputs = {"scaled": "scaler.scaled"}
    narrow = version("clf", inputs=[TensorSpec(name="scaled", dtype="float64", shape=[None, 2])])
    with pytest.raises(ValidationFailed) as refused:
        sequence_plan(spec, [scaler, narrow])
    assert refused.value.details[0]["loc"] == ["body", "graph", "steps", 1, "inputs", "scaled"]
    assert "float32, not float64" in refused.value.details[0]["message"]
