"""Registry events: the registry table's stream (new audit records) onto the events bus (aimass.events)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from aimass import events
from aimass.config import settings
from aimass.logs import function_logger
from aimass.tracing import function_tracer

logger = function_logger()
tracer = function_tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bus = settings().event_bus
    if not bus:
        raise RuntimeError("AIMASS_EVENT_BUS is not set: the template sets it to AimassEventBus")
    failed = events.publish_stream(bus, event.get("Records", []))
    # Lambda retries the batch from the first of these (ReportBatchItemFailures)
    return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in failed]}
