"""The container's own error kinds. Every error is answered as JSON `{"error": {"code", "message",
"details"}}` with its status; a payload's errors are the protocol's (aimass.protocol.errors, shipped
in the container beside this server), so a bad request gets the same status and code here as from
the Lambda API."""

from __future__ import annotations

from typing import Any

from aimass.protocol.errors import AimassError, NotFound


class ModelNotFound(NotFound):
    code = "model_not_found"


class Unavailable(AimassError):
    """Not ready, or too busy: the client should retry after `Retry-After` seconds."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int = 1, details: list[dict[str, Any]] | None = None):
        super().__init__(message, details, {"Retry-After": str(retry_after_s)})


class QueueFull(Unavailable):
    code = "queue_full"


class InsufficientMemory(AimassError):
    """The model does not fit in the memory budget (SageMaker's multi-model contract asks for 507)."""

    status = 507
    code = "insufficient_memory"


class ModelFailed(AimassError):
    """The model failed for a reason that is not the request's (e.g. the device ran out of memory)."""

    code = "model_error"
