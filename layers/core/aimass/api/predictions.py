"""What the prediction routes (`:predict`, `/infer`) do with a request's parts once they are read, with
no web framework: the app's routes (aimass.api.online) and the online function's direct path
(aimass.api.direct) both call these, so that either answers a request alike."""

from __future__ import annotations

from typing import Any

import pydantic_core
from pydantic import TypeAdapter, ValidationError

from aimass.api.answers import json_bytes
from aimass.errors import ValidationFailed, field_error
from aimass.protocol import binary, v2
from aimass.serving.pipeline import V1Answer, wants_steps
from aimass.wiring import serving

_VERSION_NUMBER = TypeAdapter(int)


def path_version(text: str) -> int:
    """The {version} path parameter as FastAPI would read it (pydantic's lax int), its 422 included."""
    try:
        return _VERSION_NUMBER.validate_python(text)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise ValidationFailed(
            "the request does not match the schema",
            [field_error(["path", "version"], first["msg"], first["type"])],
        ) from None


def detail_of(query_value: str | None) -> bool:
    """Whether V1's `?detail=steps` asks for a graph version's steps; any other detail is a 422."""
    return wants_steps(query_value, ["query", "detail"])


def predict(
    name: str,
    instances: list[Any],
    version: int | None,
    alias: str | None,
    routing_key: str | None,
    detail: bool = False,
) -> V1Answer:
    """An online V1 prediction: captured, routed by the x-aimass-routing-key header's `routing_key`;
    `detail`: with a graph version's steps."""
    return serving().predict(
        name, instances, version=version, alias=alias, captured=True, routing_key=routing_key, detail=detail
    )


def binary_request(body: bytes, length: str) -> v2.Request:
    """A V2 request sent with the binary tensor data extension (`length`: its header's value)."""
    return binary.decode(body, length, pydantic_core.from_json)


def infer(name: str, request: v2.Request, version: int | None, routing_key: str | None) -> v2.Response:
    """An online V2 inference, captured and routed as `predict`."""
    return serving().infer(name, request, version=version, captured=True, routing_key=routing_key)


def binary_answer(answer: v2.Response, request: v2.Request) -> tuple[bytes, dict[str, str]] | None:
    """The answer with the outputs the request asks for in binary, and its headers; None when it asks
    for none (the answer is JSON)."""
    wanted = binary.wanted(request)
    if not wanted:
        return None
    content, size = binary.encode(answer, wanted, json_bytes)
    return content, {binary.HEADER: str(size)}
