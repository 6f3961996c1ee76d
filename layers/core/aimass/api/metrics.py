"""`GET /metrics`: the local server's Prometheus metrics (aimass.serving.prometheus, docs/metrics.md).

A route of the local server only: API Gateway routes no /metrics (the deployed stack's metrics are
in CloudWatch), so it is left out of the OpenAPI document the template's API is checked against.
It takes the predict scope, as every read does (aimass.api.scopes)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from aimass.serving.prometheus import CONTENT_TYPE, metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    return Response(metrics().exposition(), media_type=CONTENT_TYPE)
