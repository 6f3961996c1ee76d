"""The error kinds the API reports, each with its HTTP status and a stable code: the protocol's
(aimass.protocol.errors, shared with the inference server) and the service's own."""

from __future__ import annotations

from aimass.protocol.errors import (
    MAX_DETAILS,
    AimassError,
    BadJson,
    BadRequest,
    Conflict,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    field_error,
)

__all__ = [
    "MAX_DETAILS",
    "AimassError",
    "AwsUnavailable",
    "BackendError",
    "BackendThrottled",
    "BackendUnavailable",
    "BadJson",
    "BadRequest",
    "Conflict",
    "IntegrityError",
    "NotAcceptable",
    "NotFound",
    "PayloadTooLarge",
    "RuleRejected",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "field_error",
]


class Unauthorized(AimassError):
    status = 401
    code = "unauthorized"


class IntegrityError(Conflict):
    """A model artifact whose bytes do not match the sha256 recorded at upload."""

    code = "artifact_integrity"


class BackendError(AimassError):
    """The backend that serves a version (a SageMaker endpoint) could not answer."""

    status = 502
    code = "backend_error"


class BackendThrottled(BackendError):
    status = 429
    code = "backend_throttled"


class BackendUnavailable(BackendError):
    status = 503
    code = "backend_unavailable"


class AwsUnavailable(AimassError):
    """AWS (the registry's table, the artifacts' bucket) cannot be reached or cannot answer now:
    a connection refused or timed out, a 5xx, throttling. It passes when AWS comes back."""

    status = 503
    code = "aws_unavailable"


class RuleRejected(ValidationFailed):
    """A `reject` rule of the model's ruleset matched."""

    code = "rule_rejected"
