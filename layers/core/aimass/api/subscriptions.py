"""Webhook subscriptions to registry events (docs/events.md): add, list, remove; the admin scope."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from aimass.api.bodies import openapi_body, parse
from aimass.api.deps import actor
from aimass.api.online import ERRORS
from aimass.api.responses import JSON
from aimass.config import settings
from aimass.contracts.events import SubscriptionCreated, SubscriptionList, SubscriptionRequest
from aimass.subscriptions import add, listed, remove
from aimass.wiring import registry

router = APIRouter(tags=["subscriptions"])


@router.post(
    "/v1/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    responses=ERRORS,
    openapi_extra=openapi_body(SubscriptionRequest),
    summary="Subscribe a webhook to registry events; its signing secret is in this answer only",
)
async def add_subscription(request: Request) -> Response:
    body = await parse(request, SubscriptionRequest)
    created = add(registry(), body, actor(request), settings().allow_http_webhooks)
    return JSON(created.model_dump(), status_code=201)


@router.get(
    "/v1/subscriptions",
    response_model=SubscriptionList,
    responses=ERRORS,
    summary="The webhook subscriptions (without their secrets)",
)
def list_subscriptions() -> Response:
    return JSON(SubscriptionList(subscriptions=listed(registry())).model_dump())


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    status_code=204,
    responses=ERRORS,
    summary="Remove a webhook subscription (404 when there is none by that id)",
)
def remove_subscription(subscription_id: str, request: Request) -> Response:
    remove(registry(), subscription_id, actor(request))
    return Response(status_code=204)
