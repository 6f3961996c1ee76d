"""Where a version runs: the backend grammar, the choice made at registration, and how an
endpoint's failures become the API's errors."""

from __future__ import annotations

import pytest

from aimass.contracts.registry import Backend, ModelVersion
from aimass.errors import BackendError, BackendThrottled, BackendUnavailable, ValidationFailed
from aimass.protocol.arrays import from_npz, to_npz
from aimass.registration import choose_backend
from aimass.serving.backends.sagemaker import answered_by, classify

MB = 2**20


def test_a_backend_names_the_lambda_or_an_endpoint_and_its_target_model() -> None:
    assert Backend.parse("lambda") == Backend(kind="lambda")
    assert Backend.parse("sagemaker:prod-gpu") == Backend(kind="sagemaker", endpoint="prod-gpu")
    assert Backend.parse("sagemaker:mme/digits.tar.gz") == Backend(
        kind="sagemaker", endpoint="mme", target_model="digits.tar.gz"
    )


def stored(backend: str) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "name": "m",
            "version": 1,
            "artifact_uri": "s3://b/k",
            "sha256": "0" * 64,
            "size_bytes": 1,
            "signature": {"inputs": [], "outputs": []},
            "backend": backend,
        }
    )


def test_versions_recorded_before_gpu_endpoints_run_on_the_lambda() -> None:
    assert stored("onnxruntime").backend == "lambda"
    assert stored("sagemaker:ep").runs_on.endpoint == "ep"
    for malformed in ("sagemaker:", "sagemaker:-ep", "gpu", "sagemaker:ep/"):
        with pytest.raises(ValueError):
            stored(malformed)


@pytest.mark.parametrize(
    ("requested", "size", "endpoint", "chosen"),
    [
        (None, 10 * MB, None, "lambda"),
        (None, 10 * MB, "gpu", "lambda"),
        (None, 300 * MB, "gpu", "sagemaker:gpu"),
        ("sagemaker:other", 10 * MB, "gpu", "sagemaker:other"),
        ("sagemaker:other", 300 * MB, None, "sagemaker:other"),
        ("lambda", 10 * MB, "gpu", "lambda"),
    ],
)
def test_a_new_version_runs_where_asked_else_where_it_fits(
    requested: str | None, size: int, endpoint: str | None, chosen: str
) -> None:
    assert choose_backend(requested, size, 256 * MB, endpoint) == chosen


@pytest.mark.parametrize(
    ("requested", "endpoint", "loc", "kind"),
    [
        (None, None, ["body", "model"], "too_large"),
        (None, "", ["body", "model"], "too_large"),
        ("lambda", "gpu", ["body", "backend"], "too_large"),
        ("sagemaker:bad_name", "gpu", ["body", "backend"], "pattern"),
    ],
)
def test_a_model_too_large_for_the_lambda_with_nowhere_to_run_is_refused_where_it_is_wrong(
    requested: str | None, endpoint: str | None, loc: list[str], kind: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        choose_backend(requested, 300 * MB, 256 * MB, endpoint)
    assert refused.value.details[0]["loc"] == loc
    assert refused.value.details[0]["type"] == kind


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", None, BackendThrottled),
        ("ModelNotReadyException", None, BackendThrottled),
        ("ModelError", 503, BackendThrottled),
        ("ModelError", 429, BackendThrottled),
        ("ServiceUnavailable", None, BackendUnavailable),
        ("InternalFailure", None, BackendUnavailable),
        ("InternalDependencyException", None, BackendUnavailable),
        ("ModelError", 507, BackendUnavailable),
        ("ModelError", 400, BackendError),
        ("ModelError", 500, BackendError),
        ("AccessDeniedException", None, BackendError),
    ],
)
def test_an_endpoints_failure_becomes_the_apis_error(code: str, status: int | None, kind: type) -> None:
    error = classify("ep", code, "why", status, retry_after_s=3)
    assert type(error) is kind
    assert ("Retry-After" in error.headers) == (kind is not BackendError)
    assert error.status in (429, 503, 502)
    assert "ep" in error.message and "why" in error.message


def test_a_missing_endpoint_is_unavailable_but_other_validation_errors_are_not() -> None:
    missing = classify("ep", "ValidationError", "Endpoint ep of account 1 not found.", None, 2)
    other = classify("ep", "ValidationError", "Inference Component Name header is required.", None, 2)
    assert isinstance(missing, BackendUnavailable)
    assert type(other) is BackendError


def test_feeds_cross_to_the_endpoint_with_their_dtypes_and_shapes() -> None:
    import numpy as np

    feeds = {
        "image": np.arange(12, dtype=np.float32).reshape(3, 2, 2),
        "ids": np.array([1, 2], dtype=np.int64),
    }
    back = from_npz(to_npz(feeds))
    for name, value in feeds.items():
        assert back[name].dtype == value.dtype
        np.testing.assert_array_equal(back[name], value)


def test_the_model_file_that_answered_is_read_from_the_custom_attributes() -> None:
    assert answered_by("trace=1; model-sha256=abc") == "abc"
    assert answered_by("model-sha256=abc") == "abc"
    assert answered_by("trace=1") is None
    assert answered_by(None) is None
