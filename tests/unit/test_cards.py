"""The model card built from plain data: SageMaker Model Card content of the required shape, the
page's sections, and the feature attributions' section only when attributions are given."""

from __future__ import annotations

import json
import re
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest

from aimass.cards import CardInputs, build
from aimass.cards.page import render
from aimass.contracts.cards import MAX_DETAIL_KEY, MAX_DETAIL_VALUE, CardFields
from aimass.contracts.graph import Ensemble, Graph, ResolvedMember
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import BaselineRef, Feature, ModelVersion, Signature, TensorSpec
from aimass.quality.baseline import statistics
from aimass.quality.columns import Column

FEATURES = ["mean_radius", "mean_texture", "worst_area"]

# SageMaker Model Card's content schema, the parts the card fills: each section's properties and
# their JSON types ("model-cards-json-schema" in the SageMaker developer guide). The schema allows no
# other property.
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "model_overview": {
        "model_id": (str,),
        "model_name": (str,),
        "model_description": (str,),
        "model_version": (int, float),
        "problem_type": (str,),
        "algorithm_type": (str,),
        "model_creator": (str,),
        "model_owner": (str,),
        "model_artifact": (list,),
        "inference_environment": (dict,),
    },
    "intended_uses": {
        "purpose_of_model": (str,),
        "intended_uses": (str,),
        "factors_affecting_model_efficiency": (str,),
        "risk_rating": (str,),
        "explanations_for_risk_rating": (str,),
    },
    "business_details": {
        "business_problem": (str,),
        "business_stakeholders": (str,),
        "line_of_business": (str,),
    },
    "training_details": {
        "objective_function": (dict,),
        "training_observations": (str,),
        "training_job_details": (dict,),
    },
    "additional_information": {
        "ethical_considerations": (str,),
        "caveats_and_recommendations": (str,),
        "custom_details": (dict,),
    },
}
EVALUATION = {"name", "evaluation_observation", "evaluation_job_arn", "datasets", "metadata", "metric_groups"}
METRIC_TYPES = {"number": (int, float), "string": (str,), "boolean": (bool,), "bar_chart": (list,)}


def check_schema(card: dict[str, Any]) -> None:
    """The card as JSON has the content schema's shape: known sections and properties of the right
    types, the risk rating from its enum, each evaluation named, each metric typed."""
    assert set(card) <= {*SCHEMA, "evaluation_details", "model_package_details"}
    for section, properties in SCHEMA.items():
        assert set(card.get(section, {})) <= set(properties), section
        for key, value in card.get(section, {}).items():
            assert isinstance(value, properties[key]), f"{section}.{key}"
    assert card["intended_uses"].get("risk_rating", "Unknown") in {"High", "Medium", "Low", "Unknown"}
    assert isinstance(card["model_overview"]["model_name"], str)
    for key, value in card["additional_information"].get("custom_details", {}).items():
        assert isinstance(value, str) and len(key) <= MAX_DETAIL_KEY and len(value) <= MAX_DETAIL_VALUE
    for detail in card.get("evaluation_details", []):
        assert set(detail) <= EVALUATION and isinstance(detail["name"], str)
        assert len(detail.get("datasets", [])) <= 10
        for group in detail.get("metric_groups", []):
            assert isinstance(group["name"], str) and group["metric_data"]
            for datum in group["metric_data"]:
                assert isinstance(datum["name"], str)
                assert isinstance(datum["value"], METRIC_TYPES[datum["type"]])


