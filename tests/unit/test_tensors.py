"""Requests to tensors and back: what a caller sees when an instance is right or wrong."""

from __future__ import annotations

import json
import math
from typing import get_args

import numpy as np
import pytest

from aimass.contracts.registry import Feature, Signature, TensorSpec, TensorType
from aimass.contracts.v2 import InferTensor
from aimass.errors import ValidationFailed
from aimass.protocol import v2
from aimass.protocol.tensors import ONNX_TYPES
from aimass.serving import codecs as tensors

TABULAR = Signature(
    inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 3])],
    outputs=[
        TensorSpec(name="label", dtype="int64", shape=[None]),
        TensorSpec(name="probabilities", dtype="float32", shape=[None, 2]),
    ],
    features=[Feature(name="age"), Feature(name="income", nullable=True), Feature(name="score")],
    task="classification",
    class_labels=["no", "yes"],
    label_output="label",
    probabilities_output="probabilities",
)
IMAGE = Signature(
    inputs=[TensorSpec(name="image", dtype="float32", shape=[None, 2, 2])],
    outputs=[TensorSpec(name="out", dtype="float32", shape=[None, 3])],
)
TWO_INPUTS = Signature(
    inputs=[
        TensorSpec(name="a", dtype="int64", shape=[None, 1]),
        TensorSpec(name="b", dtype="string", shape=[None, 1]),
    ],
    outputs=[TensorSpec(name="out", dtype="float32", shape=[None])],
)


def details(error: pytest.ExceptionInfo[ValidationFailed]) -> list[tuple[list[object], str]]:
    return [(d["loc"], d["type"]) for d in error.value.details]


def test_objects_keyed_by_feature_name_become_columns_in_signature_order() -> None:
    feeds = tensors.v1_feeds(TABULAR, [{"score": 3, "age": 1.5, "income": 2}])
    assert feeds["input"].dtype == np.float32
    assert feeds["input"].tolist() == [[1.5, 2.0, 3.0]]


def test_plain_lists_are_rows_in_feature_order() -> None:
    feeds = tensors.v1_feeds(TABULAR, [[1, 2, 3], [4, 5, 6]])
    assert feeds["input"].shape == (2, 3)


def test_a_missing_and_an_unknown_feature_are_named_in_the_details() -> None:
    with pytest.raises(ValidationFailed) as error:
        tensors.v1_feeds(TABULAR, [{"age": 1, "income": 2}, {"age": 1, "income": 2, "score": 3, "colour": 4}])
    assert details(error) == [
        (["instances", 0, "score"], "missing"),
        (["instances", 1, "colour"], "unknown_feature"),
    ]


def test_null_is_a_missing_value_unless_the_feature_is_nullable() -> None:
    feeds = tensors.v1_feeds(TABULAR, [{"age": 1, "income": None, "score": 3}])
    assert math.isnan(feeds["input"][0, 1])
    with pytest.raises(ValidationFailed) as error:
        tensors.v1_feeds(TABULAR, [{"age": None, "income": 1, "score": 3}])
    assert details(error) == [(["instances", 0, "age"], "missing")]


@pytest.mark.parametrize("value", ["1.5", True, [1], {"x": 1}, 1e300])
def test_a_value_that_is_not_a_fitting_number_is_a_type_error_at_its_position(value: object) -> None:
    with pytest.raises(ValidationFailed) as error:
        tensors.v1_feeds(TABULAR, [[1, 2, 3], [1, value, 3]])
    assert details(error)[0][0][:2] == ["instances", 1]
    assert details(error)[0][1] in ("type_error", "shape_mismatch")


def test_a_row_of_the_wrong_width_is_a_shape_error() -> None:
    with pytest.raises(ValidationFailed) as error:
        tensors.v1_feeds(TABULAR, [[1, 2]])
    assert details(error) == [(["instances", 0], "shape_mismatch")]


def test_an_instance_that_is_neither_object_nor_list_is_refused() -> None:
    with pytest.raises(ValidationFailed) as error:
        tensors.v1_feeds(TABULAR, ["age=1"])
    assert details(error) == [(["instances", 0], "type_error")]


