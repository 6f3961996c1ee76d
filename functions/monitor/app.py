"""The monitor schedule's target (MonitorSchedule, MonitorScheduleExpression): a monitor run of every
model (or those in AIMASS_MONITOR_MODELS) over the last MonitorWindowHours (aimass.monitoring.runs),
with metrics as EMF, a notice on the pipeline topic and retraining through the drift cooldown when a
run finds drift. A run that failed raises at the end, after the other models' runs, so the function's
Errors metric (MonitorFunctionErrorsAlarm) sees it."""

from functools import partial
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from aimass import wiring
from aimass.config import settings
from aimass.logs import function_logger
from aimass.monitoring import actions, emf, runs
from aimass.tracing import function_tracer

logger = function_logger()
metrics = Metrics()
tracer = function_tracer()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = settings()
    hours = float(event.get("window_hours") or s.monitor_window_hours)
    act = partial(actions.act, wiring.monitor_actions(emf.emit))
    only = [m.strip() for m in s.monitor_models.split(",") if m.strip()]
    done = runs.run_models(wiring.registry(), wiring.monitor_settings(), hours * 3600, act, only)
    failed = [r["model"] for r in done if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"monitor runs failed for {', '.join(failed)}: {done}")
    return {"runs": done}
