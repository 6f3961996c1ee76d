"""What the API answers, before any web framework: compact JSON bytes, errors in the one shape the API
promises (`{"error": {code, message, details}}`; on the V2 routes the Open Inference Protocol's own
`{"error": "<message>"}`, the details folded into the message: its clients read `error` as a string),
and the error an exception is answered with. aimass.api.responses makes starlette responses of them
for the app; the online function's direct path (aimass.api.direct) sends them as they are, so both
answer every request alike."""

from __future__ import annotations

import logging
from typing import Any

import pydantic_core

from aimass.errors import AimassError
from aimass.protocol import v2

log = logging.getLogger(__name__)

INTERNAL_ERROR = "an internal error occurred; it has been logged"


def json_bytes(content: Any) -> bytes:
    """Compact UTF-8 JSON, NaN and infinity as null: pydantic's serializer (Rust), 4x faster than the
    standard library's on a one-instance answer and 3.6x on 100 (bench/RESULTS.md, issue 19)."""
    return pydantic_core.to_json(content, inf_nan_mode="null")


def is_v2(path: str) -> bool:
    """A route of the Open Inference Protocol, whose errors are in its own shape."""
    return path == "/v2" or path.startswith("/v2/")


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None, v2_route: bool = False
) -> dict[str, Any]:
    if v2_route:
        return v2.error_body(message, details)
    return {"error": {"code": code, "message": message, "details": details or []}}


def unexpected(error: BaseException, method: str, path: str) -> AimassError:
    """The 500 for an error no code expected: logged with its traceback, which is never sent."""
    log.error("unhandled error on %s %s", method, path, exc_info=error)
    return AimassError(INTERNAL_ERROR)


def sdk_error(error: BaseException, method: str, path: str) -> AimassError:
    """An SDK error no domain code turned into one of the API's: 503 when AWS cannot be used now
    (aimass.gateways.transient), else an internal error."""
    from aimass.gateways.transient import unavailable

    down = unavailable(error)
    if down is None:
        return unexpected(error, method, path)
    log.warning("%s %s: %s", method, path, error)
    return down


def api_error(error: Exception, method: str, path: str) -> AimassError:
    """The error the app answers `error` with, raised by a route: what its error handlers
    (aimass.api.responses.install_error_handlers) and AnswerUnexpected answer for it."""
    if isinstance(error, AimassError):
        return error
    # Imported here: only an error pays for it, and the SDK is loaded by then anyway.
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(error, BotoCoreError | ClientError):
        return sdk_error(error, method, path)
    return unexpected(error, method, path)
