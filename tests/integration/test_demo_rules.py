"""Business rules on the demo models as trained (tests/conftest.py `demos`): rulesets written for
their signatures, and ten rules over a thousand of their held-out instances. The rules themselves,
on hand-written signatures, are tests/unit/test_rules.py."""

from __future__ import annotations

from typing import Any

from aimass import signature as signatures
from aimass.contracts.registry import Signature
from aimass.contracts.rules import Ruleset
from aimass.serving.backends import onnx
from tests.unit.test_rules import answered, ids, rule, ruleset, run


def demo_signature(demo: Any) -> Signature:
    return signatures.enrich(signatures.from_session(onnx.inspect(demo.model)), demo.enrichment)


def test_the_breast_cancer_model_accepts_a_sensible_ruleset(demos: dict[str, Any]) -> None:
    # Given the demo classifier and the ruleset the contract shows as its example
    demo = demos["breast-cancer"]
    signature = demo_signature(demo)
    example = Ruleset.model_json_schema()["examples"][0]
    rules = Ruleset.model_validate(
        {
            **example,
            "hit_policy": "all",
            "rules": [
                *example["rules"],
                rule("malignant", "output.label == 'malignant'", {"set": {"decision": "biopsy"}}),
            ],
        }
    )
    # When it runs on held-out rows, as lists in feature order
    rows = demo.holdout[:50].tolist()
    predictions = [
        {
            "label": "malignant" if p[0] > 0.5 else "benign",
            "probabilities": dict(zip(["malignant", "benign"], p, strict=True)),
        }
        for p in demo.holdout_probabilities[:50].tolist()
    ]
    items = answered(rules, rows, predictions, signature)
    # Then every malignant answer carries the decision, and the large-tumour rule fires where it should
    for row, item in zip(rows, items, strict=True):
        assert (item.get("decision") == "biopsy") == (item["label"] == "malignant")
        assert ("large-tumour" in [r["id"] for r in item["rules"]]) == (row[0] > 25.0)


def test_the_digits_model_accepts_a_sensible_ruleset(demos: dict[str, Any]) -> None:
    demo = demos["digits"]
    signature = demo_signature(demo)
    rules = ruleset(
        rule("blank", "input.image.all(row, row.all(p, p == 0.0))", {"reject": "empty image"}, stage="pre"),
        rule("unsure", "output.probabilities[output.label] < 0.6", {"flag": "low confidence"}),
        rule("zero", "output.label == '0'", {"set": {"digit": "zero"}}),
        hit_policy="all",
    )
    blank = [[0.0] * 8] * 8
    images = [blank, *demo.holdout[:3].tolist()]
    unsure_zero = {"label": "0", "probabilities": {str(d): 0.5 if d == 0 else 0.5 / 9 for d in range(10)}}
    sure_seven = {"label": "7", "probabilities": {str(d): 0.99 if d == 7 else 0.01 / 9 for d in range(10)}}
    fired = run(rules, images, [unsure_zero, unsure_zero, sure_seven, sure_seven], signature)
    assert ids(fired) == [["blank", "unsure", "zero"], ["unsure", "zero"], [], []]


def test_a_ten_rule_ruleset_runs_over_a_thousand_instances(demos: dict[str, Any]) -> None:
    # Given ten rules over features and outputs of the demo classifier, in both stages
    signature = demo_signature(demos["breast-cancer"])
    rules = ruleset(
        *[
            rule(
                f"radius-{i}",
                f"input.mean_radius > {10 + i}.0 && input.mean_texture < 30.0",
                {"flag": f"r{i}"},
            )
            for i in range(4)
        ],
        rule("huge", "input.worst_area > 100000.0", {"reject": "implausible area"}, stage="pre"),
        rule("smooth", "input.mean_smoothness < 0.08", {"flag": "smooth"}, stage="pre"),
        rule("refer", "output.probabilities['malignant'] > 0.3", {"set": {"decision": "refer"}}),
        rule(
            "clear",
            "output.label == 'benign' && output.probabilities['benign'] > 0.9",
            {"set": {"decision": "clear"}},
        ),
        rule(
            "mid",
            "output.probabilities['benign'] > 0.4 && output.probabilities['benign'] < 0.6",
            {"flag": "mid"},
        ),
        rule("v", "model.version > 0", {"set": {"checked": True}}),
        hit_policy="all",
    )
    rows = (demos["breast-cancer"].holdout.tolist() * 8)[:1000]
    probabilities = (demos["breast-cancer"].holdout_probabilities.tolist() * 8)[:1000]
    predictions = [
        {
            "label": "malignant" if p[0] > 0.5 else "benign",
            "probabilities": {"malignant": p[0], "benign": p[1]},
        }
        for p in probabilities
    ]
    # When both stages run and the fired rules are applied
    items = answered(rules, rows, predictions, signature)
    # Then each item holds exactly the rules its values call for
    assert len(items) == 1000
    for row, item in zip(rows, items, strict=True):
        fired = [r["id"] for r in item["rules"]]
        radius, texture = row[0], row[1]
        expected_radius = [f"radius-{i}" for i in range(4) if radius > 10 + i and texture < 30.0]
        assert [f for f in fired if f.startswith("radius-")] == expected_radius
        assert ("smooth" in fired) == (row[4] < 0.08) and "huge" not in fired
        assert item["checked"] is True
        if item["probabilities"]["malignant"] > 0.3:
            assert "refer" in fired
