"""Business rules: what a ruleset does to predictions, and what saving one refuses."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from aimass.contracts.registry import Feature, Signature, TensorSpec
from aimass.contracts.rules import FiredRule, Ruleset
from aimass.errors import ValidationFailed
from aimass.rules import CompiledRuleset, compile_ruleset, input_views

CLASSIFIER = Signature(
    inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 3])],
    outputs=[
        TensorSpec(name="label", dtype="int64", shape=[None]),
        TensorSpec(name="probabilities", dtype="float32", shape=[None, 2]),
    ],
    features=[
        Feature(name="age", min=18.0, max=99.0),
        Feature(name="income", nullable=True),
        Feature(name="children", dtype="int", min=0, max=12),
    ],
    task="classification",
    class_labels=["no", "yes"],
    label_output="label",
    probabilities_output="probabilities",
)
REGRESSOR = Signature(
    inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 2])],
    outputs=[TensorSpec(name="variable", dtype="float32", shape=[None, 1])],
    features=[Feature(name="rooms"), Feature(name="area")],
    task="regression",
)
MODEL = {"name": "loans", "version": 3, "backend": "lambda"}


def rule(rule_id: str, when: str, then: dict[str, Any], stage: str = "post") -> dict[str, Any]:
    return {"id": rule_id, "stage": stage, "when": when, "then": then}


def ruleset(*rules: dict[str, Any], hit_policy: str = "first") -> Ruleset:
    return Ruleset.model_validate({"hit_policy": hit_policy, "rules": list(rules)})


def prediction(yes: float) -> dict[str, Any]:
    return {"label": "yes" if yes > 0.5 else "no", "probabilities": {"no": 1 - yes, "yes": yes}}


def run(
    rules: Ruleset, instances: list[Any], predictions: list[Any], signature: Signature = CLASSIFIER
) -> list[list[FiredRule]]:
    """Both stages, as the request pipeline runs them: pre on the inputs, post on inputs and predictions,
    sharing one CEL context per instance."""
    return stages(compile_ruleset(rules, signature), instances, predictions)[2]


def stages(
    compiled: CompiledRuleset, instances: list[Any], predictions: list[Any]
) -> tuple[list[list[FiredRule]], list[list[FiredRule]], list[list[FiredRule]]]:
    """What fired in the pre stage, in the post stage, and in both, per instance."""
    contexts = compiled.contexts(instances, MODEL)
    pre = compiled.evaluate("pre", contexts)
    post = compiled.evaluate("post", contexts, predictions)
    return pre, post, [a + b for a, b in zip(pre, post, strict=True)]


def answered(
    rules: Ruleset, instances: list[Any], predictions: list[Any], signature: Signature = CLASSIFIER
) -> list[Any]:
    """The predictions as the request pipeline answers them: with what fired in both stages folded in."""
    compiled = compile_ruleset(rules, signature)
    pre, post, _ = stages(compiled, instances, predictions)
    return compiled.apply(predictions, pre, post)


def ids(fired: list[list[FiredRule]]) -> list[list[str]]:
    return [[r.id for r in item] for item in fired]


def refusal(rules: Ruleset, signature: Signature = CLASSIFIER) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as error:
        compile_ruleset(rules, signature)
    return error.value.details


ROW = {"age": 40.0, "income": 50000.0, "children": 2}
OVERLAPPING = (
    rule("likely", "output.probabilities['yes'] > 0.5", {"set": {"decision": "approve"}}),
    rule("very-likely", "output.probabilities['yes'] > 0.9", {"set": {"decision": "fast-track"}}),
    rule("young", "input.age < 25.0", {"flag": "young applicant"}),
)


# --- Hit policies and stages -------------------------------------------------------------------


def test_the_first_hit_policy_fires_at_most_one_rule_per_stage() -> None:
    # Given rules that all match a confident prediction for a young applicant
    rules = ruleset(*OVERLAPPING, hit_policy="first")
    # When they run
    fired = run(rules, [{**ROW, "age": 20.0}, ROW], [prediction(0.95), prediction(0.1)])
    # Then only the first match counts, and an instance nothing matches has no rules
    assert ids(fired) == [["likely"], []]


def test_the_all_hit_policy_fires_every_matching_rule_in_rule_order() -> None:
    rules = ruleset(*OVERLAPPING, hit_policy="all")
    fired = run(rules, [{**ROW, "age": 20.0}, ROW], [prediction(0.95), prediction(0.6)])
    assert ids(fired) == [["likely", "very-likely", "young"], ["likely"]]


def test_the_first_hit_policy_applies_to_each_stage_separately() -> None:
    rules = ruleset(
        rule("minor-pre", "input.age < 21.0", {"flag": "under 21"}, stage="pre"),
        rule("second-pre", "input.age < 30.0", {"flag": "under 30"}, stage="pre"),
        *OVERLAPPING,
    )
    fired = run(rules, [{**ROW, "age": 20.0}], [prediction(0.95)])
    assert ids(fired) == [["minor-pre", "likely"]]
    assert [r.stage for r in fired[0]] == ["pre", "post"]


def test_a_pre_rule_rejects_an_instance_before_the_model_runs() -> None:
    # Given a pre rule that rejects incomes beyond what the model was trained on
    rules = ruleset(
        rule("rich", "input.income > 1000000.0", {"reject": "income outside training range"}, stage="pre"),
        *OVERLAPPING,
    )
    compiled = compile_ruleset(rules, CLASSIFIER)
    # When the pre stage runs (no output exists yet)
    pre = compiled.evaluate("pre", compiled.contexts([ROW, {**ROW, "income": 2e6}], MODEL))
    # Then the second instance is rejected, naming the rule and its reason
    assert pre[0] == []
    assert [(r.id, r.action, r.reject) for r in pre[1]] == [
        ("rich", "reject", "income outside training range")
    ]


def test_rules_can_read_the_model_name_and_version() -> None:
    rules = ruleset(rule("v3", "model.name == 'loans' && model.version >= 3", {"flag": "new model"}))
    assert ids(run(rules, [ROW], [prediction(0.2)])) == [["v3"]]


# --- What actions do to a prediction item ---------------------------------------------------------


def test_set_merges_fields_into_the_item_and_keeps_label_and_probabilities() -> None:
    # Given two matching set rules, the later one overriding a field of the first
    rules = ruleset(
        rule("likely", "output.label == 'yes'", {"set": {"decision": "approve", "queue": "a"}}),
        rule("fast", "output.probabilities['yes'] > 0.9", {"set": {"queue": "fast"}}),
        hit_policy="all",
    )
    predictions = [prediction(0.95)]
    # When the fired rules are applied
    [item] = answered(rules, [ROW], predictions)
    # Then the model's answer is still there, next to the merged decision
    assert item["label"] == "yes" and item["probabilities"] == {"no": pytest.approx(0.05), "yes": 0.95}
    assert (item["decision"], item["queue"]) == ("approve", "fast")
    assert [r["id"] for r in item["rules"]] == ["likely", "fast"]
    assert "flags" not in item
    assert "decision" not in predictions[0]


def test_a_flag_rule_adds_its_reason_to_the_item_flags() -> None:
    rules = ruleset(rule("young", "input.age < 25.0", {"flag": "young applicant"}))
    items = answered(rules, [{**ROW, "age": 19}, ROW], [{}, {}])
    assert items[0]["flags"] == ["young applicant"]
    assert "flags" not in items[1]


def test_each_item_lists_the_rules_that_fired_and_what_they_did() -> None:
    rules = ruleset(*OVERLAPPING, hit_policy="all")
    predictions = [prediction(0.95), prediction(0.1)]
    items = answered(rules, [{**ROW, "age": 20.0}, ROW], predictions)
    assert items[0]["rules"] == [
        {"id": "likely", "stage": "post", "action": "set", "set": {"decision": "approve"}},
        {"id": "very-likely", "stage": "post", "action": "set", "set": {"decision": "fast-track"}},
        {"id": "young", "stage": "post", "action": "flag", "flag": "young applicant"},
    ]
    assert items[1]["rules"] == []


def test_a_bare_regression_value_becomes_an_object_only_when_a_rule_fired() -> None:
    # Given a regressor whose predictions are bare numbers, and a rule on its value
    rules = ruleset(rule("expensive", "output.value > 500000.0", {"set": {"band": "high"}}))
    instances = [{"rooms": 3, "area": 90.0}, {"rooms": 9, "area": 400.0}]
    predictions = [250000.0, 900000.0]
    # When the rules are applied
    items = answered(rules, instances, predictions, REGRESSOR)
    # Then an item no rule touched stays a number, and the other carries its value and rules
    assert items[0] == 250000.0
    assert items[1] == {
        "value": 900000.0,
        "band": "high",
        "rules": [{"id": "expensive", "stage": "post", "action": "set", "set": {"band": "high"}}],
    }


# --- What `input` is ---------------------------------------------------------------------------


def test_input_is_keyed_by_feature_name_for_objects_and_rows_alike() -> None:
    views = input_views(CLASSIFIER, [[40, None, 2.0], {"age": 40.5, "income": 1, "children": 2}])
    # JSON integers in float features read as doubles, and integral floats in int features as ints
    assert views == [
        {"age": 40.0, "income": None, "children": 2},
        {"age": 40.5, "income": 1.0, "children": 2},
    ]
    assert type(views[0]["age"]) is float and type(views[0]["children"]) is int


def test_a_model_without_features_sees_its_inputs_by_name() -> None:
    image = Signature(
        inputs=[TensorSpec(name="image", dtype="float32", shape=[None, 2, 2])],
        outputs=[TensorSpec(name="out", dtype="float32", shape=[None, 3])],
    )
    rules = ruleset(rule("bright", "input.image[0][0] > 0.5 && output.value[2] > 0.0", {"flag": "bright"}))
    fired = run(rules, [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]], [[0.1, 0.2, 0.7]] * 2, image)
    assert ids(fired) == [["bright"], []]


def test_rules_that_read_the_whole_input_see_every_feature() -> None:
    rules = ruleset(
        rule("named", "'children' in input && input['children'] > 1", {"flag": "family"}),
        rule("any-null", "input.exists(k, input[k] == null)", {"flag": "missing data"}),
        hit_policy="all",
    )
    fired = run(rules, [ROW, {**ROW, "income": None, "children": 0}], [prediction(0.2)] * 2)
    assert ids(fired) == [["named"], ["any-null"]]


# --- Request time never breaks a prediction ------------------------------------------------------


def test_a_rule_that_fails_on_an_odd_instance_counts_as_not_matched_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a rule on a nullable feature, valid when saved, and another rule after it
    rules = ruleset(
        rule("low-income", "input.income < 10000.0", {"flag": "low income"}),
        rule("young", "input.age < 25.0", {"flag": "young applicant"}),
        hit_policy="all",
    )
    # When an instance brings a null income
    with caplog.at_level(logging.WARNING, logger="aimass.rules"):
        fired = run(rules, [{**ROW, "income": None, "age": 20.0}, {**ROW, "income": 10.0}], [{}, {}])
    # Then that rule does not fire for it, the other rules still do, and the failure is logged once
    assert ids(fired) == [["young"], ["low-income"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "low-income" in warnings[0] and "1 of 2" in warnings[0]


def test_under_the_first_hit_policy_a_rule_after_the_match_is_not_run_so_cannot_fail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a rule that matches first and one after it that fails on a null income
    rules = ruleset(
        rule("young", "input.age < 25.0", {"flag": "young applicant"}),
        rule("low-income", "input.income < 10000.0", {"flag": "low income"}),
        hit_policy="first",
    )
    with caplog.at_level(logging.WARNING, logger="aimass.rules"):
        fired = run(rules, [{**ROW, "income": None, "age": 20.0}, {**ROW, "income": None}], [{}, {}])
    # Then the first instance stops at its match; only the second, which reached the failing rule, logs it
    assert ids(fired) == [["young"], []]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "low-income" in warnings[0] and "1 of 2" in warnings[0]


def test_a_rule_that_gives_no_bool_on_an_instance_counts_as_not_matched(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A bool for every value the signature allows (age 18-99), a number beyond it: saving accepts it.
    rules = ruleset(
        rule("odd", "input.age <= 99.0 ? input.age > 60.0 : input.age", {"flag": "senior"}),
        rule("young", "input.age < 25.0", {"flag": "young applicant"}),
        hit_policy="all",
    )
    with caplog.at_level(logging.WARNING, logger="aimass.rules"):
        fired = run(rules, [{**ROW, "age": 120.0}, {**ROW, "age": 70.0}], [{}, {}])
    assert ids(fired) == [[], ["odd"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "odd" in warnings[0] and "gave double" in warnings[0]


def test_a_rule_without_the_output_it_reads_counts_as_not_matched() -> None:
    rules = ruleset(rule("likely", "output.label == 'yes'", {"flag": "x"}))
    compiled = compile_ruleset(rules, CLASSIFIER)
    assert compiled.evaluate("post", compiled.contexts([ROW], MODEL)) == [[]]
    assert compiled.evaluate("post", compiled.contexts([ROW], MODEL), [{"odd": 1}]) == [[]]


# --- Saving refuses what would not work ----------------------------------------------------------


def test_a_syntax_error_is_reported_with_the_rule_id_and_position() -> None:
    details = refusal(ruleset(OVERLAPPING[0], rule("typo", "input.age >\n  (1.0 +", {"flag": "x"})))
    assert [(d["loc"], d["type"]) for d in details] == [(["rules", 1, "when"], "cel_syntax")]
    assert "typo" in details[0]["message"] and "2:9" in details[0]["message"]


def test_an_unknown_feature_is_reported_with_a_suggestion() -> None:
    details = refusal(ruleset(rule("typo", "input.aeg > 30.0", {"flag": "x"})))
    assert details == [
        {
            "loc": ["rules", 0, "when"],
            "message": "rule typo: unknown field input.aeg; did you mean 'age'?",
            "type": "unknown_field",
        }
    ]


def test_an_unknown_field_behind_a_short_circuit_is_still_reported() -> None:
    details = refusal(ruleset(rule("hidden", "input.age > 1000.0 && input.salary > 1.0", {"flag": "x"})))
    assert [d["type"] for d in details] == ["unknown_field"] and "input.salary" in details[0]["message"]


def test_an_unknown_class_is_reported() -> None:
    details = refusal(ruleset(rule("class", "output.probabilities['maybe'] > 0.5", {"flag": "x"})))
    assert details[0]["type"] == "unknown_field" and "output.probabilities['maybe']" in details[0]["message"]


def test_a_type_mismatch_is_reported_with_cels_explanation() -> None:
    details = refusal(ruleset(rule("mixed", "input.age + 1 > 30.0", {"flag": "x"})))
    assert details[0]["loc"] == ["rules", 0, "when"] and details[0]["type"] == "type_mismatch"
    assert "mixed" in details[0]["message"] and "float + int" in details[0]["message"]


def test_comparing_a_label_with_a_number_is_a_type_mismatch() -> None:
    details = refusal(ruleset(rule("label-number", "output.label > 1", {"flag": "x"})))
    assert details[0]["type"] == "type_mismatch"


def test_a_condition_that_is_not_true_or_false_is_refused() -> None:
    details = refusal(ruleset(rule("number", "input.age * 2.0", {"flag": "x"})))
    assert details == [
        {
            "loc": ["rules", 0, "when"],
            "message": "rule number: `when` must give true or false, got double",
            "type": "not_a_bool",
        }
    ]


def test_a_pre_rule_that_reads_the_output_is_refused() -> None:
    details = refusal(ruleset(rule("early", "output.label == 'yes'", {"reject": "no"}, stage="pre")))
    assert [(d["loc"], d["type"]) for d in details] == [(["rules", 0, "when"], "output_in_pre")]


def test_a_set_that_would_overwrite_the_label_is_refused() -> None:
    details = refusal(ruleset(rule("hide", "true", {"set": {"label": "no", "decision": "deny"}})))
    assert [(d["loc"], d["type"]) for d in details] == [
        (["rules", 0, "then", "set", "label"], "reserved_field")
    ]


def test_a_set_that_would_overwrite_a_bare_value_is_refused() -> None:
    details = refusal(ruleset(rule("clip", "output.value > 10.0", {"set": {"value": 10.0}})), REGRESSOR)
    assert details[0]["loc"] == ["rules", 0, "then", "set", "value"]


def test_every_problem_of_a_ruleset_is_reported_at_once() -> None:
    details = refusal(
        ruleset(
            rule("ok", "input.age > 30.0", {"flag": "x"}),
            rule("typo", "input.age >", {"flag": "x"}),
            rule("unknown", "input.height > 2.0", {"flag": "x"}),
            rule("hide", "true", {"set": {"probabilities": {}}}),
        )
    )
    assert [d["loc"][:2] for d in details] == [["rules", 1], ["rules", 2], ["rules", 3]]


# --- One context per instance, flat variables ----------------------------------------------------


def test_shared_contexts_give_what_each_stage_alone_gives() -> None:
    rules = ruleset(
        rule("young", "input.age < 30.0", {"flag": "young"}, stage="pre"),
        rule("rich", "input.income > 1000.0 && model.version == 3", {"flag": "rich"}, stage="pre"),
        rule("yes-with-kids", "output.label == 'yes' && input.children > 0", {"set": {"d": 1}}),
        rule(
            "unsure", "output.probabilities['yes'] > 0.4 && output.probabilities['yes'] < 0.6", {"flag": "?"}
        ),
        hit_policy="all",
    )
    instances = [[25.0, 2000.0, 1], [45.0, 10.0, 0], [29.0, 500.0, 3]]
    predictions = [prediction(0.9), prediction(0.5), prediction(0.55)]
    compiled = compile_ruleset(rules, CLASSIFIER)
    pre = compiled.evaluate("pre", compiled.contexts(instances, MODEL))
    post = compiled.evaluate("post", compiled.contexts(instances, MODEL), predictions)
    alone = [a + b for a, b in zip(pre, post, strict=True)]
    assert run(rules, instances, predictions) == alone
    assert ids(alone) == [
        ["young", "rich", "yes-with-kids"],
        ["unsure"],
        ["young", "yes-with-kids", "unsure"],
    ]


def test_keys_read_by_name_become_flat_variables_outside_string_literals() -> None:
    from aimass.rules import _flattened

    flat = {
        "input": {("age",): "_input_0", ("income",): "_input_1"},
        "output": {("label",): "_output_0", ("probabilities", "yes"): "_output_1"},
    }
    source = (
        "input.age > 30.0 && input['income'] > 1.0 && output.label == 'input.age' && x.input.age"
        " && output.probabilities['yes'] > 0.5"
    )
    assert _flattened(source, flat) == (
        "_input_0 > 30.0 && _input_1 > 1.0 && _output_0 == 'input.age' && x.input.age && _output_1 > 0.5"
    )


def test_rules_give_the_same_answers_with_and_without_flat_variables() -> None:
    flat_only = ruleset(
        rule("young", "input.age < 30.0 && input['children'] > 0", {"flag": "young"}, stage="pre"),
        rule("sure", "output.probabilities['yes'] > 0.8 && output.label == 'yes'", {"set": {"d": 1}}),
        hit_policy="all",
    )
    # has() needs the map itself: the same rules with one more keep `input` and `output` as maps.
    with_maps = ruleset(
        *[r.model_dump() for r in flat_only.rules],
        rule("has-income", "has(input.income) && has(output.label) && input.income > 1e9", {"flag": "rich"}),
        hit_policy="all",
    )
    instances = [[25.0, 2000.0, 1], [45.0, 10.0, 0], [29.0, None, 3]]
    predictions = [prediction(0.9), prediction(0.5), prediction(0.85)]
    expected = [["young", "sure"], [], ["young", "sure"]]
    assert ids(run(flat_only, instances, predictions)) == expected
    assert ids(run(with_maps, instances, predictions)) == expected
    assert compile_ruleset(flat_only, CLASSIFIER).input_keys == frozenset({"age", "children"})


def test_an_output_read_whole_and_by_key_is_one_flat_map() -> None:
    rules = ruleset(
        rule("sure", "output.probabilities['yes'] > 0.8", {"flag": "sure"}),
        rule("two-classes", "size(output.probabilities) == 2 && output.label == 'no'", {"flag": "no"}),
        hit_policy="all",
    )
    fired = run(rules, [[25.0, 1.0, 1], [40.0, 2.0, 0]], [prediction(0.9), prediction(0.1)])
    assert ids(fired) == [["sure"], ["two-classes"]]


# skl2onnx's default export (ZipMap): the probabilities output has no columns the signature counts.
ZIPMAP = CLASSIFIER.model_copy(
    update={
        "outputs": [
            TensorSpec(name="output_label", dtype="int64", shape=[None]),
            TensorSpec(name="output_probability", dtype="string", shape=[None]),
        ],
        "label_output": "output_label",
        "probabilities_output": "output_probability",
    }
)


def test_a_rule_on_a_zipmap_class_label_is_accepted_and_an_unknown_one_refused() -> None:
    rules = ruleset(rule("yes", "output.probabilities['yes'] > 0.5", {"flag": "x"}))
    assert ids(run(rules, [ROW, ROW], [prediction(0.9), prediction(0.1)], ZIPMAP)) == [["yes"], []]
    details = refusal(ruleset(rule("typo", "output.probabilities['yse'] > 0.5", {"flag": "x"})), ZIPMAP)
    assert details[0]["type"] == "unknown_field" and "output.probabilities['yse']" in details[0]["message"]


def test_a_rule_on_a_zipmap_without_class_labels_cannot_be_checked_and_is_accepted() -> None:
    # The graph's classes are not in the signature, so no key can be called unknown.
    unlabeled = ZIPMAP.model_copy(update={"class_labels": None})
    rules = ruleset(rule("seven", "output.probabilities['7'] > 0.5", {"flag": "x"}))
    answer = {"label": 7, "probabilities": {"0": 0.1, "7": 0.9}}
    assert ids(run(rules, [ROW], [answer], unlabeled)) == [["seven"]]


def test_a_ruleset_whose_conditions_exceed_the_budget_is_refused_at_the_rules_field() -> None:
    from pydantic import ValidationError

    from aimass.contracts.rules import MAX_CONDITION_CHARS, Ruleset

    long = " || ".join(["input.mean_radius > 1000.5"] * 130)  # 3,896 characters
    rules = [{"id": f"r{i}", "stage": "pre", "when": long, "then": {"flag": "x"}} for i in range(11)]
    assert len(long) * 10 < MAX_CONDITION_CHARS < len(long) * 11
    Ruleset.model_validate({"rules": rules[:10]})
    with pytest.raises(ValidationError) as refused:
        Ruleset.model_validate({"rules": rules})
    (error,) = refused.value.errors()
    assert error["loc"] == ("rules",) and "at most 40,000" in error["msg"]


# The classes a ZipMap gave for the push-time probe (Signature.output_classes), without class labels.
IRIS = ["setosa", "versicolor", "virginica"]
PROBED_ZIPMAP = ZIPMAP.model_copy(
    update={
        "class_labels": None,
        "output_classes": IRIS,
        "outputs": [
            TensorSpec(name="output_label", dtype="string", shape=[None]),
            TensorSpec(name="output_probability", dtype="string", shape=[None]),
        ],
    }
)


def test_a_rule_on_a_class_the_probe_saw_is_accepted_and_fires() -> None:
    rules = ruleset(
        rule(
            "virginica",
            "output.label == 'virginica' && output.probabilities['virginica'] > 0.5",
            {"flag": "x"},
        )
    )
    answers = [
        {"label": "virginica", "probabilities": {"setosa": 0.0, "versicolor": 0.1, "virginica": 0.9}},
        {"label": "setosa", "probabilities": {"setosa": 0.8, "versicolor": 0.1, "virginica": 0.1}},
    ]
    assert ids(run(rules, [ROW, ROW], answers, PROBED_ZIPMAP)) == [["virginica"], []]


def test_a_rule_on_a_class_the_probe_did_not_see_is_refused_naming_the_classes() -> None:
    details = refusal(
        ruleset(rule("typo", "output.probabilities['virginca'] > 0.5", {"flag": "x"})), PROBED_ZIPMAP
    )
    [detail] = details
    assert detail["type"] == "unknown_field"
    assert detail["message"] == (
        "rule typo: unknown field output.probabilities['virginca']; did you mean 'virginica'? "
        "The model's classes are setosa, versicolor, virginica"
    )


def test_integer_classes_the_probe_saw_are_keyed_as_text_and_the_label_is_an_integer() -> None:
    numbered = ZIPMAP.model_copy(update={"class_labels": None, "output_classes": ["1", "2", "3"]})
    rules = ruleset(rule("three", "output.label == 3 && output.probabilities['3'] > 0.5", {"flag": "x"}))
    answer = {"label": 3, "probabilities": {"1": 0.0, "2": 0.1, "3": 0.9}}
    assert ids(run(rules, [ROW], [answer], numbered)) == [["three"]]
    assert refusal(ruleset(rule("zero", "output.probabilities['0'] > 0.5", {"flag": "x"})), numbered)


def test_with_class_labels_rules_are_checked_against_the_labels_not_the_probed_classes() -> None:
    labelled = ZIPMAP.model_copy(update={"output_classes": ["0", "1"]})
    rules = ruleset(rule("yes", "output.probabilities['yes'] > 0.5", {"flag": "x"}))
    assert ids(run(rules, [ROW], [prediction(0.9)], labelled)) == [["yes"]]
    assert refusal(ruleset(rule("index", "output.probabilities['1'] > 0.5", {"flag": "x"})), labelled)


def test_a_probed_width_bounds_the_indexes_of_a_dynamic_probability_tensor() -> None:
    dynamic = CLASSIFIER.model_copy(
        update={
            "class_labels": None,
            "outputs": [
                TensorSpec(name="label", dtype="int64", shape=[None]),
                TensorSpec(name="probabilities", dtype="float32", shape=[None, None]),
            ],
        }
    )
    far = ruleset(rule("far", "output.probabilities[5] > 0.5", {"flag": "x"}))
    # Not probed: the width is unknown, so the index cannot be checked
    compile_ruleset(far, dynamic)
    probed = dynamic.model_copy(update={"output_classes": ["0", "1", "2"]})
    assert refusal(far, probed)[0]["type"] == "unknown_field"
    compile_ruleset(ruleset(rule("last", "output.probabilities[2] > 0.5", {"flag": "x"})), probed)
