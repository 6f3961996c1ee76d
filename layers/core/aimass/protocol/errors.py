"""The error kinds every aimass server answers with: an HTTP status, a stable code, a message and
field-level details. The Lambda API (aimass.errors adds its domain's kinds) and the inference
server (gpu_endpoints.errors adds the container's) both raise these, so one bad payload gets the
same status and code from either."""

from __future__ import annotations

from typing import Any

# At most this many field-level details in one error: enough to fix a request, small to send back.
MAX_DETAILS = 50


def field_error(loc: list[str | int], message: str, kind: str) -> dict[str, Any]:
    """One field-level detail: where (a JSON path as a list), what is wrong, and a machine-readable type."""
    return {"loc": loc, "message": message, "type": kind}


class AimassError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self, message: str, details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = (details or [])[:MAX_DETAILS]
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(AimassError):
    status = 400
    code = "bad_request"


class BadJson(BadRequest):
    code = "bad_json"


class NotFound(AimassError):
    status = 404
    code = "not_found"


class NotAcceptable(AimassError):
    status = 406
    code = "not_acceptable"


class Conflict(AimassError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AimassError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AimassError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(AimassError):
    """The payload does not fit the model's inputs (names, shapes, datatypes, values), or the model
    refused it at run time."""

    status = 422
    code = "validation_error"


def model_rejected(reason: str) -> ValidationFailed:
    """ONNX Runtime refused the input at run time: a check the graph makes (a fixed batch size, a
    node's shape rule) that its declared inputs do not say."""
    return ValidationFailed(
        "the model rejected the input", [field_error(["body"], reason[:300], "model_input_error")]
    )
