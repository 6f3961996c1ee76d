"""Releases: a model's release policy, a version released through it, approvals (aimass.release)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from aimass import release
from aimass.api.blocking import blocking
from aimass.api.bodies import Model, openapi_body, parse
from aimass.api.deps import actor, note
from aimass.api.online import ERRORS
from aimass.api.responses import JSON
from aimass.contracts.registry import (
    Release,
    ReleaseApproval,
    ReleasePolicy,
    ReleaseRejection,
    ReleaseRequest,
    ReleaseView,
)
from aimass.wiring import registry, registry_changed

router = APIRouter(tags=["release"])


async def _optional(request: Request, model: type[Model]) -> Model:
    """A body that may be left out: none reads as `{}`."""
    if not (await request.body()).strip():
        return model()
    return await parse(request, model)


@router.get(
    "/v1/models/{name}/release-policy",
    response_model=ReleasePolicy,
    responses=ERRORS,
    summary="How a version of the model is released: directly, through a canary or a shadow first, "
    "after approval or not",
)
def get_release_policy(name: str) -> Response:
    return JSON(release.policy(registry(), name).model_dump())


@router.put(
    "/v1/models/{name}/release-policy",
    response_model=ReleasePolicy,
    responses=ERRORS,
    openapi_extra=openapi_body(ReleasePolicy),
    summary="Set the model's release policy (audited, versioned)",
)
async def put_release_policy(name: str, request: Request) -> Response:
    body = await parse(request, ReleasePolicy)
    saved = await blocking(request, release.set_policy, registry(), name, body, actor(request), note(request))
    return JSON(saved.model_dump())


@router.get(
    "/v1/models/{name}/release",
    response_model=ReleaseView,
    responses=ERRORS,
    summary="The model's release policy and its versions' releases: waiting, scheduled, released, rejected",
)
def get_releases(name: str) -> Response:
    return JSON(release.view(registry(), name).model_dump())


@router.post(
    "/v1/models/{name}/versions/{version}/release",
    response_model=Release,
    responses=ERRORS,
    openapi_extra=openapi_body(ReleaseRequest),
    summary="Release a version through the model's release policy, now or at a time",
)
async def release_version(name: str, version: int, request: Request) -> Response:
    body = await _optional(request, ReleaseRequest)
    origin = {"api": actor(request)}
    released = await blocking(
        request, release.release, registry(), name, version, actor(request), note(request), origin, body.at
    )
    registry_changed(name)
    return JSON(released.model_dump())


@router.post(
    "/v1/models/{name}/versions/{version}/approve",
    response_model=Release,
    responses=ERRORS,
    openapi_extra=openapi_body(ReleaseApproval),
    summary="Approve a version waiting for approval: its release starts now, or at `at`",
)
async def approve_version(name: str, version: int, request: Request) -> Response:
    body = await _optional(request, ReleaseApproval)
    said = body.note or note(request)
    approved = await blocking(
        request, release.approve, registry(), name, version, actor(request), said, body.at
    )
    registry_changed(name)
    return JSON(approved.model_dump())


@router.post(
    "/v1/models/{name}/versions/{version}/reject",
    response_model=Release,
    responses=ERRORS,
    openapi_extra=openapi_body(ReleaseRejection),
    summary="Reject a version waiting for approval: it stays unreleased, the stable version serving",
)
async def reject_version(name: str, version: int, request: Request) -> Response:
    body = await parse(request, ReleaseRejection)
    rejected = await blocking(request, release.reject, registry(), name, version, actor(request), body.note)
    return JSON(rejected.model_dump())
