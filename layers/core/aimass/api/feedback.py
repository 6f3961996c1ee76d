"""Ground truth: labels for captured predictions, and the live accuracy they add up to."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from aimass import feedback, wiring
from aimass.api.blocking import blocking
from aimass.api.bodies import openapi_body, parse
from aimass.api.deps import actor
from aimass.api.online import ERRORS
from aimass.api.responses import JSON
from aimass.config import settings
from aimass.contracts.feedback import FeedbackRequest, FeedbackResponse, LiveAccuracy

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/models/{name}/feedback",
    response_model=FeedbackResponse,
    openapi_extra=openapi_body(FeedbackRequest),
    responses=ERRORS,
    summary="Give the true labels of captured predictions (by prediction id)",
)
async def post_feedback(name: str, request: Request) -> Response:
    body = await parse(request, FeedbackRequest)
    return JSON(await blocking(request, _record, name, body, actor(request)))


def _record(name: str, body: FeedbackRequest, by: str) -> dict[str, Any]:
    wiring.flush_capture()  # this process's own predictions, still being written, count as captured
    answer, recorded = feedback.record(wiring.registry(), settings().bucket, name, body, by)
    for observer in wiring.feedback_observers:
        observer(recorded)
    return answer


@router.get(
    "/v1/models/{name}/feedback",
    response_model=LiveAccuracy,
    responses=ERRORS,
    summary="Live accuracy (or MAE) of each version, from the labels given so far",
)
def get_feedback(name: str) -> Response:
    return JSON(feedback.live_accuracy(wiring.registry(), name))
