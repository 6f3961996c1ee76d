"""S3 drop-to-predict: files put under incoming/<model>/ are predicted into predictions/<model>/.

`handler` takes the S3 events; `step` runs the tasks of statemachines/batch_predict.asl.json, which
predicts files too large for one invocation in parts."""

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from aimass import aws, wiring
from aimass.batch import parts
from aimass.batch.drop import Drop, drops, process
from aimass.batch.results import FileSummary
from aimass.config import settings
from aimass.logs import function_logger
from aimass.tracing import function_tracer

logger = function_logger()
metrics = Metrics()
tracer = function_tracer()

# S3 delivers an event at least once: each object version is predicted once, and a duplicate
# delivery gets the first one's summary back and writes nothing. S3 redelivers within hours, so a
# week is plenty to remember an object version.
persistence = DynamoDBPersistenceLayer(
    table_name=settings().idempotency_table, boto3_client=aws.client("dynamodb")
)
idempotency = IdempotencyConfig(
    event_key_jmespath="[bucket, key, etag, version_id]", expires_after_seconds=7 * 24 * 3600
)


@idempotent_function(data_keyword_argument="drop", persistence_store=persistence, config=idempotency)
def predict_once(drop: dict[str, Any]) -> FileSummary:
    return process(Drop(**drop), wiring.serving(), wiring.batch_settings())


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    summaries = [predict_once(drop=asdict(drop)) for drop in drops(S3Event(event), settings().bucket)]
    for summary in summaries:
        _count(summary)
    return {"files": summaries}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def step(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    result = parts.step(event, wiring.serving(), wiring.batch_settings())
    if event.get("step") in ("merge", "fail"):  # a run's end: the file's figures, as handler's
        _count(result)
    return result


def _count(summary: Mapping[str, Any]) -> None:
    if summary["status"] == "started":  # handed to the state machine: counted when its run ends
        return
    rows = summary["rows"] or {}
    metrics.add_metric(name="BatchRowsPredicted", unit=MetricUnit.Count, value=rows.get("predicted", 0))
    metrics.add_metric(name="BatchRowsRejected", unit=MetricUnit.Count, value=rows.get("rejected", 0))
    metrics.add_metric(name="BatchFilesFailed", unit=MetricUnit.Count, value=summary["status"] == "failed")
