"""The retraining pipeline's tasks (statemachines/training_pipeline.asl.json): aimass.pipeline.steps."""

from typing import Any

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from aimass import wiring
from aimass.logs import function_logger
from aimass.pipeline import steps

logger = function_logger()
metrics = Metrics()
tracer = Tracer()


@logger.inject_lambda_context
@metrics.log_metrics
# A task's result is the run's state, up to Step Functions' 256 KB; an X-Ray segment holds 64 KB.
@tracer.capture_lambda_handler(capture_response=False)
def step(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.info("pipeline step", extra={"step": event.get("step"), "run": event.get("run")})
    return steps.step(event, wiring.registry(), wiring.serving().store, wiring.pipeline_settings())