def pipeline_version() -> ModelVersion:
    """A version as the training pipeline registers it: metrics, lineage, a baseline."""
    return ModelVersion(
        name="breast-cancer",
        version=3,
        artifact_uri="s3://b/models/breast-cancer/3/model.onnx",
        sha256="ab" * 32,
        size_bytes=1234,
        signature=Signature(
            inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 3])],
            outputs=[TensorSpec(name="label", dtype="int64", shape=[None])],
            features=[Feature(name=f) for f in FEATURES],
            task="classification",
            class_labels=["malignant", "benign"],
        ),
        description="logistic_regression retrained by the pipeline (run r1)",
        metrics={"accuracy": 0.95, "f1": 0.96},
        lineage={
            "dataset": {"uri": "s3://b/datasets/breast-cancer/snapshots/r1.csv", "sha256": "cd" * 32},
            "execution": "arn:aws:states:us-east-1:1:execution:pipeline:r1",
            "trigger": "drift",
            "trained": {"estimator": "logistic_regression", "train_rows": 426, "params": {"C": 1.0}},
            "compared_with": {"version": 2, "metrics": {"accuracy": 0.93, "f1": 0.94}},
            "parent_version": 2,
            "evaluation": {"report": "s3://b/reports/r1/index.html", "holdout_rows": 143, "gate": "beats"},
        },
        baseline=BaselineRef(
            statistics_uri="s3://b/models/breast-cancer/3/baseline/statistics.json",
            constraints_uri="s3://b/models/breast-cancer/3/baseline/constraints.json",
            sha256={},
            item_count=50,
            source="training split",
        ),
        created_by="pipeline/r1",
    )


def inputs(**changes: Any) -> CardInputs:
    matrix = np.random.default_rng(0).normal(size=(50, 3))
    described = statistics([Column(name=f, kind="numeric") for f in FEATURES], matrix)
    fields = CardFields(name="breast-cancer", version=3, revision=1, owner="ana", limits="not for screening")
    base = {
        "record": pipeline_version(),
        "fields": fields,
        "statistics": described,
        "quality_policy": QualityPolicy(violations="reject"),
        "aliases": ("champion",),
    }
    return CardInputs(**{**base, **changes})


def test_the_card_has_the_content_schema_shape_and_places_each_field() -> None:
    card = build(inputs()).model_dump(exclude_none=True)

    check_schema(card)
    assert card["model_overview"]["model_owner"] == "ana"
    assert card["model_overview"]["algorithm_type"] == "logistic_regression"
    assert card["additional_information"]["caveats_and_recommendations"] == "not for screening"
    job = card["training_details"]["training_job_details"]
    assert job["training_datasets"] == ["s3://b/datasets/breast-cancer/snapshots/r1.csv"]
    assert job["hyper_parameters"] == [{"name": "C", "value": "1.0"}]
    [evaluation, baseline] = card["evaluation_details"]
    assert [g["name"] for g in evaluation["metric_groups"]] == ["metrics", "champion v2 on the same rows"]
    assert evaluation["metadata"] == {"report": "s3://b/reports/r1/index.html", "holdout_rows": "143"}
    assert [g["name"] for g in baseline["metric_groups"]] == FEATURES
    custom = card["additional_information"]["custom_details"]
    assert custom["lineage.parent_version"] == "2" and custom["lineage.trigger"] == "drift"
    assert custom["lineage.dataset_sha256"] == "cd" * 32
    assert json.loads(custom["quality_policy"])["violations"] == "reject"


def test_a_version_pushed_by_hand_has_a_card_too() -> None:
    bare = pipeline_version().model_copy(update={"metrics": {}, "lineage": {}, "baseline": None})

    card = build(CardInputs(record=bare)).model_dump(exclude_none=True)

    check_schema(card)
    assert card["evaluation_details"] == [] and card["intended_uses"] == {"risk_rating": "Unknown"}
    page = render(CardInputs(record=bare))
    assert "it has no baseline" in page and "No metrics were registered" in page


def test_attributions_are_a_custom_detail_and_a_bar_chart_when_given() -> None:
    attributions = {"mean_radius": 0.12, "worst_area": 0.31, "mean_texture": 0.02}

    card = build(inputs(attributions=attributions)).model_dump(exclude_none=True)

    check_schema(card)
    custom = card["additional_information"]["custom_details"]
    assert json.loads(custom["feature_attributions"]) == attributions
    [chart] = [d for d in card["evaluation_details"] if d["name"] == "feature attributions"]
    datum = chart["metric_groups"][0]["metric_data"][0]
    assert datum["type"] == "bar_chart" and datum["x_axis_name"] == [
        "worst_area",
        "mean_radius",
        "mean_texture",
    ]
    assert datum["value"] == [0.31, 0.12, 0.02]


def test_many_attributions_keep_the_largest_that_fit_in_a_custom_detail() -> None:
    attributions = {f"pixel_{i:02d}": i / 100 for i in range(64)}

    custom = build(inputs(attributions=attributions)).additional_information.custom_details

    kept = json.loads(custom["feature_attributions"])
    assert len(custom["feature_attributions"]) <= MAX_DETAIL_VALUE and 10 < len(kept) < 64
    assert min(kept.values()) > max(v for k, v in attributions.items() if k not in kept)


