"""JSON request bodies parsed straight from bytes by pydantic (Rust), for the prediction hot path.

FastAPI's own body handling runs `json.loads` and then validates the Python objects: several times
slower for rows of floats (bench/RESULTS.md). Routes that parse here declare their body for the
OpenAPI document with `openapi_body`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pydantic_core
from fastapi import Request
from pydantic import BaseModel, ValidationError

from aimass import protocol
from aimass.errors import MAX_DETAILS, BadJson, UnsupportedMediaType, ValidationFailed

Model = TypeVar("Model", bound=BaseModel)
_DOCUMENTED: list[type[BaseModel]] = []


def _check_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type:
        raise UnsupportedMediaType(
            f"send the body as JSON with content-type: application/json, not {content_type}"
        )


async def payload(request: Request) -> Any:
    """A prediction body as parsed JSON, for the protocol codecs (aimass.protocol) to read. Parsed by
    pydantic's JSON parser: 2.7x faster than the standard library's on 100 rows of 30 floats."""
    _check_json(request)
    return protocol.loads(await request.body(), pydantic_core.from_json)


async def parse(request: Request, model: type[Model]) -> Model:
    _check_json(request)
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        errors = error.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise BadJson(f"the request body is not valid JSON: {errors[0]['msg']}") from error
        raise ValidationFailed(
            "the request does not match the schema",
            [
                {"loc": ["body", *e["loc"]], "message": e["msg"], "type": e["type"]}
                for e in errors[:MAX_DETAILS]
            ],
        ) from error


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that parses `model` itself."""
    if model not in _DOCUMENTED:
        _DOCUMENTED.append(model)
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def add_body_schemas(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in _DOCUMENTED:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas.setdefault(model.__name__, schema)
    return document
