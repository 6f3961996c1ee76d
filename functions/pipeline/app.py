"""The retraining pipeline's tasks (statemachines/training_pipeline.asl.json): aimass.pipeline.steps."""

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from aimass import wiring
from aimass.config import settings
from aimass.logs import function_logger
from aimass.pipeline import steps
from aimass.pipeline.sagemaker import SageMakerTraining
from aimass.tracing import function_tracer

logger = function_logger()
metrics = Metrics()
tracer = function_tracer()


@logger.inject_lambda_context
@metrics.log_metrics
# A task's result is the run's state, up to Step Functions' 256 KB; an X-Ray segment holds 64 KB.
@tracer.capture_lambda_handler(capture_response=False)
def step(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.info("pipeline step", extra={"step": event.get("step"), "run": event.get("run")})
    return steps.step(event, wiring.registry(), wiring.serving().store, pipeline_settings())


def pipeline_settings() -> steps.PipelineSettings:
    """What the tasks take from the settings, read at each invocation."""
    s = settings()
    return steps.PipelineSettings(
        bucket=s.bucket,
        sagemaker=SageMakerTraining(
            stage=s.stage,
            image=s.training_image,
            role_arn=s.training_role_arn,
            instance_type=s.training_instance_type,
            volume_gb=s.training_volume_gb,
            max_runtime_s=s.training_max_runtime_s,
        ),
    )
