"""JSON request bodies parsed straight from bytes by pydantic (Rust), for the prediction hot path.

FastAPI's own body handling runs `json.loads` and then validates the Python objects: several times
slower for rows of floats (bench/RESULTS.md). Routes that parse here declare their body for the
OpenAPI document with `openapi_body`. No web framework is imported here: the online function's direct
path (aimass.api.direct) reads its prediction bodies with the same functions as the app's routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError

from aimass import protocol
from aimass.errors import MAX_DETAILS, BadJson, UnsupportedMediaType, ValidationFailed, field_error

Model = TypeVar("Model", bound=BaseModel)
FORM = "application/x-www-form-urlencoded"
_DOCUMENTED: list[type[BaseModel]] = []

if TYPE_CHECKING:
    from fastapi import Request


def _labelled_json(request: Request) -> bool:
    return labelled_json(request.headers.get("content-type", ""))


def labelled_json(content_type: str) -> bool:
    """From the request's content type (empty: none). True: the body is labelled JSON, or not labelled.
    False: labelled form-urlencoded, which is what plain `curl -d` sends; such a body is read as JSON
    when it parses, as TF-Serving and KServe do. Any other content type is refused (415)."""
    if not content_type or "json" in content_type:
        return True
    if content_type.partition(";")[0].strip().lower() == FORM:
        return False
    raise UnsupportedMediaType(
        f"send the body as JSON with content-type: application/json, not {content_type}"
    )


def _form_not_json(reason: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"the body is labelled {FORM} and is not JSON: send JSON, with content-type: application/json",
        [field_error(["body"], reason, "json_invalid")],
    )


async def payload(request: Request) -> Any:
    """A prediction body as parsed JSON, for the protocol codecs (aimass.protocol) to read. Parsed by
    pydantic's JSON parser: 2.7x faster than the standard library's on 100 rows of 30 floats."""
    labelled = _labelled_json(request)
    return decoded(await request.body(), labelled)


def decoded(body: bytes, labelled_json: bool) -> Any:
    """`payload`'s parsing, once the content type is checked (labelled_json) and the body read."""
    try:
        return protocol.loads(body, pydantic_core.from_json)
    except BadJson as error:
        if labelled_json:
            raise
        raise _form_not_json(error.message) from None


async def parse(request: Request, model: type[Model]) -> Model:
    labelled_json = _labelled_json(request)
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        errors = error.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            if not labelled_json:
                raise _form_not_json(errors[0]["msg"]) from error
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