def test_image_instances_must_have_the_image_shape() -> None:
    assert tensors.v1_feeds(IMAGE, [[[0, 1], [2, 3]]])["image"].shape == (1, 2, 2)
    with pytest.raises(ValidationFailed) as error:
        tensors.v1_feeds(IMAGE, [[[0, 1], [2, 3]], [0, 1, 2, 3]])
    assert details(error) == [(["instances", 1], "shape_mismatch")]
    with pytest.raises(ValidationFailed):
        tensors.v1_feeds(IMAGE, [[[0, 1], [2]]])


def test_multi_input_models_take_objects_keyed_by_input_name() -> None:
    feeds = tensors.v1_feeds(TWO_INPUTS, [{"a": [1], "b": ["x"]}])
    assert feeds["a"].dtype == np.int64 and feeds["b"].tolist() == [["x"]]
    with pytest.raises(ValidationFailed) as error:
        tensors.v1_feeds(TWO_INPUTS, [{"a": [1.5], "b": ["x"]}])
    assert details(error) == [(["instances", 0, "a", 0], "type_error")]


def test_v2_tensors_are_checked_for_name_datatype_shape_and_count() -> None:
    good = InferTensor(name="image", shape=[1, 2, 2], datatype="FP32", data=[0, 1, 2, 3])
    assert tensors.v2_feeds(IMAGE, [good])["image"].shape == (1, 2, 2)
    cases = {
        "datatype_mismatch": good.model_copy(update={"datatype": "INT64"}),
        "shape_mismatch": good.model_copy(update={"shape": [1, 4]}),
        "unknown_input": good.model_copy(update={"name": "img"}),
    }
    for kind, tensor in cases.items():
        with pytest.raises(ValidationFailed) as error:
            tensors.v2_feeds(IMAGE, [tensor])
        assert kind in [t for _, t in details(error)]
    with pytest.raises(ValidationFailed) as error:
        tensors.v2_feeds(IMAGE, [good.model_copy(update={"data": [0, 1, 2]})])
    assert details(error) == [(["inputs", 0, "data"], "shape_mismatch")]


def test_classifier_outputs_name_the_label_and_each_class_probability() -> None:
    outputs = {
        "label": np.array([1, 0]),
        "probabilities": np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32),
    }
    predictions = tensors.v1_predictions(TABULAR, outputs, 2)
    assert predictions[0]["label"] == "yes"
    assert predictions[1]["probabilities"] == pytest.approx({"no": 0.9, "yes": 0.1})


def test_classifier_without_labels_gives_raw_label_and_probability_list() -> None:
    unlabeled = TABULAR.model_copy(update={"class_labels": None})
    outputs = {"label": np.array([1]), "probabilities": np.array([[0.2, 0.8]], dtype=np.float32)}
    assert tensors.v1_predictions(unlabeled, outputs, 1) == [
        {"label": 1, "probabilities": pytest.approx([0.2, 0.8])}
    ]


def test_v2_outputs_are_flat_row_major_with_v2_datatypes() -> None:
    out = v2.output_tensors({"p": np.arange(6, dtype=np.float32).reshape(2, 3)}, None)
    assert out[0]["datatype"] == "FP32" and out[0]["shape"] == [2, 3] and out[0]["data"] == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValidationFailed):
        v2.output_tensors({"p": np.zeros(1)}, ["q"])


def test_v2_data_of_the_wrong_kind_names_its_position() -> None:
    tensor = InferTensor(name="image", shape=[1, 2, 2], datatype="FP32", data=[0, 1, "2", 3])
    with pytest.raises(ValidationFailed) as error:
        tensors.v2_feeds(IMAGE, [tensor])
    assert details(error) == [(["inputs", 0, "data", 2], "type_error")]


@pytest.mark.parametrize(
    ("dtype", "value"), [("int8", 300), ("uint8", -1), ("int64", 2**70), ("float32", 1e39)]
)
def test_values_outside_the_tensor_dtype_range_are_refused(dtype: str, value: object) -> None:
    signature = Signature(
        inputs=[TensorSpec(name="x", dtype=dtype, shape=[None, 1])],  # type: ignore[arg-type]
        outputs=[TensorSpec(name="y", dtype="float32", shape=[None])],
    )
    with pytest.raises(ValidationFailed) as error:
        tensors.v1_feeds(signature, [[value]])
    assert "range" in error.value.details[0]["message"]


