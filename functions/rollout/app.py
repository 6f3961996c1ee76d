"""The rollout schedule's target (RolloutTickSchedule, every RolloutTickMinutes): tick every model's
rollout under way, aimass.rollout.tick_all, with notices on the pipeline topic."""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from aimass import rollout, wiring
from aimass.logs import function_logger

logger = function_logger()
metrics = Metrics()
tracer = Tracer()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ticked = rollout.tick_all(wiring.registry(), datetime.now(UTC), wiring.rollout_notices)
    return {
        "rollouts": [{"name": r.name, "state": r.state, "policy_version": r.policy_version} for r in ticked]
    }