@pytest.mark.parametrize("attributions", [None, {}])
def test_without_attributions_the_card_has_no_such_section(attributions: dict[str, float] | None) -> None:
    made = inputs(attributions=attributions)

    card = build(made)
    page = render(made)

    assert "feature_attributions" not in card.additional_information.custom_details
    assert all(d.name != "feature attributions" for d in card.evaluation_details)
    assert 'id="attributions"' not in page


def test_the_page_has_every_section_and_draws_metrics_baseline_and_attributions() -> None:
    page = render(inputs(attributions={"mean_radius": 0.12, "worst_area": 0.31}))

    for section in ("overview", "intended-use", "training", "evaluation", "baseline", "attributions"):
        assert f'<section id="{section}">' in page
    plots = re.findall(r"<svg.*?</svg>", page, re.DOTALL)
    assert len(plots) == 3  # metrics, baseline histograms, attributions
    for plot in plots:  # each one well-formed SVG, with bars drawn
        assert ElementTree.fromstring(plot).findall(".//{http://www.w3.org/2000/svg}rect")
    assert 'aria-label="Bar plot of the mean |SHAP| per feature"' in page
    assert "<title>worst_area: 0.31</title>" in page
    assert page.index("worst_area: 0.31") < page.index("mean_radius: 0.12")  # largest first
    assert "not for screening" in page and "s3://b/reports/r1/index.html" in page


def test_user_text_is_escaped_on_the_page() -> None:
    fields = CardFields(name="breast-cancer", version=3, owner="<script>alert(1)</script>")

    page = render(inputs(fields=fields))

    assert "<script>" not in page and "&lt;script&gt;" in page


def graph_version() -> ModelVersion:
    """An ensemble of the champion (resolved to v1 when it was made) and v2, as the registry keeps it."""
    graph = Graph(
        spec=Ensemble(kind="ensemble", members=["breast-cancer@champion", "breast-cancer@2"], weights=[2, 1]),
        members=[
            ResolvedMember(given="breast-cancer@champion", name="breast-cancer", version=1),
            ResolvedMember(given="breast-cancer@2", name="breast-cancer", version=2),
        ],
    )
    return pipeline_version().model_copy(
        update={
            "backend": "graph",
            "graph": graph,
            "artifact_uri": "s3://b/models/breast-cancer/3/graph.json",
            "lineage": {},
            "metrics": {},
        }
    )


def test_a_graph_versions_card_names_its_kind_and_members_as_given_and_resolved() -> None:
    made = inputs(record=graph_version())

    card = build(made).model_dump(exclude_none=True)
    page = render(made)

    check_schema(card)
    custom = card["additional_information"]["custom_details"]
    assert custom["backend"] == "graph" and custom["graph.kind"] == "ensemble"
    assert custom["graph.members"] == "breast-cancer@champion = breast-cancer@1, breast-cancer@2"
    assert json.loads(custom["graph.spec"])["weights"] == [2, 1]
    lineage = page.split('<section id="training">')[1].split("</section>")[0]
    assert "<code>ensemble</code> of its members" in lineage
    assert "<td><code>breast-cancer@champion</code></td><td><code>breast-cancer@1</code></td>" in lineage


def test_a_plain_versions_card_has_no_graph_details() -> None:
    made = inputs()

    custom = build(made).additional_information.custom_details

    assert not any(key.startswith("graph.") for key in custom)
    assert 'class="members"' not in render(made) and "composed as" not in render(made)


def test_a_version_that_cannot_be_explained_has_the_note_instead_of_the_summary() -> None:
    made = inputs(attributions_note="model 'breast-cancer' version 3 has no baseline to explain against")

    card = build(made)
    page = render(made)

    assert card.additional_information.custom_details["feature_attributions_note"].endswith("against")
    assert all(d.name != "feature attributions" for d in card.evaluation_details)
    section = page.split('<section id="attributions">')[1].split("</section>")[0]
    assert "No summary for this version: model &#x27;breast-cancer&#x27; version 3 has no baseline" in section
    assert "<svg" not in section
