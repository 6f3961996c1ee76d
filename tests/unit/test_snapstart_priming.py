"""The synthetic request a SnapStart hook primes the online function's path with, and how it is kept
unrecorded (aimass.api.snapstart)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from aimass.api.snapstart import PrimingContext, priming_event, priming_instance, unrecorded
from aimass.contracts.registry import Feature, ModelVersion, Signature, TensorSpec
from aimass.local.lambda_runtime import LambdaContext


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


@pytest.fixture
def cold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Powertools as in a new environment: its next invocation is its first."""
    from aws_lambda_powertools.logging import logger as powertools_logging
    from aws_lambda_powertools.metrics.provider import cold_start
    from aws_lambda_powertools.tracing import tracer as powertools_tracing

    monkeypatch.setattr(cold_start, "is_cold_start", True)
    monkeypatch.setattr(powertools_logging, "is_cold_start", True)
    monkeypatch.setattr(powertools_tracing, "is_cold_start", True)


def emf_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def metric_names(lines: list[dict[str, Any]]) -> list[str]:
    return [m["Name"] for line in lines for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]]


def test_an_unrecorded_invocation_prints_nothing_and_leaves_the_next_one_cold(
    cold: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a handler under Powertools' logger and metrics decorators, as a function's
    logger, metrics = Logger(service="priming-test"), Metrics(namespace="aimass-test", service="priming-test")
    logger.append_keys(deployment="blue")

    @logger.inject_lambda_context
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        logger.set_correlation_id("request-1")
        metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=1)
        return {"statusCode": 200}

    # When it is invoked unrecorded, as priming invokes the function's
    with unrecorded(logger):
        assert handler({}, PrimingContext()) == {"statusCode": 200}

    # Then no EMF line was printed, the logger has its keys as before and nothing of the invocation's
    assert capsys.readouterr().out == ""
    keys = logger.get_current_keys()
    assert keys["deployment"] == "blue"
    assert not {"cold_start", "function_name", "function_request_id", "correlation_id"} & set(keys)
    assert metrics.provider.metric_set == {}

    # And the next invocation is still the environment's first: ColdStart once, cold_start true; then not
    handler({}, LambdaContext())
    first = emf_lines(capsys.readouterr().out)
    assert metric_names(first) == ["ColdStart", "Predictions"]
    assert logger.get_current_keys()["cold_start"] is True
    handler({}, LambdaContext())
    assert metric_names(emf_lines(capsys.readouterr().out)) == ["Predictions"]
    assert logger.get_current_keys()["cold_start"] is False