def test_clean_integer_and_boolean_inputs_convert_exactly() -> None:
    signature = Signature(
        inputs=[
            TensorSpec(name="n", dtype="int64", shape=[None, 2]),
            TensorSpec(name="b", dtype="bool", shape=[None, 1]),
        ],
        outputs=[TensorSpec(name="y", dtype="float32", shape=[None])],
    )
    feeds = tensors.v1_feeds(signature, [{"n": [2**62, -5], "b": [True]}])
    assert feeds["n"].tolist() == [[2**62, -5]] and feeds["b"].dtype == np.bool_


def test_every_onnx_tensor_type_the_protocol_reads_is_a_signature_tensor_type() -> None:
    # signature.py reads a graph's types through the protocol's table: a type added there must be one
    # a signature can hold
    assert set(ONNX_TYPES.values()) == set(get_args(TensorType))


# skl2onnx's default export: `output_label` and `output_probability`, a list of {class index: probability}.
ZIPMAP = TABULAR.model_copy(
    update={
        "outputs": [
            TensorSpec(name="output_label", dtype="int64", shape=[None]),
            TensorSpec(name="output_probability", dtype="string", shape=[None]),
        ],
        "class_labels": ["setosa", "versicolor", "virginica"],
        "label_output": "output_label",
        "probabilities_output": "output_probability",
    }
)
ZIPMAP_OUTPUTS = {
    "output_label": np.array([2], dtype=np.int64),
    "output_probability": [{0: 0.0, 1: 0.25, 2: 0.75}],
}


def test_zipmap_probabilities_are_keyed_by_class_label() -> None:
    assert tensors.v1_predictions(ZIPMAP, ZIPMAP_OUTPUTS, 1) == [
        {"label": "virginica", "probabilities": {"setosa": 0.0, "versicolor": 0.25, "virginica": 0.75}}
    ]


def test_zipmap_probabilities_without_labels_keep_the_graphs_classes() -> None:
    unlabeled = ZIPMAP.model_copy(update={"class_labels": None})
    assert tensors.v1_predictions(unlabeled, ZIPMAP_OUTPUTS, 1)[0]["probabilities"] == {
        "0": 0.0,
        "1": 0.25,
        "2": 0.75,
    }


def test_zipmap_string_classes_stay_as_they_are() -> None:
    outputs = {"output_label": np.array(["b"]), "output_probability": [{"a": 0.5, "b": 0.5}]}
    assert tensors.v1_predictions(ZIPMAP, outputs, 1)[0]["probabilities"] == {"a": 0.5, "b": 0.5}


def test_zipmap_v2_output_is_bytes_of_json_keyed_by_class_label() -> None:
    out = {t["name"]: t for t in tensors.v2_outputs(ZIPMAP, ZIPMAP_OUTPUTS, None)}
    probabilities = out["output_probability"]
    assert (probabilities["datatype"], probabilities["shape"]) == ("BYTES", [1])
    assert json.loads(probabilities["data"][0]) == {"setosa": 0.0, "versicolor": 0.25, "virginica": 0.75}
    assert out["output_label"]["datatype"] == "INT64"


@pytest.mark.parametrize(
    ("array", "datatype"),
    [
        (np.zeros(2, np.float32), "FP32"),
        (np.zeros(2, np.float64), "FP64"),
        (np.zeros(2, np.float16), "FP16"),
        (np.zeros(2, np.int64), "INT64"),
        (np.zeros(2, np.uint8), "UINT8"),
        (np.zeros(2, bool), "BOOL"),
        (np.array(["a"], dtype=object), "BYTES"),
        (np.array(["a"]), "BYTES"),
        (np.zeros(2, ">f4"), "BYTES"),  # not the machine's byte order: no V2 datatype says so
    ],
)
def test_an_output_array_is_named_by_its_v2_datatype(array: np.ndarray, datatype: str) -> None:
    from aimass.protocol.tensors import datatype_of

    assert datatype_of(array) == datatype
