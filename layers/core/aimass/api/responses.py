"""JSON responses and errors in the one shape the API promises: {"error": {code, message, details}};
on the V2 routes (/v2...), the Open Inference Protocol's own `{"error": "<message>"}`, the details
folded into the message (its clients read `error` as a string)."""

from __future__ import annotations

import logging
from typing import Any

import pydantic_core
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from aimass.errors import MAX_DETAILS, AimassError
from aimass.protocol import v2

log = logging.getLogger(__name__)


class JSON(Response):
    """Compact JSON; a model's NaN or infinity becomes null rather than invalid JSON."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def json_bytes(content: Any) -> bytes:
    """Compact UTF-8 JSON, NaN and infinity as null: pydantic's serializer (Rust), 4x faster than the
    standard library's on a one-instance answer and 3.6x on 100 (bench/RESULTS.md, issue 19)."""
    return pydantic_core.to_json(content, inf_nan_mode="null")


def is_v2(path: str) -> bool:
    """A route of the Open Inference Protocol, whose errors are in its own shape."""
    return path == "/v2" or path.startswith("/v2/")


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    v2_route: bool = False,
) -> JSON:
    body: dict[str, Any] = (
        v2.error_body(message, details)
        if v2_route
        else {"error": {"code": code, "message": message, "details": details or []}}
    )
    return JSON(body, status_code=status, headers=headers)


def _aimass_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, AimassError)
    return error_response(
        error.status, error.code, error.message, error.details, error.headers, is_v2(request.url.path)
    )


def _validation_error(request: Request, error: Exception) -> Response:
    """Path parameters and multipart forms (JSON bodies are parsed by aimass.api.bodies)."""
    assert isinstance(error, RequestValidationError)
    details = [
        {"loc": list(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in list(error.errors())[:MAX_DETAILS]
    ]
    return error_response(
        422,
        "validation_error",
        "the request does not match the schema",
        details,
        v2_route=is_v2(request.url.path),
    )


def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return error_response(
        error.status_code,
        code,
        str(error.detail),
        headers=dict(error.headers or {}),
        v2_route=is_v2(request.url.path),
    )


def _unexpected(request: Request, error: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return error_response(
        500,
        "internal_error",
        "an internal error occurred; it has been logged",
        v2_route=is_v2(request.url.path),
    )


def _aws_error(request: Request, error: Exception) -> Response:
    """An SDK error no domain code turned into one of the API's: 503 when AWS cannot be used now
    (aimass.gateways.transient), else an internal error."""
    from aimass.gateways.transient import unavailable

    down = unavailable(error)
    if down is None:
        return _unexpected(request, error)
    log.warning("%s %s: %s", request.method, request.url.path, error)
    return _aimass_error(request, down)


def answer_unexpected(scope: Scope, error: Exception) -> Response:
    """The 500 JSON for an exception no handler took (aimass.protocol.asgi.AnswerUnexpected)."""
    return _unexpected(Request(scope), error)


def install_error_handlers(app: FastAPI) -> None:
    """The handlers of the errors the API expects; add AnswerUnexpected (answer_unexpected) last,
    outermost."""
    from botocore.exceptions import BotoCoreError, ClientError

    app.add_exception_handler(AimassError, _aimass_error)
    app.add_exception_handler(BotoCoreError, _aws_error)
    app.add_exception_handler(ClientError, _aws_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
