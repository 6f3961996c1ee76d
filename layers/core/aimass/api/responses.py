"""JSON responses and errors as starlette responses, for the FastAPI app: the shapes and the error
each exception is answered with are aimass.api.answers', which the online function's direct path
(aimass.api.direct) sends without a framework."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from aimass.api.answers import error_body, is_v2, json_bytes, sdk_error, unexpected
from aimass.errors import MAX_DETAILS, AimassError


class JSON(Response):
    """Compact JSON; a model's NaN or infinity becomes null rather than invalid JSON."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    v2_route: bool = False,
) -> JSON:
    return JSON(error_body(code, message, details, v2_route), status_code=status, headers=headers)


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
    return _aimass_error(request, unexpected(error, request.method, request.url.path))


def _aws_error(request: Request, error: Exception) -> Response:
    return _aimass_error(request, sdk_error(error, request.method, request.url.path))


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
