"""Baselines: the columns a model is checked by, reference datasets read into matrices, and the
statistics.json / constraints.json documents computed from them in Model Monitor's formats."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest

from aimass.contracts.registry import Feature, Signature, TensorSpec
from aimass.errors import ValidationFailed
from aimass.quality.baseline import BACKGROUND_ROWS, SKETCH_SIZE, compute, read_reference
from aimass.quality.columns import Column, columns_of

OUTPUTS = [TensorSpec(name="variable", dtype="float32", shape=[None, 1])]


def tabular_signature() -> Signature:
    return Signature(
        inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 3])],
        outputs=OUTPUTS,
        features=[
            Feature(name="age", dtype="int", min=0, max=120),
            Feature(name="income", dtype="float", nullable=True),
            Feature(name="grade", dtype="float", categories=[1, 2, 3]),
        ],
    )


def image_signature(shape: list[int | None]) -> Signature:
    return Signature(inputs=[TensorSpec(name="image", dtype="float32", shape=shape)], outputs=OUTPUTS)


COLUMNS = [Column("a", "numeric"), Column("b", "numeric", integral=True)]
STRINGS = [Column("colour", "string")]


# --- columns_of -----------------------------------------------------------------------------------


def test_a_tabular_model_is_checked_by_its_named_features() -> None:
    columns = columns_of(tabular_signature())
    assert columns == [
        Column("age", "numeric", integral=True, min=0, max=120),
        Column("income", "numeric", nullable=True),
        Column("grade", "numeric", categories=(1, 2, 3)),
    ]


def test_a_string_feature_is_a_string_column() -> None:
    signature = Signature(
        inputs=[TensorSpec(name="input", dtype="string", shape=[None, 1])],
        outputs=OUTPUTS,
        features=[Feature(name="colour", dtype="string", categories=["red", "blue"])],
    )
    assert columns_of(signature) == [Column("colour", "string", categories=("red", "blue"))]


def test_an_image_model_is_checked_cell_by_cell() -> None:
    columns = columns_of(image_signature([None, 2, 3]))
    assert columns is not None
    assert [c.name for c in columns] == [
        "image[0][0]",
        "image[0][1]",
        "image[0][2]",
        "image[1][0]",
        "image[1][1]",
        "image[1][2]",
    ]
    assert all(c.kind == "numeric" and not c.integral for c in columns)


def test_a_model_with_two_inputs_has_no_columns() -> None:
    signature = Signature(
        inputs=[
            TensorSpec(name="a", dtype="float32", shape=[None, 2]),
            TensorSpec(name="b", dtype="float32", shape=[None, 2]),
        ],
        outputs=OUTPUTS,
    )
    assert columns_of(signature) is None


def test_an_input_with_a_dynamic_cell_dimension_has_no_columns() -> None:
    assert columns_of(image_signature([None, 2, None])) is None


# --- read_reference -------------------------------------------------------------------------------


def test_a_csv_is_read_in_the_models_column_order_ignoring_other_columns() -> None:
    data = b"label,b,a\nyes,1,0.5\nno,2,1.5\n"
    matrix = read_reference(data, "reference.csv", COLUMNS)
    np.testing.assert_array_equal(matrix, [[0.5, 1.0], [1.5, 2.0]])


def test_empty_and_na_values_are_missing() -> None:
    data = b"a,b\n,NA\nnan,3\n4,null\n"
    matrix = read_reference(data, "reference.csv", COLUMNS)
    np.testing.assert_array_equal(np.isnan(matrix), [[True, True], [True, False], [False, True]])
    assert matrix[1, 1] == 3.0 and matrix[2, 0] == 4.0


def test_missing_string_values_are_none() -> None:
    matrix = read_reference(b'colour\nred\n""\nNA\nblue\n', "reference.csv", STRINGS)
    assert matrix[:, 0].tolist() == ["red", None, None, "blue"]


def test_a_gzipped_csv_is_read_by_its_name_or_its_magic_bytes() -> None:
    data = gzip.compress(b"a,b\n1,2\n")
    for name in ("reference.csv.gz", "upload"):
        np.testing.assert_array_equal(read_reference(data, name, COLUMNS), [[1.0, 2.0]])


def test_a_parquet_file_is_read() -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    buffer = io.BytesIO()
    table = pa.table({"b": [1, 2, None], "a": [0.5, None, 2.5], "label": ["x", "y", "z"]})
    pq.write_table(table, buffer)
    matrix = read_reference(buffer.getvalue(), "reference.parquet", COLUMNS)
    np.testing.assert_array_equal(matrix, [[0.5, 1.0], [np.nan, 2.0], [2.5, np.nan]])


def test_a_missing_column_is_a_422_naming_it() -> None:
    with pytest.raises(ValidationFailed) as error:
        read_reference(b"a,c\n1,2\n", "reference.csv", COLUMNS)
    assert [d["loc"] for d in error.value.details] == [["reference", "b"]]


def test_a_value_that_is_not_a_number_is_a_422_naming_its_row_and_column() -> None:
    with pytest.raises(ValidationFailed) as error:
        read_reference(b"a,b\n1,2\n3,x\n", "reference.csv", COLUMNS)
    # Row 1 is the header, so the second data row is row 3.
    assert [d["loc"] for d in error.value.details] == [["reference", 3, "b"]]
    assert "'x'" in error.value.details[0]["message"]


def test_a_header_without_rows_is_a_422() -> None:
    with pytest.raises(ValidationFailed) as error:
        read_reference(b"a,b\n", "reference.csv", COLUMNS)
    assert error.value.details[0]["loc"] == ["reference"]


def test_blank_lines_are_not_rows() -> None:
    matrix = read_reference(b"a,b\n1,2\n\n3,4\n\n", "reference.csv", COLUMNS)
    np.testing.assert_array_equal(matrix, [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValidationFailed, match="no rows"):
        read_reference(b"a,b\n\n", "reference.csv", COLUMNS)


# --- compute: statistics.json ---------------------------------------------------------------------


def reference_matrix(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = np.column_stack([rng.normal(5.0, 2.0, rows), rng.integers(0, 10, rows).astype(np.float64)])
    matrix[::7, 0] = np.nan
    return matrix


def numeric_statistics(statistics: dict, name: str) -> dict:
    return next(f for f in statistics["features"] if f["name"] == name)["numerical_statistics"]


def test_numeric_statistics_are_those_of_the_present_values() -> None:
    matrix = reference_matrix(200)
    baseline = compute(COLUMNS, matrix)
    stats = numeric_statistics(baseline.statistics, "a")
    present = matrix[~np.isnan(matrix[:, 0]), 0]
    assert stats["common"] == {"num_present": present.size, "num_missing": 200 - present.size}
    assert stats["mean"] == pytest.approx(np.mean(present))
    assert stats["sum"] == pytest.approx(np.sum(present))
    assert stats["std_dev"] == pytest.approx(np.std(present, ddof=0))
    assert (stats["min"], stats["max"]) == (present.min(), present.max())


def test_the_histogram_counts_every_present_value_once() -> None:
    stats = numeric_statistics(compute(COLUMNS, reference_matrix(200)).statistics, "a")
    buckets = stats["distribution"]["kll"]["buckets"]
    assert len(buckets) == 10
    assert sum(b["count"] for b in buckets) == stats["common"]["num_present"]
    assert buckets[0]["lower_bound"] == stats["min"] and buckets[-1]["upper_bound"] == stats["max"]


def test_a_small_references_sketch_is_its_sorted_values() -> None:
    matrix = reference_matrix(100)
    stats = numeric_statistics(compute(COLUMNS, matrix).statistics, "a")
    present = matrix[~np.isnan(matrix[:, 0]), 0]
    assert stats["distribution"]["kll"]["sketch"]["data"] == [sorted(present.tolist())]


def test_a_large_references_sketch_holds_its_quantiles() -> None:
    matrix = reference_matrix(10_000)
    stats = numeric_statistics(compute(COLUMNS, matrix).statistics, "a")
    (sketch,) = stats["distribution"]["kll"]["sketch"]["data"]
    assert len(sketch) == SKETCH_SIZE
    assert sketch == sorted(sketch)
    assert (sketch[0], sketch[-1]) == (stats["min"], stats["max"])


def test_string_statistics_count_categories() -> None:
    matrix = np.array([["red"], ["blue"], ["red"], [None]], dtype=object)
    feature = compute(STRINGS, matrix).statistics["features"][0]
    assert feature["inferred_type"] == "String"
    stats = feature["string_statistics"]
    assert stats["common"] == {"num_present": 3, "num_missing": 1}
    assert stats["distinct_count"] == 2
    assert stats["distribution"]["categorical"]["buckets"] == [
        {"value": "red", "count": 2.0},
        {"value": "blue", "count": 1.0},
    ]


def test_the_statistics_document_has_model_monitors_shape() -> None:
    baseline = compute(COLUMNS + STRINGS, np.array([[1.0, 2.0, "x"]], dtype=object))
    statistics = baseline.statistics
    assert set(statistics) == {"version", "dataset", "features"}
    assert statistics["version"] == 0.0 and statistics["dataset"] == {"item_count": 1}
    assert [set(f) for f in statistics["features"]] == [
        {"name", "inferred_type", "numerical_statistics"},
        {"name", "inferred_type", "numerical_statistics"},
        {"name", "inferred_type", "string_statistics"},
    ]
    assert [f["inferred_type"] for f in statistics["features"]] == ["Fractional", "Integral", "String"]
    numeric = statistics["features"][0]["numerical_statistics"]
    assert set(numeric) == {"common", "mean", "sum", "std_dev", "min", "max", "distribution"}
    assert set(numeric["distribution"]["kll"]) == {"buckets", "sketch"}
    assert set(numeric["distribution"]["kll"]["sketch"]) == {"parameters", "data"}


# --- compute: constraints.json --------------------------------------------------------------------


def feature_constraints(constraints: dict, name: str) -> dict:
    return next(f for f in constraints["features"] if f["name"] == name)


def test_constraints_hold_completeness_sign_and_range() -> None:
    matrix = np.array([[-1.0, 0.0], [np.nan, 3.0], [2.0, 5.0], [4.0, np.nan]])
    constraints = compute(COLUMNS, matrix).constraints
    a, b = feature_constraints(constraints, "a"), feature_constraints(constraints, "b")
    assert (a["completeness"], b["completeness"]) == (0.75, 0.75)
    assert a["num_constraints"] == {"is_non_negative": False}
    assert b["num_constraints"] == {"is_non_negative": True}
    assert a["aimass"] == {"min": -1.0, "max": 4.0}
    assert b["aimass"] == {"min": 0.0, "max": 5.0}


def test_a_string_columns_constraints_list_its_domain() -> None:
    matrix = np.array([["red"], ["blue"], ["red"], [None]], dtype=object)
    constraint = compute(STRINGS, matrix).constraints["features"][0]
    assert constraint["string_constraints"] == {"domains": ["blue", "red"]}
    assert constraint["completeness"] == 0.75


def test_the_constraints_document_has_model_monitors_shape() -> None:
    constraints = compute(COLUMNS + STRINGS, np.array([[1.0, 2.0, "x"]], dtype=object)).constraints
    assert set(constraints) == {"version", "features", "monitoring_config"}
    assert constraints["version"] == 0.0
    # Model Monitor's own keys, and the aimass extension under its own key.
    assert [set(f) for f in constraints["features"]] == [
        {"name", "inferred_type", "completeness", "num_constraints", "aimass"},
        {"name", "inferred_type", "completeness", "num_constraints", "aimass"},
        {"name", "inferred_type", "completeness", "string_constraints"},
    ]
    config = constraints["monitoring_config"]
    assert {
        "evaluate_constraints",
        "emit_metrics",
        "datatype_check_threshold",
        "domain_content_threshold",
        "distribution_constraints",
    } <= set(config)
    assert set(config) - {
        "evaluate_constraints",
        "emit_metrics",
        "datatype_check_threshold",
        "domain_content_threshold",
        "distribution_constraints",
    } == {"aimass"}
    assert set(config["distribution_constraints"]) == {
        "perform_comparison",
        "comparison_threshold",
        "comparison_method",
        "categorical_comparison_threshold",
        "categorical_drift_method",
    }


# --- compute: the anomaly model -------------------------------------------------------------------


def test_fewer_than_fifty_rows_give_no_anomaly_model() -> None:
    assert compute(COLUMNS, reference_matrix(49)).anomaly is None


def test_enough_rows_give_an_anomaly_model_over_the_numeric_columns() -> None:
    anomaly = compute(COLUMNS, reference_matrix(50)).anomaly
    assert anomaly is not None
    assert anomaly["columns"] == ["a", "b"] and anomaly["fit_rows"] == 50


def test_an_empty_matrix_is_a_422() -> None:
    with pytest.raises(ValidationFailed):
        compute(COLUMNS, np.empty((0, 2)))


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("reference.parquet", b"a,b\n1,2\n", "not a Parquet file"),
        ("reference.csv.gz", gzip.compress(b"a,b\n1,2\n3,4\n")[:-6], "not a whole gzip file"),
        ("reference.gz", b"a,b\n1,2\n", "not a whole gzip file"),
    ],
)
def test_a_file_that_is_not_what_its_name_says_is_a_422_naming_it_and_why(
    name: str, data: bytes, why: str
) -> None:
    with pytest.raises(ValidationFailed) as error:
        read_reference(data, name, COLUMNS)
    assert name in error.value.message and why in error.value.message
    assert error.value.details[0]["loc"] == ["reference"] and error.value.details[0]["type"] == "unreadable"


def test_the_background_is_a_seeded_sample_of_at_most_100_reference_rows_missing_as_null() -> None:
    # Given 250 numeric reference rows, one with a missing value
    columns = [Column("a", "numeric"), Column("b", "numeric")]
    matrix = np.column_stack([np.arange(250.0), np.arange(250.0) * 2])
    matrix[7, 1] = np.nan
    # When the baseline is computed
    kept = compute(columns, matrix).background
    # Then 100 distinct reference rows are kept, in a random order, the same each time
    assert kept is not None and kept["features"] == ["a", "b"] and kept["item_count"] == 250
    rows = kept["rows"]
    assert len(rows) == BACKGROUND_ROWS == 100 and len({r[0] for r in rows}) == 100
    assert all(r[1] is None if r[0] == 7 else r[1] == 2 * r[0] for r in rows)
    assert [r[0] for r in rows] != sorted(r[0] for r in rows)
    assert compute(columns, matrix).background == kept
    # And a reference of fewer rows is kept whole
    small = compute(columns, matrix[:30]).background
    assert small is not None and sorted(r[0] for r in small["rows"]) == list(range(30))


def test_a_reference_with_a_string_column_keeps_no_background() -> None:
    columns = [Column("a", "numeric"), Column("colour", "string")]
    matrix = np.array([[1.0, "red"], [2.0, "blue"]], dtype=object)
    assert compute(columns, matrix).background is None
