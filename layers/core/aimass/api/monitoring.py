"""Monitor runs: run one now over a window, list a model's runs, read one's summary and its files
(aimass.monitoring.runs). A run through the API is synchronous, reading at most
AIMASS_MONITOR_API_MAX_ROWS rows (the newest): it answers within API Gateway's 30 s; the schedule's
runs read more (docs/monitoring.md)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from aimass.api.blocking import blocking
from aimass.api.bodies import openapi_body, parse
from aimass.api.online import ERRORS
from aimass.api.responses import JSON
from aimass.config import settings
from aimass.contracts.api import ErrorResponse
from aimass.contracts.monitoring import MONITOR_RUN_PATTERN, MonitorRunList, MonitorRunRequest, MonitorSummary
from aimass.monitoring import actions, runs
from aimass.wiring import flush_capture, monitor_actions, monitor_settings, registry

router = APIRouter(tags=["monitoring"], responses={**ERRORS, 503: {"model": ErrorResponse}})
RunId = Annotated[str, Path(pattern=MONITOR_RUN_PATTERN)]
RunFile = Literal[  # aimass.monitoring.runs.FILES: a name outside them is a 422, not a 404
    "statistics.json", "constraint_violations.json", "drift.json", "sample.json"
]


@router.post(
    "/v1/models/{name}/monitor:run",
    response_model=MonitorSummary,
    openapi_extra=openapi_body(MonitorRunRequest),
    summary="Run the model's monitor now over a window of captured traffic (the body may be empty)",
)
async def run_monitor(name: str, request: Request) -> Response:
    body = await parse(request, MonitorRunRequest) if (await request.body()).strip() else MonitorRunRequest()
    # The captures this process has taken so far are the window's too (the local server captures
    # and monitors; in AWS the registry function captures nothing and this returns at once)
    await blocking(request, flush_capture)
    act = partial(actions.act, monitor_actions())
    summary = await blocking(
        request, runs.run, registry(), monitor_settings(api=True), name, body.seconds, act
    )
    return JSON(summary)


@router.get(
    "/v1/models/{name}/monitor/runs",
    response_model=MonitorRunList,
    summary="A model's monitor runs, newest first",
)
def list_monitor_runs(name: str, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Response:
    return JSON({"runs": runs.list_runs(registry(), settings().bucket, name, limit)})


@router.get(
    "/v1/models/{name}/monitor/runs/{run}",
    response_model=MonitorSummary,
    summary="A monitor run's summary: its window, each version's result, the outcome and the actions",
)
def get_monitor_run(name: str, run: RunId) -> Response:
    return JSON(runs.describe(registry(), settings().bucket, name, run))


@router.get(
    "/v1/models/{name}/monitor/runs/{run}/files/{version}/{file}",
    summary="One of a judged version's files in a monitor run: statistics.json, constraint_violations.json, "
    "drift.json or sample.json (the page's sample of the window)",
)
def get_monitor_run_file(
    name: str, run: RunId, version: Annotated[int, Path(ge=1)], file: RunFile
) -> Response:
    return JSON(runs.read_file(registry(), settings().bucket, name, run, version, file))
