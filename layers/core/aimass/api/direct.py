"""The online function's prediction routes answered straight from API Gateway's event, without Mangum
and FastAPI.

Through Mangum and FastAPI a one-instance prediction spent about 210 µs of the handler's 400 in event
translation, the event loop, middleware and routing (bench/RESULTS.md, issue 19); the work itself is a
few plain calls. So the online function answers the prediction routes here:

    POST /v1/models/{name}:predict                       POST /v2/models/{name}/infer
    POST /v1/models/{name}/versions/{version}:predict    POST /v2/models/{name}/versions/{version}/infer
    POST /v1/models/{name}/labels/{alias}:predict

(JSON, and V2's binary tensor extension), from an HTTP API event (payload format 2.0), with the same
rules (aimass.api.access), body reading (aimass.api.bodies), domain calls (aimass.api.predictions) and
answers (aimass.api.answers) as the app's routes: the same status, headers and body bytes, byte for byte
(tests/integration/test_direct_path.py runs every case through both). FastAPI stays the API's
definition: its app serves every other route, the OpenAPI document and the local server. An event this
module does not fully recognise (another payload format, a percent-encoded path, an unusual host or
body) is left to the app: `answer` returns None and the caller hands the event to Mangum.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aimass.api import predictions
from aimass.api.access import CHALLENGE, Access
from aimass.api.answers import api_error, error_body, is_v2, json_bytes
from aimass.api.bodies import decoded, labelled_json
from aimass.protocol import binary, v1, v2
from aimass.serving import traffic

LambdaResponse = dict[str, Any]
JSON = "application/json"
# The content types whose body Mangum sends as text, the rest base64 (mangum.adapter's default list,
# which the parity test compares with this one).
TEXT_TYPES = (
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/vnd.api+json",
    "application/vnd.oai.openapi",
)
# A segment as starlette matches a `{name}` (anything but `/`), less what would make the app read the
# path differently from the event: `%` (Mangum unquotes the path), `?` and `#` (the URL it rebuilds).
_SEGMENT = r"[^/?#%]+"
# Each route with what its view does with the path: (kind, pattern), in the app's order of routes.
ROUTES = tuple(
    (kind, re.compile(pattern.replace("SEGMENT", _SEGMENT)))
    for kind, pattern in (
        ("v1", r"/v1/models/(?P<name>SEGMENT):predict"),
        ("v1", r"/v1/models/(?P<name>SEGMENT)/versions/(?P<version>SEGMENT):predict"),
        ("v1", r"/v1/models/(?P<name>SEGMENT)/labels/(?P<alias>SEGMENT):predict"),
        ("v2", r"/v2/models/(?P<name>SEGMENT)/infer"),
        ("v2", r"/v2/models/(?P<name>SEGMENT)/versions/(?P<version>SEGMENT)/infer"),
    )
)
# A host the app's URL (request.url) reads as Mangum's (server, port) would: a name, an optional port.
_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?")


@dataclass(frozen=True, slots=True)
class Call:
    """A prediction request read from the event as Mangum and starlette would read it."""

    kind: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # names lower-cased, values as the event has them
    body: bytes
    query: str  # rawQueryString

    def query_value(self, name: str) -> str | None:
        """A query parameter as starlette reads it (the last of its values), from the query string
        as Mangum passes it (UTF-8 bytes, which starlette reads as latin-1)."""
        values = [
            v
            for k, v in parse_qsl(self.query.encode().decode("latin-1"), keep_blank_values=True)
            if k == name
        ]
        return values[-1] if values else None

    def header(self, name: str) -> str | None:
        """A header as starlette reads it: the event's text sent as UTF-8 bytes, read back as latin-1."""
        value = self.headers.get(name)
        return None if value is None else value.encode().decode("latin-1")

    def header_bytes(self, name: str) -> bytes | None:
        value = self.headers.get(name)
        return None if value is None else value.encode()


def call_of(event: dict[str, Any]) -> Call | None:
    """The prediction request in an HTTP API event (payload format 2.0), or None when the event is
    anything else or has anything Mangum would read otherwise, or fail on (then the app answers it, or
    fails, as before)."""
    context = event.get("requestContext")
    if event.get("version") != "2.0" or not isinstance(context, dict) or "elb" in context:
        return None
    http = context.get("http")
    if not isinstance(http, dict) or http.get("method") != "POST" or "sourceIp" not in http:
        return None
    path = http.get("path")
    if not isinstance(path, str):
        return None
    route = _route(path)
    if route is None:
        return None
    headers = _headers(event)
    body = None if headers is None else _body(event)
    if headers is None or body is None:
        return None
    kind, params = route
    return Call(kind, path, params, headers, body, event.get("rawQueryString", ""))


def _route(path: str) -> tuple[str, dict[str, str]] | None:
    for kind, pattern in ROUTES:
        found = pattern.fullmatch(path)
        if found is not None:
            return kind, {k: v for k, v in found.groupdict().items() if v is not None}
    return None


