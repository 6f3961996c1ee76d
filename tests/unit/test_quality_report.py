"""The data-quality report of a batch against a baseline: Model Monitor's constraint violations,
completeness, drift per feature and anomalies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from aimass.contracts.common import ModelRef
from aimass.contracts.quality import QualityReport
from aimass.contracts.registry import Feature, Signature, TensorSpec
from aimass.quality.baseline import Baseline, compute
from aimass.quality.checks import RequestChecks
from aimass.quality.columns import columns_of
from aimass.quality.report import MIN_DRIFT_ROWS, features_matrix, lenient_matrix, quality_report

OUTPUTS = [TensorSpec(name="variable", dtype="float32", shape=[None, 1])]
NUMERIC = Signature(
    inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 2])],
    outputs=OUTPUTS,
    features=[Feature(name="x"), Feature(name="y")],
)
STRING = Signature(
    inputs=[TensorSpec(name="input", dtype="string", shape=[None, 1])],
    outputs=OUTPUTS,
    features=[Feature(name="colour", dtype="string")],
)
# Integral columns take booleans; a nullable one may be missing.
MIXED = Signature(
    inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 3])],
    outputs=OUTPUTS,
    features=[
        Feature(name="n", dtype="int"),
        Feature(name="flag", dtype="bool"),
        Feature(name="v", nullable=True),
    ],
)
# No feature names: rows are lists, the columns the tensor's cells.
UNNAMED = Signature(inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 2])], outputs=OUTPUTS)
# Big enough that a batch like the reference stays under the drift thresholds (a KS distance of 0.1
# and a PSI of 0.2 are often crossed by chance in batches of under a few hundred rows).
BATCH = 500
COLOURS = ["red", "blue", "green"]
COLOUR_WEIGHTS = [0.5, 0.3, 0.2]


def numeric_rows(rng: np.random.Generator, count: int) -> np.ndarray:
    x = rng.normal(10.0, 2.0, count)
    return np.column_stack([x, 0.5 * x + rng.normal(0.0, 1.0, count)])


REFERENCE = numeric_rows(np.random.default_rng(0), 2000)


def like_reference(seed: int, count: int = BATCH) -> np.ndarray:
    """Fresh rows from the reference's distribution, within its range (the range check's bounds: a
    fresh batch often holds a new extreme)."""
    return np.clip(
        numeric_rows(np.random.default_rng(seed), count), REFERENCE.min(axis=0), REFERENCE.max(axis=0)
    )


def records(matrix: np.ndarray) -> list[dict[str, Any]]:
    return [{"x": float(x), "y": float(y)} for x, y in matrix]


def colours(rng: np.random.Generator, count: int) -> list[str]:
    return rng.choice(COLOURS, size=count, p=COLOUR_WEIGHTS).tolist()


@pytest.fixture(scope="module")
def numeric_baseline() -> Baseline:
    columns = columns_of(NUMERIC)
    assert columns is not None
    return compute(columns, REFERENCE)


@pytest.fixture(scope="module")
def string_baseline() -> Baseline:
    columns = columns_of(STRING)
    assert columns is not None
    return compute(columns, np.array(colours(np.random.default_rng(0), 1000), dtype=object)[:, None])


def report(signature: Signature, baseline: Baseline, instances: list[Any]) -> dict[str, Any]:
    checks = RequestChecks.build(signature, baseline.constraints, baseline.anomaly)
    assert checks is not None
    found = quality_report(checks, baseline.statistics, baseline.constraints, instances)
    # Whatever the batch, the report is a valid QualityReport.
    QualityReport(model=ModelRef(name="m", version=1, backend="lambda"), **found)
    return found


def checks_of(found: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v["feature_name"], v["constraint_check_type"]) for v in found["violations"]]


def drift_of(found: dict[str, Any], feature: str) -> dict[str, Any]:
    return next(d for d in found["drift"] if d["feature"] == feature)


def test_a_batch_like_the_reference_has_no_drift(numeric_baseline: Baseline) -> None:
    batch = records(like_reference(1))
    found = report(NUMERIC, numeric_baseline, batch)
    assert found["item_count"] == 500
    assert found["completeness"] == {"x": 1.0, "y": 1.0}
    assert [d["feature"] for d in found["drift"]] == ["x", "y"]
    assert all(d["method"] == "psi+ks" and not d["drifted"] for d in found["drift"])
    assert all(d["psi"] < 0.2 and d["ks_statistic"] < 0.1 for d in found["drift"])
    assert "baseline_drift_check" not in {check for _, check in checks_of(found)}


def test_a_shifted_batch_drifts_with_its_figures(numeric_baseline: Baseline) -> None:
    matrix = like_reference(1)
    matrix[:, 0] += 2.0  # one standard deviation
    found = report(NUMERIC, numeric_baseline, records(matrix))
    drift = drift_of(found, "x")
    assert drift["drifted"]
    assert drift["psi"] > 0.2 and drift["ks_statistic"] > 0.1 and drift["ks_p_value"] < 0.01
    assert ("x", "baseline_drift_check") in checks_of(found)
    description = next(
        v["description"] for v in found["violations"] if v["constraint_check_type"] == "baseline_drift_check"
    )
    assert "psi=" in description and "ks_statistic=" in description


def test_a_frequent_new_category_is_chi_square_drift(string_baseline: Baseline) -> None:
    rng = np.random.default_rng(1)
    batch = [{"colour": c} for c in colours(rng, 140) + ["purple"] * 60]
    found = report(STRING, string_baseline, batch)
    drift = drift_of(found, "colour")
    assert drift["method"] == "chi_square"
    assert drift["drifted"] and drift["chi_square_p_value"] < 0.01
    assert ("colour", "baseline_drift_check") in checks_of(found)
    assert ("colour", "categorical_values_check") in checks_of(found)
    assert found["anomalies"] is None


def test_categories_like_the_reference_do_not_drift(string_baseline: Baseline) -> None:
    batch = [{"colour": c} for c in colours(np.random.default_rng(1), 200)]
    found = report(STRING, string_baseline, batch)
    drift = drift_of(found, "colour")
    assert not drift["drifted"] and drift["chi_square_p_value"] >= 0.01
    assert found["violations"] == []


def test_completeness_below_the_baselines_is_a_violation(numeric_baseline: Baseline) -> None:
    batch = records(like_reference(1))
    for row in batch[:10]:
        del row["y"]
    batch[10]["y"] = None
    found = report(NUMERIC, numeric_baseline, batch)
    assert found["completeness"] == {"x": 1.0, "y": 489 / 500}
    assert checks_of(found) == [("y", "completeness_check")]


def test_a_key_that_is_not_a_feature_is_an_extra_column(numeric_baseline: Baseline) -> None:
    batch = records(like_reference(1))
    batch[3]["colour"] = "red"
    found = report(NUMERIC, numeric_baseline, batch)
    assert checks_of(found) == [("colour", "extra_column_check")]
    assert "1 of 500 rows" in found["violations"][0]["description"]


def test_a_string_in_a_numeric_column_is_the_wrong_type_and_missing(numeric_baseline: Baseline) -> None:
    batch = records(like_reference(1))
    batch[0]["x"] = "twelve"
    batch[1]["x"] = True
    found = report(NUMERIC, numeric_baseline, batch)
    assert found["completeness"]["x"] == 498 / 500
    assert checks_of(found) == [("x", "data_type_check"), ("x", "completeness_check")]
    assert found["violations"][0]["description"].startswith("2 of 500 values")


def test_a_column_no_row_has_is_missing(numeric_baseline: Baseline) -> None:
    batch = [{"x": float(x)} for x in like_reference(1)[:, 0]]
    found = report(NUMERIC, numeric_baseline, batch)
    assert found["completeness"]["y"] == 0.0
    assert checks_of(found) == [("y", "missing_column_check")]
    assert [d["feature"] for d in found["drift"]] == ["x"]


def test_values_outside_the_baselines_range_are_a_violation(numeric_baseline: Baseline) -> None:
    batch = records(like_reference(1))
    batch[0]["x"] = 1e6
    batch[1]["x"] = -1e6
    found = report(NUMERIC, numeric_baseline, batch)
    assert ("x", "value_range_check") in checks_of(found)
    assert next(v for v in found["violations"] if v["constraint_check_type"] == "value_range_check")[
        "description"
    ].startswith("2 of 500 values are outside")


def test_too_few_values_give_no_drift_figures(numeric_baseline: Baseline) -> None:
    batch = records(like_reference(1))
    for row in batch[MIN_DRIFT_ROWS - 1 :]:
        row["y"] = None
    found = report(NUMERIC, numeric_baseline, batch)
    assert [d["feature"] for d in found["drift"]] == ["x"]
    small = report(NUMERIC, numeric_baseline, batch[: MIN_DRIFT_ROWS - 1])
    assert small["drift"] == []


def test_anomalies_are_counted_against_the_baselines_threshold(numeric_baseline: Baseline) -> None:
    assert numeric_baseline.anomaly is not None
    matrix = like_reference(1, 200)
    matrix[:20, 1] = 5.0 * matrix[:20, 0]  # far from y's relation to x
    found = report(NUMERIC, numeric_baseline, records(matrix))
    anomalies = found["anomalies"]
    assert anomalies is not None
    assert anomalies["threshold"] == numeric_baseline.anomaly["threshold"]
    assert 20 <= anomalies["count"] <= 30
    assert anomalies["rate"] == anomalies["count"] / 200


def test_the_thresholds_are_reported(numeric_baseline: Baseline) -> None:
    found = report(NUMERIC, numeric_baseline, records(like_reference(1, 10)))
    assert found["thresholds"] == {
        "psi": 0.2,
        "ks_statistic": 0.1,
        "ks_p_value": 0.01,
        "chi_square_p_value": 0.01,
        "min_drift_rows": MIN_DRIFT_ROWS,
    }


def plain_checks(signature: Signature) -> RequestChecks:
    checks = RequestChecks.build(signature, None, None)
    assert checks is not None
    return checks


def test_a_value_of_the_wrong_type_is_missing_and_counted_against_its_column() -> None:
    matrix, mistyped, extra, given = lenient_matrix(
        plain_checks(MIXED),
        [
            {"n": 1, "flag": True, "v": 2.5},
            {"n": True, "flag": 3, "v": float("inf")},
            {"n": "1", "v": None, "other": 1},
            {"other": 2, "n": 1.5},
            {"v": True},
        ],
    )
    np.testing.assert_array_equal(
        matrix,
        [[1, 1, 2.5], [1, 3, np.nan], [np.nan] * 3, [1.5, np.nan, np.nan], [np.nan] * 3],
    )
    assert mistyped.tolist() == [1, 0, 2]
    assert extra == {"other": 2}
    assert given == {"n", "flag", "v"}


@pytest.mark.parametrize("signature", [MIXED, NUMERIC])
def test_rows_given_as_a_matrix_read_as_their_instances_would(signature: Signature) -> None:
    # Given a batch's rows as a float matrix over named features (NaN missing, one not finite, one
    # name no column has), in an order of its own
    names = ["other", *reversed([f.name for f in signature.features or []])]
    rows = np.array([[1.0, 2.0, np.nan, 3.0], [4.0, np.inf, 0.5, -1.0], [np.nan] * 4])[:, : len(names)]
    instances = [{n: None if v != v else v for n, v in zip(names, row, strict=True)} for row in rows.tolist()]
    checks = plain_checks(signature)

    # When they are read as a matrix and as the instances they stand for
    found = features_matrix(checks, names, rows)
    expected = lenient_matrix(checks, instances)

    # Then the lenient matrix, the mistyped counts, the extra keys and the given columns are the same
    np.testing.assert_array_equal(found[0], expected[0])
    assert [found[1].tolist(), *found[2:]] == [expected[1].tolist(), *expected[2:]]
    # and no rows read as no instances
    empty = features_matrix(checks, names, rows[:0])
    assert (empty[0].shape, empty[2:]) == (expected[0][:0].shape, ({}, set()))


def test_a_row_given_as_a_list_fills_the_columns_in_order_and_one_of_another_length_is_mistyped() -> None:
    matrix, mistyped, extra, given = lenient_matrix(
        plain_checks(MIXED), [{"n": 2}, [4, False, 0.5], [1, 2], {"n": 3}]
    )
    np.testing.assert_array_equal(
        matrix, [[2, np.nan, np.nan], [4, 0, 0.5], [np.nan] * 3, [3, np.nan, np.nan]]
    )
    assert mistyped.tolist() == [1, 1, 1]
    assert (extra, given) == ({}, {"n", "flag", "v"})


def test_rows_of_a_model_without_feature_names_are_read_whole_nested_or_flat() -> None:
    matrix, mistyped, extra, given = lenient_matrix(
        plain_checks(UNNAMED),
        [
            [1.0, 2],
            [[3.0], [4.0]],
            [1.0],
            [[1, 2], [3]],
            [[1, 2], [3, [4, 5]]],
            {"input[0]": 1.0, "input[1]": 2.0},
            5.0,
        ],
    )
    np.testing.assert_array_equal(matrix, [[1, 2], [3, 4], *[[np.nan, np.nan]] * 5])
    assert mistyped.tolist() == [5, 5]
    assert (extra, given) == ({}, {"input[0]", "input[1]"})


def test_a_string_column_takes_strings_only() -> None:
    matrix, mistyped, extra, given = lenient_matrix(
        plain_checks(STRING), [{"colour": "red"}, {"colour": 1}, {"colour": None}, {}]
    )
    assert matrix.dtype == object and matrix[:, 0].tolist() == ["red", None, None, None]
    assert mistyped.tolist() == [1]
    assert (extra, given) == ({}, {"colour"})


def test_without_a_baseline_only_the_signature_says_what_is_complete() -> None:
    found = quality_report(
        plain_checks(MIXED),
        None,
        None,
        [{"n": 1, "flag": True}, {"n": 2, "flag": False, "v": 1.0}, {"flag": True}],
    )
    assert found["completeness"] == {"n": 2 / 3, "flag": 1.0, "v": 1 / 3}
    assert found["violations"] == [
        {
            "feature_name": "n",
            "constraint_check_type": "completeness_check",
            "description": "completeness 0.6667 is below the baseline's 1",
        }
    ]
    assert found["drift"] == [] and found["anomalies"] is None
