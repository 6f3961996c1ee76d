"""Model administration: versions (upload ONNX), aliases, audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from botocore.exceptions import ClientError
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from pydantic import ValidationError

from aimass import artifacts, cards, rollout
from aimass.api.blocking import blocking
from aimass.api.bodies import openapi_body, parse
from aimass.api.deps import actor, note
from aimass.api.online import ERRORS
from aimass.api.responses import JSON
from aimass.cards import page as card_page
from aimass.config import settings
from aimass.contracts.cards import CardFields, CardFieldsUpdate, ModelCardContent
from aimass.contracts.compression import Quantized, QuantizeRequest
from aimass.contracts.graph import ComposeRequest
from aimass.contracts.quality import BaselineFiles, QualityPolicy
from aimass.contracts.registry import (
    Alias,
    AliasRemoved,
    AliasUpdate,
    AuditRecord,
    ModelDetail,
    ModelList,
    ModelNames,
    ModelVersion,
    Rollout,
    RolloutStart,
    SignatureEnrichment,
    TrafficPolicy,
    VersionStanding,
    VersionUpdate,
)
from aimass.contracts.rules import Ruleset, RulesetVersion
from aimass.errors import NotFound, ValidationFailed, field_error
from aimass.gateways.s3 import ObjectRefused
from aimass.graph import compose_version as compose
from aimass.registration import (
    Reference,
    baseline_files,
    choose_backend,
    ready,
    register_version,
    save_ruleset,
    set_alias,
    set_quality_policy,
    set_traffic_policy,
)
from aimass.wiring import breakers, flush_live, registry, registry_changed, rollout_notices, serving

router = APIRouter(tags=["registry"])


@router.get(
    "/v1/models",
    response_model=ModelNames | ModelList,
    summary="The models' names, as KServe lists them; with `detail=true`, each one's versions and aliases",
)
def list_models(
    detail: Annotated[bool, Query(description="each model's latest version, aliases, last change")] = False,
) -> Response:
    models = registry().list_models()
    if detail:
        return JSON({"models": [m.model_dump() for m in models]})
    return JSON({"models": [m.name for m in models]})


@router.get("/v1/models/{name}", response_model=ModelDetail, responses=ERRORS)
def get_model(name: str) -> Response:
    summary = registry().get_model(name)
    versions = registry().list_versions(name)
    return JSON(
        {
            **summary.model_dump(),
            "versions": [v.model_dump() for v in versions],
            "ready": ready(summary, versions, breakers().available, registry().get_version),
        }
    )


@router.get("/v1/models/{name}/versions/{version}", response_model=ModelVersion, responses=ERRORS)
def get_version(name: str, version: int) -> Response:
    return JSON(registry().get_version(name, version).model_dump())


@router.get(
    "/v1/models/{name}/versions/{version}/baseline",
    response_model=BaselineFiles,
    responses=ERRORS,
    tags=["quality"],
    summary="The version's baseline: statistics.json and constraints.json (Model Monitor's formats)",
)
def get_baseline(name: str, version: int) -> Response:
    return JSON(baseline_files(registry().get_version(name, version)))


@router.patch(
    "/v1/models/{name}/versions/{version}",
    response_model=VersionStanding,
    responses=ERRORS,
    openapi_extra=openapi_body(VersionUpdate),
    summary="Archive a version (no alias may point at it; `latest` skips it, asking by number still "
    "serves it) or bring it back",
)
async def patch_version(name: str, version: int, request: Request) -> Response:
    body = await parse(request, VersionUpdate)
    standing = await blocking(
        request, registry().set_archived, name, version, body.archived, actor(request), note(request)
    )
    registry_changed(name)
    return JSON(standing.model_dump())


def wants_html(request: Request) -> bool:
    """Whether the caller asks for HTML before JSON (a browser does; curl and the CLI's JSON calls
    do not): `text/html` named in Accept, and ahead of `application/json` when both are."""
    accept = request.headers.get("accept", "").lower()
    if "text/html" not in accept:
        return False
    return "application/json" not in accept or accept.index("text/html") < accept.index("application/json")


@router.get(
    "/v1/models/{name}/versions/{version}/card",
    response_model=ModelCardContent,
    responses={**ERRORS, 200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
    tags=["cards"],
    summary="The version's model card: JSON in SageMaker Model Card's content schema, or with "
    "`Accept: text/html` the page with plots (docs/cards.md)",
)
def get_card(name: str, version: int, request: Request) -> Response:
    # The attributions' summary is computed on the first request that lacks it (about a second), then
    # read: a sync view, so that runs on FastAPI's thread pool, off the event loop.
    inputs = cards.explained_inputs(registry(), serving().store, settings().bucket, name, version)
    if wants_html(request):
        return Response(card_page.render(inputs), media_type="text/html; charset=utf-8")
    return JSON(cards.build(inputs).model_dump(exclude_none=True))


@router.patch(
    "/v1/models/{name}/versions/{version}/card",
    response_model=CardFields,
    responses=ERRORS,
    openapi_extra=openapi_body(CardFieldsUpdate),
    tags=["cards"],
    summary="Set the card fields a person supplies (owner, intended use, limits, risk rating, ...): "
    "those given are set, `null` clears one, the others stay",
)
async def patch_card(name: str, version: int, request: Request) -> Response:
    body = await parse(request, CardFieldsUpdate)
    saved = await blocking(
        request, registry().set_card_fields, name, version, body, actor(request), note(request)
    )
    return JSON(saved.model_dump())


AUDIT_PAGE_DEFAULT = 100
AUDIT_PAGE_MAX = 1000


@router.get(
    "/v1/models/{name}/audit",
    response_model=list[AuditRecord],
    responses=ERRORS,
    summary="Every change, oldest first, a page at a time: the next page's link is in the Link header",
)
def audit(
    name: str,
    request: Request,
    limit: Annotated[
        int, Query(ge=1, le=AUDIT_PAGE_MAX, description="records per page")
    ] = AUDIT_PAGE_DEFAULT,
    after: Annotated[str | None, Query(description="the page token from the previous page's link")] = None,
) -> Response:
    registry().get_model(name)
    page = registry().audit_page(name, limit, after)
    headers = {}
    if page.next_token is not None:
        following = request.url.include_query_params(limit=limit, after=page.next_token)
        headers = {"Link": f'<{following}>; rel="next"', "x-aimass-next-token": page.next_token}
    return JSON([r.model_dump() for r in page.records], headers=headers)


def _enrichment(metadata: str | None) -> SignatureEnrichment | None:
    if not metadata:
        return None
    try:
        return SignatureEnrichment.model_validate_json(metadata)
    except ValidationError as error:
        raise ValidationFailed(
            "metadata does not match the signature enrichment schema",
            [
                {"loc": ["body", "metadata", *e["loc"]], "message": e["msg"], "type": e["type"]}
                for e in error.errors()
            ],
        ) from error


def _reference(upload: UploadFile | None, uri: str | None) -> Reference | None:
    if upload is not None and uri:
        raise ValidationFailed(
            "give the reference dataset as a file or as an S3 URI, not both",
            [field_error(["body", "reference_uri"], "one reference only", "conflict")],
        )
    if upload is not None:
        filename = upload.filename or "reference.csv"
        return Reference(upload.file.read(), filename, f"upload:{filename}")
    if uri:
        try:
            artifacts.parse_uri(uri)
        except ValueError as error:
            raise ValidationFailed(
                str(error), [field_error(["body", "reference_uri"], "expected s3://bucket/key", "pattern")]
            ) from error
        try:
            data = artifacts.get(uri)
        except (NotFound, ObjectRefused, ClientError) as error:
            # The caller's URI, not the service, is at fault: a missing object, bucket or permission.
            if isinstance(error, NotFound):
                reason = error.message
            elif isinstance(error, ObjectRefused):
                reason = error.code
            else:
                reason = error.response["Error"].get("Code", "error")
            raise ValidationFailed(
                f"cannot read the reference dataset {uri}: {reason}",
                [field_error(["body", "reference_uri"], f"cannot be read: {reason}", "unreadable")],
            ) from error
        return Reference(data, uri, uri)
    return None


@router.post(
    "/v1/models/{name}/versions",
    status_code=201,
    response_model=ModelVersion,
    responses=ERRORS,
    summary="Register a new version by uploading an ONNX file",
)
def upload_version(
    name: str,
    request: Request,
    model: Annotated[UploadFile, File(description="the ONNX file")],
    metadata: Annotated[
        str | None, Form(description="JSON: SignatureEnrichment (features, class_labels, ...)")
    ] = None,
    reference: Annotated[
        UploadFile | None,
        File(description="reference dataset for the baseline: CSV with a header row, or Parquet"),
    ] = None,
    reference_uri: Annotated[
        str | None, Form(description="the reference dataset in S3 instead: s3://bucket/key")
    ] = None,
    backend: Annotated[
        str | None,
        Form(
            description="where the version runs: `lambda`, or `sagemaker:<endpoint>[/<target model>]`; "
            "unset: the Lambda, or the stack's GPU endpoint for a model too large for the Lambda"
        ),
    ] = None,
) -> Response:
    data = model.file.read()
    s = settings()
    placed = choose_backend(backend, len(data), s.lambda_max_model_bytes, s.sagemaker_endpoint)
    record = register_version(
        registry(),
        s.bucket,
        name,
        data,
        actor(request),
        _enrichment(metadata),
        reference=_reference(reference, reference_uri),
        backend=placed,
        note=note(request),
    )
    registry_changed(name)
    return JSON(record.model_dump(), status_code=201)


@router.post(
    "/v1/models/{name}/versions:compose",
    status_code=201,
    response_model=ModelVersion,
    responses=ERRORS,
    openapi_extra=openapi_body(ComposeRequest),
    summary="Register a graph version: an ensemble, a sequence or a switch over other versions, checked "
    "to be able to run (422 naming the field and the reason)",
)
async def compose_version(name: str, request: Request) -> Response:
    body = await parse(request, ComposeRequest)
    record = await blocking(
        request, compose, registry(), settings().bucket, name, body, actor(request), note(request)
    )
    registry_changed(name)
    return JSON(record.model_dump(), status_code=201)


@router.post(
    "/v1/models/{name}/versions/{version}/quantize",
    status_code=201,
    response_model=Quantized,
    responses=ERRORS,
    openapi_extra=openapi_body(QuantizeRequest),
    summary="Register an int8 or float16 copy of a version as the `challenger`, judged against it on "
    "held-out rows (agreement, metric, speed, size); 422 with the figures when it agrees too little",
)
async def quantize_version(name: str, version: int, request: Request) -> Response:
    from aimass.compression import quantize_version as quantize

    body = await parse(request, QuantizeRequest) if (await request.body()).strip() else QuantizeRequest()
    made = await blocking(
        request, quantize, registry(), settings().bucket, name, version, body, actor(request), note(request)
    )
    registry_changed(name)
    return JSON(made.model_dump(), status_code=201)


@router.put(
    "/v1/models/{name}/aliases/{alias}",
    response_model=Alias,
    responses=ERRORS,
    openapi_extra=openapi_body(AliasUpdate),
)
async def put_alias(name: str, alias: str, request: Request) -> Response:
    body = await parse(request, AliasUpdate)
    moved = await blocking(
        request, set_alias, registry(), name, alias, body.version, actor(request), note(request)
    )
    registry_changed(name)
    return JSON(moved.model_dump())


@router.delete(
    "/v1/models/{name}/aliases/{alias}",
    response_model=AliasRemoved,
    responses=ERRORS,
    summary="Remove an alias; without `champion`, requests without a version get the latest version "
    "not archived",
)
def delete_alias(name: str, alias: str, request: Request) -> Response:
    removed = registry().remove_alias(name, alias, actor(request), note(request))
    registry_changed(name)
    return JSON(removed.model_dump())


@router.get("/v1/models/{name}/rules", response_model=RulesetVersion, responses=ERRORS, tags=["rules"])
def get_rules(name: str) -> Response:
    summary = registry().get_model(name)
    if summary.rules_version is None:
        raise NotFound(
            f"model {name!r} has no rules",
            [{"loc": ["path", "name"], "message": "no rules", "type": "no_rules"}],
        )
    return JSON(registry().get_ruleset(name, summary.rules_version).model_dump())


@router.put(
    "/v1/models/{name}/rules",
    response_model=RulesetVersion,
    responses=ERRORS,
    openapi_extra=openapi_body(Ruleset),
    tags=["rules"],
    summary="Save the model's rules as a new ruleset version (validated against its signatures)",
)
async def put_rules(name: str, request: Request) -> Response:
    body = await parse(request, Ruleset)
    saved = await blocking(request, save_ruleset, registry(), name, body, actor(request), note(request))
    registry_changed(name)
    return JSON(saved.model_dump())


@router.get(
    "/v1/models/{name}/traffic",
    response_model=TrafficPolicy,
    responses=ERRORS,
    tags=["traffic"],
    summary="How requests that name no version are split between the stable version and a canary",
)
def get_traffic_policy(name: str) -> Response:
    return JSON(registry().get_model(name).traffic.model_dump())


@router.put(
    "/v1/models/{name}/traffic",
    response_model=TrafficPolicy,
    responses=ERRORS,
    openapi_extra=openapi_body(TrafficPolicy),
    tags=["traffic"],
    summary="Set the model's traffic policy (a canary version and its percent; `{}`: all to stable)",
)
async def put_traffic_policy(name: str, request: Request) -> Response:
    body = await parse(request, TrafficPolicy)
    saved = await blocking(request, set_traffic_policy, registry(), name, body, actor(request), note(request))
    registry_changed(name)
    return JSON(saved.model_dump())


@router.get(
    "/v1/models/{name}/rollout",
    response_model=Rollout,
    responses=ERRORS,
    tags=["traffic"],
    summary="Where the model's rollout stands",
)
def get_rollout(name: str) -> Response:
    flush_live()  # this process's own counts first
    return JSON(rollout.status(registry(), name).model_dump())


@router.put(
    "/v1/models/{name}/rollout",
    response_model=Rollout,
    responses=ERRORS,
    openapi_extra=openapi_body(RolloutStart),
    tags=["traffic"],
    summary="Start a rollout: the version becomes the canary with its share (409 while one is under way)",
)
async def start_rollout(name: str, request: Request) -> Response:
    body = await parse(request, RolloutStart)
    started = await blocking(request, rollout.start, registry(), name, body, actor(request), note(request))
    registry_changed(name)
    return JSON(started.model_dump())


@router.post(
    "/v1/models/{name}/rollout/promote",
    response_model=Rollout,
    responses=ERRORS,
    tags=["traffic"],
    summary="Promote the canary: it becomes the champion and takes every request",
)
def promote_rollout(name: str, request: Request) -> Response:
    promoted = rollout.promote(registry(), name, actor(request), note(request))
    registry_changed(name)
    return JSON(promoted.model_dump())


@router.post(
    "/v1/models/{name}/rollout/abort",
    response_model=Rollout,
    responses=ERRORS,
    tags=["traffic"],
    summary="Abort the rollout: the stable version takes every request back",
)
def abort_rollout(name: str, request: Request) -> Response:
    aborted = rollout.abort(registry(), name, actor(request), note(request))
    registry_changed(name)
    return JSON(aborted.model_dump())


@router.post(
    "/v1/models/{name}/rollout/tick",
    response_model=Rollout,
    responses=ERRORS,
    tags=["traffic"],
    summary="Tick the rollout now, as its schedule does: judge the guards, take the next step if it is due, "
    "roll back if a guard tripped",
)
def tick_rollout(name: str) -> Response:
    flush_live()  # this process's own counts first
    ticked = rollout.tick(registry(), name, datetime.now(UTC), rollout_notices)
    registry_changed(name)
    return JSON(ticked.model_dump())


@router.get("/v1/models/{name}/quality", response_model=QualityPolicy, responses=ERRORS, tags=["quality"])
def get_quality_policy(name: str) -> Response:
    return JSON(registry().get_model(name).quality_policy.model_dump())


@router.put(
    "/v1/models/{name}/quality",
    response_model=QualityPolicy,
    responses=ERRORS,
    openapi_extra=openapi_body(QualityPolicy),
    tags=["quality"],
    summary="Set what constraint violations and anomalies do to the model's predictions",
)
async def put_quality_policy(name: str, request: Request) -> Response:
    body = await parse(request, QualityPolicy)
    saved = await blocking(request, set_quality_policy, registry(), name, body, actor(request), note(request))
    registry_changed(name)
    return JSON(saved.model_dump())
