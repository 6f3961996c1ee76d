"""The push-time probe: a classifier run once on a synthetic row tells which classes its probabilities
output really gives (a ZipMap's keys, a dynamic-width tensor's columns). They are recorded in the
signature and checked against the class labels; a probe that cannot run changes nothing."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from aimass.contracts.registry import Signature, SignatureEnrichment, TensorSpec
from aimass.errors import ValidationFailed
from aimass.serving.backends.onnx import inspect
from aimass.signature import probe, probe_feeds, read

WIDTH = 3


def classifier(
    classes: list[str] | list[int] | None = None, width: int | None = WIDTH, reshape: list[int] | None = None
) -> bytes:
    """A real ONNX classifier on x [N, width]: `output_label` (ArgMax) and `output_probability`, a
    ZipMap over `classes` (None: `probabilities`, the softmax tensor itself). `reshape` first reshapes
    x to that shape, which fails at run time on a row it does not fit."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, width])
    nodes = []
    source = "X"
    initializers = []
    if reshape is not None:
        initializers.append(helper.make_tensor("shape", TensorProto.INT64, [len(reshape)], reshape))
        nodes.append(helper.make_node("Reshape", ["X", "shape"], ["reshaped"]))
        source = "reshaped"
    nodes.append(helper.make_node("Softmax", [source], ["softmax"], axis=1))
    label, probabilities = ("output_label", "output_probability") if classes else ("label", "probabilities")
    nodes.append(helper.make_node("ArgMax", ["softmax"], [label], axis=1, keepdims=0))
    if classes:
        texts = isinstance(classes[0], str)
        attribute = "classlabels_strings" if texts else "classlabels_int64s"
        nodes.append(
            helper.make_node(
                "ZipMap", ["softmax"], [probabilities], domain="ai.onnx.ml", **{attribute: classes}
            )
        )
        key = TensorProto.STRING if texts else TensorProto.INT64
        map_type = helper.make_map_type_proto(key, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
        output = helper.make_value_info(probabilities, helper.make_sequence_type_proto(map_type))
    else:
        nodes.append(helper.make_node("Identity", ["softmax"], [probabilities]))
        output = helper.make_tensor_value_info(probabilities, TensorProto.FLOAT, [None, width])
    graph = helper.make_graph(
        nodes,
        "classifier",
        [x],
        [helper.make_tensor_value_info(label, TensorProto.INT64, [None]), output],
        initializers,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    return bytes(helper.make_model(graph, opset_imports=opsets).SerializeToString())


IRIS = ["setosa", "versicolor", "virginica"]


def refused(model: bytes, enrichment: SignatureEnrichment) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as error:
        read(inspect(model), enrichment)
    return error.value


# --- What the probe reads --------------------------------------------------------------------------


def test_a_zipmap_of_string_classes_gives_its_keys_as_the_answers_carry_them() -> None:
    # ONNX Runtime's map is ordered by key, whatever the order of the graph's class list
    signature = read(inspect(classifier(["virginica", "setosa", "versicolor"])))
    assert signature.output_classes == ["setosa", "versicolor", "virginica"]
    assert signature.class_labels is None


def test_a_zipmap_of_integer_classes_is_recorded_as_the_answers_key_them() -> None:
    # skl2onnx keeps integer targets as they are: 1, 2, 3 here, not 0..n-1
    probed = probe(inspect(classifier([1, 2, 3])), read(inspect(classifier([1, 2, 3]))))
    assert probed is not None and probed.zipmap and probed.classes == (1, 2, 3)
    assert read(inspect(classifier([1, 2, 3]))).output_classes == ["1", "2", "3"]


def test_a_probability_tensor_of_dynamic_width_is_probed_with_the_features_width() -> None:
    model = classifier(width=None)
    # Without features the row's width is unknown: nothing is probed, as before
    assert read(inspect(model)).output_classes is None
    features: list[Any] = ["a", "b", "c", "d"]
    assert read(inspect(model), SignatureEnrichment(features=features)).output_classes == ["0", "1", "2", "3"]


def test_a_probability_tensor_of_static_width_is_recorded_too() -> None:
    assert read(inspect(classifier())).output_classes == ["0", "1", "2"]


def test_a_model_that_fails_on_the_probe_row_is_still_registered_and_the_failure_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Reshaping one row of 3 values into [2, -1] fails at run time
    model = classifier(IRIS, reshape=[2, -1])
    with caplog.at_level(logging.WARNING, logger="aimass.signature"):
        signature = read(inspect(model), SignatureEnrichment(class_labels=["a", "b"]))
    assert signature.output_classes is None and signature.class_labels == ["a", "b"]
    assert "not probed: the model failed on a synthetic row" in caplog.text


def test_a_regressor_is_not_probed() -> None:
    class Untouchable:
        def run(self, *args: Any) -> Any:
            raise AssertionError("a model without a probabilities output is not run")

    regressor = Signature(
        inputs=[TensorSpec(name="x", dtype="float32", shape=[None, 2])],
        outputs=[TensorSpec(name="y", dtype="float32", shape=[None, 1])],
        task="regression",
    )
    assert probe(Untouchable(), regressor) is None


def test_the_probe_row_has_zeros_empty_strings_and_the_fixed_dimensions() -> None:
    signature = Signature(
        inputs=[
            TensorSpec(name="numbers", dtype="int64", shape=[None, 2]),
            TensorSpec(name="words", dtype="string", shape=[None, 1]),
            TensorSpec(name="flags", dtype="bool", shape=[4, 3]),
            TensorSpec(name="image", dtype="float32", shape=[None, 2, 2]),
        ],
        outputs=[],
    )
    feeds = probe_feeds(signature)
    assert feeds is not None
    assert {name: (a.dtype, a.shape) for name, a in feeds.items()} == {
        "numbers": (np.dtype(np.int64), (1, 2)),
        "words": (np.dtype(object), (1, 1)),
        "flags": (np.dtype(np.bool_), (4, 3)),
        "image": (np.dtype(np.float32), (1, 2, 2)),
    }
    assert feeds["words"].tolist() == [[""]] and not feeds["numbers"].any() and not feeds["flags"].any()
    dynamic = signature.model_copy(
        update={"inputs": [TensorSpec(name="x", dtype="float32", shape=[None, None, 8])]}
    )
    assert probe_feeds(dynamic) is None
    # Several inputs: the features width says nothing of them
    several = signature.model_copy(
        update={"inputs": [*signature.inputs[:1], TensorSpec(name="x", dtype="float32", shape=[None, None])]}
    )
    assert probe_feeds(several, features_width=3) is None
    # A fixed batch of large images is more than a push allocates for a probe
    large = signature.model_copy(
        update={"inputs": [TensorSpec(name="x", dtype="float32", shape=[64, 3, 224, 224])]}
    )
    assert probe_feeds(large) is None


# --- What is checked at push ----------------------------------------------------------------------


def test_class_labels_of_the_wrong_count_for_a_zipmap_are_a_length_mismatch() -> None:
    error = refused(classifier([0, 1, 2]), SignatureEnrichment(class_labels=["a", "b"]))
    [detail] = error.details
    assert detail["type"] == "length_mismatch" and detail["loc"] == ["metadata", "class_labels"]
    assert "2 class labels for 3 classes the model outputs (0, 1, 2)" in str(error)
    labelled = read(inspect(classifier([0, 1, 2])), SignatureEnrichment(class_labels=IRIS))
    assert labelled.class_labels == IRIS and labelled.output_classes == ["0", "1", "2"]


def test_class_labels_of_the_wrong_count_for_a_dynamic_width_are_a_length_mismatch() -> None:
    features: list[Any] = ["a", "b", "c", "d"]
    error = refused(classifier(width=None), SignatureEnrichment(features=features, class_labels=IRIS))
    assert error.details[0]["type"] == "length_mismatch"
    assert "3 class labels for 4 probability columns the model outputs" in str(error)


def test_a_version_registered_before_probing_still_loads() -> None:
    stored = read(inspect(classifier(IRIS))).model_dump()
    del stored["output_classes"]
    assert Signature.model_validate(stored).output_classes is None
