"""The rollout schedule's target (RolloutTickSchedule, every RolloutTickMinutes): start the releases
that are due and tick every model's rollout under way (aimass.release.tick), with notices on the
pipeline topic."""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from aimass import release, wiring
from aimass.logs import function_logger
from aimass.tracing import function_tracer

logger = function_logger()
metrics = Metrics()
tracer = function_tracer()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started, ticked = release.tick(wiring.registry(), datetime.now(UTC), wiring.rollout_notices)
    return {
        "releases": [{"name": r.name, "version": r.version, "state": r.state} for r in started],
        "rollouts": [{"name": r.name, "state": r.state, "policy_version": r.policy_version} for r in ticked],
    }
