"""The errors the server answers with: JSON `{"error": {"code", "message", "details"}}` and a status."""

from __future__ import annotations

from typing import Any

# At most this many field-level details in one error: enough to fix a request, small to send back.
MAX_DETAILS = 50


def field_error(loc: list[str | int], message: str, kind: str) -> dict[str, Any]:
    """One field-level detail: where (a JSON path as a list), what is wrong, a machine-readable type."""
    return {"loc": loc, "message": message, "type": kind}


class ServerError(Exception):
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


class BadRequest(ServerError):
    status = 400
    code = "bad_request"


class BadJson(BadRequest):
    code = "bad_json"


class InvalidInput(BadRequest):
    """The payload does not fit the model's inputs (names, shapes, datatypes, values)."""

    code = "invalid_input"


class ModelRejectedInput(BadRequest):
    """ONNX Runtime refused the input at run time (a check the graph makes that its metadata does not say)."""

    code = "model_rejected_input"


class NotFound(ServerError):
    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class NotAcceptable(ServerError):
    status = 406
    code = "not_acceptable"


class Conflict(ServerError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ServerError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServerError):
    status = 415
    code = "unsupported_media_type"


class Unavailable(ServerError):
    """Not ready, or too busy: the client should retry after `Retry-After` seconds."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int = 1, details: list[dict[str, Any]] | None = None):
        super().__init__(message, details, {"Retry-After": str(retry_after_s)})


class QueueFull(Unavailable):
    code = "queue_full"


class InsufficientMemory(ServerError):
    """The model does not fit in the memory budget (SageMaker's multi-model contract asks for 507)."""

    status = 507
    code = "insufficient_memory"


class ModelFailed(ServerError):
    """The model failed for a reason that is not the request's (e.g. the device ran out of memory)."""

    code = "model_error"
