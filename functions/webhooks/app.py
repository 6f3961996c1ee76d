"""Registry events: each event on the bus POSTed, signed, to the subscribed webhooks (aimass.webhooks)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from aimass import webhooks, wiring
from aimass.logs import function_logger
from aimass.tracing import function_tracer

logger = function_logger()
tracer = function_tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deliveries = webhooks.deliver_envelope(
        event, wiring.registry().list_subscriptions(), wiring.latest_version
    )
    missed = [d.subscription for d in deliveries if not d.delivered]
    if missed:
        # Lambda records the event with this error in WebhooksFailureQueue
        raise webhooks.NotDelivered(
            f"event {event['detail']['event_id']} not taken by subscriptions {missed}"
        )
    return {"delivered": len(deliveries)}
