"""Request-time checks: ranges and categories from the signature and the baseline, keys that are not
features, and anomaly scores."""

from __future__ import annotations

from typing import Any

import numpy as np

from aimass.contracts.registry import Feature, Signature, TensorSpec, TensorType
from aimass.quality.anomaly import AnomalyModel, fit
from aimass.quality.checks import RequestChecks
from aimass.quality.columns import true_cells

OUTPUTS = [TensorSpec(name="variable", dtype="float32", shape=[None, 1])]


def signature(*features: Feature, dtype: TensorType = "float32") -> Signature:
    return Signature(
        inputs=[TensorSpec(name="input", dtype=dtype, shape=[None, len(features)])],
        outputs=OUTPUTS,
        features=list(features),
    )


def constraints(*features: dict[str, Any]) -> dict[str, Any]:
    return {"version": 0.0, "features": list(features)}


def learned_range(name: str, low: float, high: float) -> dict[str, Any]:
    return {
        "name": name,
        "inferred_type": "Fractional",
        "completeness": 1.0,
        "aimass": {"min": low, "max": high},
    }


def build(
    sig: Signature, learned: dict[str, Any] | None = None, anomaly: dict[str, Any] | None = None
) -> RequestChecks:
    checks = RequestChecks.build(sig, learned, anomaly)
    assert checks is not None
    return checks


def test_the_signatures_bounds_are_the_range() -> None:
    checks = build(signature(Feature(name="a", min=0, max=1), Feature(name="b")))
    np.testing.assert_array_equal(checks.low, [0.0, -np.inf])
    np.testing.assert_array_equal(checks.high, [1.0, np.inf])


def test_the_baselines_range_applies_without_signature_bounds() -> None:
    checks = build(signature(Feature(name="a"), Feature(name="b")), constraints(learned_range("b", -2, 5)))
    # The reference's range, widened by RANGE_MARGIN of it on each side.
    np.testing.assert_allclose(checks.low, [-np.inf, -2.0 - 0.1 * 7])
    np.testing.assert_allclose(checks.high, [np.inf, 5.0 + 0.1 * 7])


def test_the_signatures_bounds_win_over_the_baselines() -> None:
    sig = signature(Feature(name="a", min=0, max=100), Feature(name="b", max=10))
    checks = build(sig, constraints(learned_range("a", 3, 7), learned_range("b", 1, 2)))
    # Each bound on its own: the signature's where it has one, the baseline's otherwise.
    np.testing.assert_allclose(checks.low, [0.0, 1.0 - 0.1 * 1])
    np.testing.assert_allclose(checks.high, [100.0, 10.0])


def test_categories_come_from_the_signature_or_the_baselines_domains() -> None:
    sig = signature(
        Feature(name="colour", dtype="string", categories=["red", "blue"]),
        Feature(name="size", dtype="string"),
        Feature(name="shape", dtype="string"),
        dtype="string",
    )
    learned = constraints(
        {"name": "colour", "string_constraints": {"domains": ["green"]}},
        {"name": "size", "string_constraints": {"domains": ["S", "M", "L"]}},
    )
    checks = build(sig, learned)
    assert checks.domains == {0: frozenset({"red", "blue"}), 1: frozenset({"S", "M", "L"})}


def test_a_model_without_columns_has_no_checks() -> None:
    image = TensorSpec(name="image", dtype="float32", shape=[None, None, 8])
    assert RequestChecks.build(Signature(inputs=[image], outputs=OUTPUTS), None, None) is None


def test_violations_name_the_feature_the_check_and_the_value() -> None:
    checks = build(signature(Feature(name="a", min=0, max=1), Feature(name="b", max=10)))
    matrix = np.array([[0.5, 3.0], [-1.0, 11.0], [np.nan, np.nan]])
    found = checks.violations(matrix)
    assert found[0] == [] and found[2] == []
    assert [(v["feature"], v["check"]) for v in found[1]] == [("a", "range"), ("b", "range")]
    assert found[1][0]["message"] == "-1 is outside [0, 1]"
    assert found[1][1]["message"] == "11 is outside [-inf, 10]"


def test_a_value_outside_the_categories_is_a_violation_but_a_missing_one_is_not() -> None:
    sig = signature(Feature(name="colour", dtype="string", categories=["red", "blue"]), dtype="string")
    checks = build(sig)
    matrix = np.array([["red"], ["green"], [None]], dtype=object)
    found = checks.violations(matrix)
    assert found[0] == [] and found[2] == []
    assert found[1] == [
        {"feature": "colour", "check": "category", "message": "'green' is not one of the 2 known categories"}
    ]


