"""The Lambda side of an app: Mangum in front, Powertools logging, metrics and tracing around it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from aimass.api.app import create_app

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def api_handler(parts: Iterable[str]) -> LambdaHandler:
    """A handler for one of the apps; built once per container, at import time of the function."""
    logger = Logger()
    metrics = Metrics()
    tracer = Tracer()
    asgi = Mangum(create_app(parts), lifespan="off")

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        response = dict(asgi(event, context))  # type: ignore[arg-type]  # both name the same Lambda context
        status = int(response.get("statusCode", 500))
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        if status >= 400:
            metrics.add_metric(
                name="ServerErrors" if status >= 500 else "ClientErrors", unit=MetricUnit.Count, value=1
            )
        return response

    return handler