def _headers(event: dict[str, Any]) -> dict[str, str] | None:
    raw = event.get("headers", {})
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        return None
    cookies = event.get("cookies")
    if cookies and not (isinstance(cookies, list) and all(isinstance(c, str) for c in cookies)):
        return None
    if not isinstance(event.get("rawQueryString", ""), str):
        return None
    headers = {k.lower(): v for k, v in raw.items()}
    host = headers.get("host")
    port = headers.get("x-forwarded-port")
    if host is not None and not _HOST.fullmatch(host):
        return None
    if port is not None and not (port.isascii() and port.isdigit()):
        return None
    if headers.get("x-forwarded-proto", "https") not in ("http", "https"):
        return None
    return headers


def _body(event: dict[str, Any]) -> bytes | None:
    raw = event.get("body", b"") or b""
    if not isinstance(raw, str | bytes):
        return None
    try:
        if event.get("isBase64Encoded", False):
            return base64.b64decode(raw)
        return raw if isinstance(raw, bytes) else raw.encode()
    except (binascii.Error, ValueError):  # Mangum raises on these: the app's path keeps that
        return None


# What a route answers: status, body, content type, headers (before the content length and type).
Answer = tuple[int, bytes, str, dict[str, str]]


def error_answer(
    status: int, code: str, message: str, details: list[dict[str, Any]], headers: dict[str, str], path: str
) -> Answer:
    """aimass.api.responses.error_response's answer."""
    return status, json_bytes(error_body(code, message, details, is_v2(path))), JSON, headers


class DirectPath:
    """The prediction routes of an app built with these limits and keys (aimass.api.app.create_app)."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self.views: dict[str, Callable[[Call], Answer]] = {"v1": self._predict, "v2": self._infer}

    def answer(self, event: dict[str, Any]) -> LambdaResponse | None:
        """The Lambda response to a prediction event; None for any other event."""
        call = call_of(event)
        if call is None:
            return None
        try:
            status, body, content_type, headers = self._serve(call)
        except Exception as error:  # answered as the app's error handlers and AnswerUnexpected do
            known = api_error(error, "POST", call.path)
            status, body, content_type, headers = error_answer(
                known.status, known.code, known.message, known.details, known.headers, call.path
            )
        return lambda_response(status, body, content_type, headers)

    def _serve(self, call: Call) -> Answer:
        """RequestGuard's checks, then the route's view."""
        access = self.access
        caller = access.caller(call.header_bytes("x-api-key") or b"")
        refusal = access.refusal("POST", call.path, caller)
        if refusal is not None:
            status, code, message = refusal
            return error_answer(status, code, message, [], CHALLENGE, call.path)
        too_large = access.declared_too_large(call.header_bytes("content-length"))
        if too_large is not None:  # its own headers are not sent (RequestGuard's answer)
            return error_answer(
                too_large.status, too_large.code, too_large.message, too_large.details, {}, call.path
            )
        return self.views[call.kind](call)

    def _read(self, call: Call) -> bytes:
        """The body, as the app reads it past RequestGuard's count."""
        if len(call.body) > self.access.max_body_bytes:
            raise self.access.too_large()
        return call.body

    def _payload(self, call: Call) -> Any:
        """aimass.api.bodies.payload: the content type checked, the body read, then parsed."""
        labelled = labelled_json(call.header("content-type") or "")
        return decoded(self._read(call), labelled)

    def _predict(self, call: Call) -> Answer:
        """aimass.api.online's V1 views (predict, predict_version, predict_alias)."""
        version_text = call.params.get("version")
        version = None if version_text is None else predictions.path_version(version_text)
        detail = predictions.detail_of(call.query_value("detail"))
        instances = v1.instances_of(self._payload(call))
        answer = predictions.predict(
            call.params["name"],
            instances,
            version,
            call.params.get("alias"),
            call.header(traffic.HEADER),
            detail,
        )
        return 200, json_bytes(answer), JSON, {}

    def _infer(self, call: Call) -> Answer:
        """aimass.api.online's V2 views (infer, infer_version)."""
        version_text = call.params.get("version")
        version = None if version_text is None else predictions.path_version(version_text)
        length = call.header(binary.HEADER.lower())
        if length is None:
            request = v2.parse(self._payload(call))
        else:
            request = predictions.binary_request(self._read(call), length)
        answer = predictions.infer(call.params["name"], request, version, call.header(traffic.HEADER))
        encoded = predictions.binary_answer(answer, request)
        if encoded is None:
            return 200, json_bytes(answer), JSON, {}
        content, headers = encoded
        return 200, content, binary.OCTET, headers


def lambda_response(status: int, body: bytes, content_type: str, headers: dict[str, str]) -> LambdaResponse:
    """What Mangum makes of a starlette Response for an HTTP API (payload format 2.0) event: the headers
    lower-cased, the content length and type after them, the body as text for a text type, else base64."""
    out = {k.lower(): v for k, v in headers.items()}
    out.setdefault("content-length", str(len(body)))
    out.setdefault("content-type", content_type)
    text, encoded = "", False
    if body:
        if any(t in out["content-type"] for t in TEXT_TYPES):
            try:
                text = body.decode()
            except UnicodeDecodeError:
                text, encoded = base64.b64encode(body).decode(), True
        else:
            text, encoded = base64.b64encode(body).decode(), True
    return {"statusCode": status, "body": text, "headers": out, "isBase64Encoded": encoded}
