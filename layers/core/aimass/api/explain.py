"""`:explain` (KServe's V1 verb): Kernel SHAP attributions of a version's predictions
(aimass.serving.explanations; docs/explain.md). Part of the online function, beside `:predict`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from aimass.api.blocking import blocking
from aimass.api.bodies import parse
from aimass.api.online import ALIAS, NAME, VERSION, _path_version, _route
from aimass.api.responses import JSON
from aimass.config import settings
from aimass.contracts.explain import ExplainRequest, ExplainResponse
from aimass.serving.explanations import Budget, explain_instances
from aimass.wiring import serving

router = APIRouter()

ROUTE: dict[str, Any] = {**_route(ExplainRequest, ExplainResponse, NAME), "tags": ["v1"]}
VERSION_ROUTE: dict[str, Any] = {**_route(ExplainRequest, ExplainResponse, NAME, VERSION), "tags": ["v1"]}
ALIAS_ROUTE: dict[str, Any] = {**_route(ExplainRequest, ExplainResponse, NAME, ALIAS), "tags": ["v1"]}


def _explain(body: ExplainRequest, name: str, version: int | None, alias: str | None) -> dict[str, Any]:
    pipeline = serving()
    model = pipeline.store.load(name, version, alias)
    budget = Budget(settings().explain_max_rows, pipeline.max_instances)
    return explain_instances(pipeline.store, model, body.instances, body.parameters, budget)


async def _answer(request: Request, version: int | None = None, alias: str | None = None) -> Response:
    body = await parse(request, ExplainRequest)
    # Thousands of model rows: always off the event loop, whatever backend runs them.
    return JSON(await blocking(request, _explain, body, request.path_params["name"], version, alias))


@router.post(
    "/v1/models/{name}:explain",
    summary="Kernel SHAP attributions of the champion (else the latest) version's predictions",
    **ROUTE,
)
async def explain(request: Request) -> Response:
    return await _answer(request)


@router.post(
    "/v1/models/{name}/versions/{version}:explain",
    summary="Kernel SHAP attributions of one version's predictions",
    **VERSION_ROUTE,
)
async def explain_version(request: Request) -> Response:
    return await _answer(request, version=_path_version(request))


@router.post(
    "/v1/models/{name}/labels/{alias}:explain",
    summary="Kernel SHAP attributions of the predictions of the version an alias points at",
    **ALIAS_ROUTE,
)
async def explain_alias(request: Request) -> Response:
    return await _answer(request, alias=request.path_params["alias"])
