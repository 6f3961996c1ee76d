"""The synthetic request a SnapStart hook primes the online function's path with (aimass.api.snapstart)."""

from __future__ import annotations

from typing import Any

from aimass.api.snapstart import priming_event, priming_instance
from aimass.contracts.registry import Feature, ModelVersion, Signature, TensorSpec


def version(signature: Signature) -> ModelVersion:
    return ModelVersion(
        name="m",
        version=1,
        artifact_uri="s3://b/m/1/model.onnx",
        sha256="0" * 64,
        size_bytes=1,
        signature=signature,
    )


def tabular(*features: Feature, dtype: Any = "float32") -> ModelVersion:
    inputs = [TensorSpec(name="x", dtype=dtype, shape=[None, len(features)])]
    return version(Signature(inputs=inputs, outputs=[], features=list(features)))


def test_each_feature_takes_a_value_its_checks_accept() -> None:
    instance = priming_instance(
        tabular(
            Feature(name="radius", min=6.0, max=28.0),
            Feature(name="age", dtype="int", min=18),
            Feature(name="score", max=-2.0),
            Feature(name="free"),
            Feature(name="colour", dtype="string", categories=["red", "blue"]),
            Feature(name="member", dtype="bool"),
        )
    )

    assert instance == {
        "radius": 17.0,
        "age": 18,
        "score": -2.0,
        "free": 0.0,
        "colour": "red",
        "member": False,
    }
    assert isinstance(instance["age"], int)


def test_a_text_feature_without_categories_has_no_stand_in() -> None:
    assert priming_instance(tabular(Feature(name="note", dtype="string"), dtype="string")) is None


def test_an_input_without_features_takes_zeros_of_its_instance_shape() -> None:
    row = version(Signature(inputs=[TensorSpec(name="x", dtype="float32", shape=[None, 3])], outputs=[]))
    image = version(Signature(inputs=[TensorSpec(name="x", dtype="int64", shape=[None, 2, 2])], outputs=[]))

    assert priming_instance(row) == [0.0, 0.0, 0.0]
    assert priming_instance(image) == [[0, 0], [0, 0]]


def test_several_inputs_or_dynamic_dimensions_have_no_stand_in() -> None:
    spec = TensorSpec(name="x", dtype="float32", shape=[None, 3])
    dynamic = TensorSpec(name="x", dtype="float32", shape=[None, None])

    assert (
        priming_instance(version(Signature(inputs=[spec, spec.model_copy(update={"name": "y"})], outputs=[])))
        is None
    )
    assert priming_instance(version(Signature(inputs=[dynamic], outputs=[]))) is None


def test_the_priming_event_is_an_http_api_request_with_its_body() -> None:
    event = priming_event("POST", "/v1/models/m:predict", {"instances": [[1.0]]})

    assert (event["version"], event["rawPath"], event["requestContext"]["http"]["method"]) == (
        "2.0",
        "/v1/models/m:predict",
        "POST",
    )
    assert event["body"] == '{"instances": [[1.0]]}'
    assert event["headers"]["content-length"] == str(len(event["body"]))
