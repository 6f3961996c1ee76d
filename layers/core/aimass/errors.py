"""The error kinds the API reports, each with its HTTP status and a stable code."""

from __future__ import annotations

from typing import Any


class AimassError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self, message: str, details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(AimassError):
    status = 400
    code = "bad_request"


class BadJson(BadRequest):
    code = "bad_json"


class Unauthorized(AimassError):
    status = 401
    code = "unauthorized"


class NotFound(AimassError):
    status = 404
    code = "not_found"


class Conflict(AimassError):
    status = 409
    code = "conflict"


class IntegrityError(Conflict):
    """A model artifact whose bytes do not match the sha256 recorded at upload."""

    code = "artifact_integrity"


class PayloadTooLarge(AimassError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AimassError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(AimassError):
    status = 422
    code = "validation_error"


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


# At most this many field-level details in one error: enough to fix a request, small to send back.
MAX_DETAILS = 50


def field_error(loc: list[str | int], message: str, kind: str) -> dict[str, Any]:
    """One field-level detail: where (a JSON path as a list), what is wrong, and a machine-readable type."""
    return {"loc": loc, "message": message, "type": kind}


class RuleRejected(ValidationFailed):
    """A `reject` rule of the model's ruleset matched."""

    code = "rule_rejected"
