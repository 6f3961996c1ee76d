"""Retraining runs: start one, follow it, list a model's runs (aimass.pipeline.runs)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from aimass.api.blocking import blocking
from aimass.api.bodies import openapi_body, parse
from aimass.api.deps import actor
from aimass.api.online import ERRORS
from aimass.api.responses import JSON
from aimass.config import settings
from aimass.contracts.api import ErrorResponse
from aimass.contracts.pipeline import (
    RUN_ID_PATTERN,
    PipelineRun,
    PipelineRunList,
    PipelineRunRequest,
    PipelineRunStarted,
)
from aimass.pipeline import runs
from aimass.wiring import registry

router = APIRouter(tags=["pipeline"], responses={**ERRORS, 503: {"model": ErrorResponse}})
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN)]


@router.post(
    "/v1/models/{name}/pipeline:run",
    status_code=202,
    response_model=PipelineRunStarted,
    openapi_extra=openapi_body(PipelineRunRequest),
    summary="Start a retraining run (the body may be empty)",
)
async def start_run(name: str, request: Request) -> Response:
    body = await parse(request, PipelineRunRequest) if await request.body() else PipelineRunRequest()
    current = settings()
    limits = runs.RunLimits(current.pipeline_one_run_at_a_time, current.pipeline_min_run_interval_s)
    started = await blocking(
        request,
        runs.start,
        registry(),
        current.pipeline_state_machine_arn,
        current.bucket,
        name,
        body.parameters,
        actor(request),
        limits,
    )
    return JSON(started, status_code=202)


@router.get("/v1/models/{name}/pipeline/runs", response_model=PipelineRunList, summary="A model's runs")
def list_runs(name: str, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Response:
    return JSON({"runs": runs.list_runs(registry(), name, limit)})


@router.get(
    "/v1/models/{name}/pipeline/runs/{run_id}",
    response_model=PipelineRun,
    summary="A run's status, the states it passed, its metrics and release decision",
)
def get_run(name: str, run_id: RunId) -> Response:
    return JSON(runs.describe(registry(), name, run_id))
