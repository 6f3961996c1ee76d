"""S3 drop-to-predict: files put under incoming/<model>/ are predicted into predictions/<model>/.

`handler` takes the S3 events; `step` runs the tasks of statemachines/batch_predict.asl.json, which
predicts files too large for one invocation in parts."""

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aimass import wiring
from aimass.batch import parts
from aimass.batch.drop import handle_event
from aimass.logs import function_logger

logger = function_logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summaries = handle_event(event, wiring.predictor(), context)
    for summary in summaries:
        _count(summary)
    return {"files": summaries}


@logger.inject_lambda_context
@metrics.log_metrics
def step(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = parts.step(event, wiring.predictor())
    if event.get("step") in ("merge", "fail"):  # a run's end: the file's figures, as handler's
        _count(result)
    return result


def _count(summary: dict[str, Any]) -> None:
    if summary["status"] == "started":  # handed to the state machine: counted when its run ends
        return
    rows = summary["rows"] or {}
    metrics.add_metric(name="BatchRowsPredicted", unit=MetricUnit.Count, value=rows.get("predicted", 0))
    metrics.add_metric(name="BatchRowsRejected", unit=MetricUnit.Count, value=rows.get("rejected", 0))
    metrics.add_metric(name="BatchFilesFailed", unit=MetricUnit.Count, value=summary["status"] == "failed")
