"""The OpenAPI document the API publishes (and docs/api.md quotes)."""

from __future__ import annotations

import json
import re

from aimass.api.app import create_app


def test_every_schema_reference_in_the_openapi_document_resolves() -> None:
    document = create_app().openapi()
    references = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert references <= set(document["components"]["schemas"])
    assert {"PredictRequest", "InferRequest", "AliasUpdate"} <= references


def test_prediction_routes_document_their_json_body() -> None:
    paths = create_app().openapi()["paths"]
    for path, model in (
        ("/v1/models/{name}:predict", "PredictRequest"),
        ("/v2/models/{name}/infer", "InferRequest"),
    ):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}