def test_numeric_categories_are_checked_too() -> None:
    checks = build(signature(Feature(name="grade", dtype="int", categories=[1, 2, 3])))
    found = checks.violations(np.array([[2.0], [4.0], [np.nan]]))
    assert [[v["check"] for v in row] for row in found] == [[], ["category"], []]


def test_keys_that_are_not_features_are_found_in_objects_of_the_wrong_size() -> None:
    checks = build(signature(Feature(name="a"), Feature(name="b")))
    instances = [{"a": 1, "b": 2}, {"a": 1, "b": 2, "colour": "red"}, {"a": 1, "typo": 2, "x": 3}]
    assert checks.unknown_features(instances) == [(1, "colour"), (2, "typo"), (2, "x")]


def test_an_object_of_the_right_size_is_not_inspected() -> None:
    # As documented: only objects whose size differs from the feature count are read, so a key
    # that replaces a feature is left to the missing-value checks.
    checks = build(signature(Feature(name="a"), Feature(name="b")))
    assert checks.unknown_features([{"a": 1, "typo": 2}]) == []


def test_list_instances_and_non_tabular_models_have_no_unknown_features() -> None:
    checks = build(signature(Feature(name="a"), Feature(name="b")))
    assert checks.unknown_features([[1, 2, 3]]) == []
    image = Signature(inputs=[TensorSpec(name="image", dtype="float32", shape=[None, 2, 2])], outputs=OUTPUTS)
    assert build(image).unknown_features([{"x": 1}]) == []


def test_there_are_no_anomaly_scores_without_an_anomaly_model() -> None:
    checks = build(signature(Feature(name="a"), Feature(name="b")))
    assert checks.anomaly_scores(np.zeros((3, 2))) is None


def test_anomaly_scores_use_the_models_columns() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 2))
    document = fit(reference, ["b", "c"])
    assert document is not None
    checks = build(signature(Feature(name="a"), Feature(name="b"), Feature(name="c")), anomaly=document)
    matrix = np.column_stack([rng.normal(size=5) * 100, rng.normal(size=(5, 2))])
    scores = checks.anomaly_scores(matrix)
    assert scores is not None
    np.testing.assert_array_equal(scores, AnomalyModel.from_json(document).scores(matrix[:, 1:]))


def test_a_null_where_the_baseline_always_had_a_value_is_a_completeness_violation() -> None:
    sig = signature(Feature(name="a", nullable=True), Feature(name="b", nullable=True))
    learned = constraints({"name": "a", "completeness": 1.0}, {"name": "b", "completeness": 0.8})
    found = build(sig, learned).violations(np.array([[np.nan, np.nan], [1.0, 2.0]]))
    assert found == [
        [
            {
                "feature": "a",
                "check": "completeness",
                "message": "missing, and every row of the baseline had a value",
            }
        ],
        [],
    ]


def test_a_single_row_gets_the_same_findings_as_the_same_row_in_a_batch() -> None:
    sig = signature(Feature(name="a", min=0, max=1), Feature(name="b", nullable=True), Feature(name="c"))
    learned = constraints({"name": "b", "completeness": 1.0}, learned_range("c", -5, 5))
    checks = build(sig, learned)
    matrix = np.array([[0.5, 1.0, 0.0], [2.0, np.nan, 9.0], [-1.0, 3.0, -7.0], [np.nan, np.nan, np.nan]])
    batch = checks.violations(matrix)
    assert [checks.violations(matrix[i : i + 1])[0] for i in range(len(matrix))] == batch
    assert [len(found) for found in batch] == [0, 3, 2, 1]


def test_true_cells_are_numpys_nonzero_row_by_row() -> None:
    rng = np.random.default_rng(3)
    for shape, share in [((2000, 30), 0.001), ((7, 3), 0.5), ((1, 30), 0.1), ((0, 4), 0.5), ((5, 1), 1.0)]:
        mask = rng.random(shape) < share
        rows, columns = np.nonzero(mask)
        assert true_cells(mask) == list(zip(rows.tolist(), columns.tolist(), strict=True))
    assert true_cells(np.zeros((3, 3), dtype=bool)) == []
