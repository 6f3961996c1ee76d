"""Online predictions: V1 (`:predict`, `:explain`) and the Open Inference Protocol V2, plus health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from aimass import __version__, aws
from aimass.api import predictions
from aimass.api.blocking import blocking, serving_work
from aimass.api.bodies import openapi_body, parse, payload
from aimass.api.predictions import detail_of, path_version
from aimass.api.responses import JSON
from aimass.config import settings
from aimass.contracts.api import Alive, ErrorResponse, Health
from aimass.contracts.explain import ExplainRequest, ExplainResponse
from aimass.contracts.quality import QualityCheckRequest, QualityReport
from aimass.contracts.rules import RulesEvaluationRequest, RulesEvaluationResponse
from aimass.contracts.v1 import PredictRequest, PredictResponse
from aimass.contracts.v2 import InferRequest, InferResponse, V2ModelMetadata, V2Ready, V2ServerReady
from aimass.gateways.transient import RETRY_AFTER_S
from aimass.protocol import binary, v1, v2
from aimass.protocol.tensors import V2_DATATYPES
from aimass.registration import serves
from aimass.serving import traffic
from aimass.serving.explanations import Budget, explain_instances
from aimass.serving.pipeline import DETAIL_STEPS
from aimass.wiring import breakers, registry, serving

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 409, 413, 422)
}

router = APIRouter()


@router.get("/health", response_model=Health, tags=["health"])
async def health() -> Response:
    return JSON({"status": "ok", "version": __version__})


@router.get("/", response_model=Alive, tags=["health"], summary="KServe V1's liveness check")
async def alive() -> Response:
    return JSON({"status": "alive"})


# --- V1 ------------------------------------------------------------------------------------------


# The prediction routes read their path parameters from the request themselves and declare them for
# the OpenAPI document: FastAPI's validation of `name: str` (and `version: int`) cost 35 µs a request,
# a tenth of the warm handler (bench/RESULTS.md, issue 19).
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "title": "Name"}}
VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "title": "Version"},
}
ALIAS = {"name": "alias", "in": "path", "required": True, "schema": {"type": "string", "title": "Alias"}}
DETAIL = {
    "name": "detail",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": [DETAIL_STEPS]},
    "description": "`steps`: a graph version's answer shows each step's predictions under `steps` "
    "(docs/composition.md)",
}


def _path_version(request: Request) -> int:
    return path_version(request.path_params["version"])


def _route(model: type[Any], response: type[Any], *parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "response_model": response,
        "openapi_extra": {**openapi_body(model), "parameters": list(parameters)},
        "responses": ERRORS,
    }


V1_ROUTE: dict[str, Any] = {**_route(PredictRequest, PredictResponse, NAME, DETAIL), "tags": ["v1"]}
V1_VERSION_ROUTE: dict[str, Any] = {
    **_route(PredictRequest, PredictResponse, NAME, VERSION, DETAIL),
    "tags": ["v1"],
}
V1_ALIAS_ROUTE: dict[str, Any] = {
    **_route(PredictRequest, PredictResponse, NAME, ALIAS, DETAIL),
    "tags": ["v1"],
}


def _detail(request: Request) -> bool:
    return detail_of(request.query_params.get("detail"))


async def _predict(
    request: Request, name: str, version: int | None = None, alias: str | None = None
) -> Response:
    detail = _detail(request)
    instances = v1.instances_of(await payload(request))
    local = serving().store.local(name, version, alias)
    routing_key = request.headers.get(traffic.HEADER)
    answer = await serving_work(
        request, local, predictions.predict, name, instances, version, alias, routing_key, detail
    )
    return JSON(answer)


@router.post(
    "/v1/models/{name}:predict", summary="Predict with the champion (else the latest) version", **V1_ROUTE
)
async def predict(request: Request) -> Response:
    return await _predict(request, request.path_params["name"])


@router.post(
    "/v1/models/{name}/versions/{version}:predict", summary="Predict with one version", **V1_VERSION_ROUTE
)
async def predict_version(request: Request) -> Response:
    return await _predict(request, request.path_params["name"], version=_path_version(request))


@router.post(
    "/v1/models/{name}/labels/{alias}:predict",
    summary="Predict with the version an alias points at",
    **V1_ALIAS_ROUTE,
)
async def predict_alias(request: Request) -> Response:
    return await _predict(request, request.path_params["name"], alias=request.path_params["alias"])


@router.post(
    "/v1/models/{name}/rules:evaluate",
    response_model=RulesEvaluationResponse,
    openapi_extra=openapi_body(RulesEvaluationRequest),
    responses=ERRORS,
    tags=["rules"],
    summary="Which rules fire on given instances (dry run, nothing is saved)",
)
async def evaluate_rules(name: str, request: Request) -> Response:
    body = await parse(request, RulesEvaluationRequest)
    return JSON(await blocking(request, serving().evaluate_rules, name, body))


@router.post(
    "/v1/models/{name}/quality:check",
    response_model=QualityReport,
    openapi_extra=openapi_body(QualityCheckRequest),
    responses=ERRORS,
    tags=["quality"],
    summary="A data-quality report of a batch against the baseline: violations, completeness, drift",
)
async def check_quality(name: str, request: Request) -> Response:
    body = await parse(request, QualityCheckRequest)
    return JSON(await blocking(request, serving().check_quality, name, body.instances))


EXPLAIN_ROUTE: dict[str, Any] = {**_route(ExplainRequest, ExplainResponse, NAME), "tags": ["v1"]}
EXPLAIN_VERSION_ROUTE: dict[str, Any] = {
    **_route(ExplainRequest, ExplainResponse, NAME, VERSION),
    "tags": ["v1"],
}
EXPLAIN_ALIAS_ROUTE: dict[str, Any] = {**_route(ExplainRequest, ExplainResponse, NAME, ALIAS), "tags": ["v1"]}


def _explanation(body: ExplainRequest, name: str, version: int | None, alias: str | None) -> dict[str, Any]:
    model = serving().store.load(name, version, alias)
    budget = Budget(settings().explain_max_rows, serving().max_instances)
    return explain_instances(serving().store, model, body.instances, body.parameters, budget)


async def _explain(request: Request, version: int | None = None, alias: str | None = None) -> Response:
    body = await parse(request, ExplainRequest)
    # Thousands of model rows: off the event loop, whatever runs the version (docs/explain.md).
    return JSON(await blocking(request, _explanation, body, request.path_params["name"], version, alias))


@router.post(
    "/v1/models/{name}:explain",
    summary="Kernel SHAP attributions of the champion (else the latest) version's predictions",
    **EXPLAIN_ROUTE,
)
async def explain(request: Request) -> Response:
    return await _explain(request)


@router.post(
    "/v1/models/{name}/versions/{version}:explain",
    summary="Kernel SHAP attributions of one version's predictions",
    **EXPLAIN_VERSION_ROUTE,
)
async def explain_version(request: Request) -> Response:
    return await _explain(request, version=_path_version(request))


@router.post(
    "/v1/models/{name}/labels/{alias}:explain",
    summary="Kernel SHAP attributions of the predictions of the version an alias points at",
    **EXPLAIN_ALIAS_ROUTE,
)
async def explain_alias(request: Request) -> Response:
    return await _explain(request, alias=request.path_params["alias"])


# --- Open Inference Protocol V2 --------------------------------------------------------------------


@router.get("/v2", tags=["v2"])
async def server_metadata() -> Response:
    return JSON({"name": "aimass", "version": __version__, "extensions": ["binary_tensor_data"]})


@router.get("/v2/health/live", tags=["v2"])
async def live() -> Response:
    return JSON({"live": True})


@router.get(
    "/v2/health/ready",
    response_model=V2ServerReady,
    responses={503: {"model": V2ServerReady}},
    tags=["v2"],
    summary="Whether the server can serve: not while AWS (the registry, the artifacts) cannot be reached",
)
def ready() -> Response:
    # A plain def: off Lambda, readiness may ask AWS (aws.unreachable), which blocks.
    reason = aws.unreachable()
    if reason is None:
        return JSON({"ready": True})
    body = {"ready": False, "reason": f"AWS cannot be reached: {reason}"}
    return JSON(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def _v2_metadata(name: str, version: int | None) -> dict[str, Any]:
    model = serving().store.load(name, version)
    versions = [str(v.version) for v in registry().list_versions(name)]
    signature = model.version.signature

    def tensors(specs: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "datatype": V2_DATATYPES[s.dtype],
                "shape": [-1 if d is None else d for d in s.shape],
            }
            for s in specs
        ]

    return {
        "name": name,
        "versions": versions,
        # Triton's name for a model that runs other models
        "platform": "ensemble" if model.version.graph is not None else "onnxruntime_onnx",
        "inputs": tensors(signature.inputs),
        "outputs": tensors(signature.outputs),
    }


@router.get("/v2/models/{name}", response_model=V2ModelMetadata, responses=ERRORS, tags=["v2"])
def model_metadata(name: str) -> Response:
    return JSON(_v2_metadata(name, None))


@router.get(
    "/v2/models/{name}/versions/{version}", response_model=V2ModelMetadata, responses=ERRORS, tags=["v2"]
)
def model_version_metadata(name: str, version: int) -> Response:
    return JSON(_v2_metadata(name, version))


@router.get("/v2/models/{name}/ready", response_model=V2Ready, responses=ERRORS, tags=["v2"])
def model_ready(name: str) -> Response:
    return JSON({"name": name, "ready": _ready(name, None)})


@router.get(
    "/v2/models/{name}/versions/{version}/ready", response_model=V2Ready, responses=ERRORS, tags=["v2"]
)
def model_version_ready(name: str, version: int) -> Response:
    return JSON({"name": name, "ready": _ready(name, version)})


def _ready(name: str, version: int | None) -> bool:
    """The version can be run here, and the endpoint that serves it, if one does, is up."""
    return serves(serving().store.load(name, version).version, breakers().available, serving().store.resolve)


V2_INFER_ROUTE: dict[str, Any] = {**_route(InferRequest, InferResponse, NAME), "tags": ["v2"]}
V2_VERSION_INFER_ROUTE: dict[str, Any] = {
    **_route(InferRequest, InferResponse, NAME, VERSION),
    "tags": ["v2"],
}


async def _infer(request: Request, name: str, version: int | None = None) -> Response:
    length = request.headers.get(binary.HEADER)
    if length is None:
        body = v2.parse(await payload(request))
    else:  # the binary tensor data extension: a JSON header, then raw tensor data
        body = predictions.binary_request(await request.body(), length)
    local = serving().store.local(name, version)
    routing_key = request.headers.get(traffic.HEADER)
    answer = await serving_work(request, local, predictions.infer, name, body, version, routing_key)
    encoded = predictions.binary_answer(answer, body)
    if encoded is None:
        return JSON(answer)
    content, headers = encoded
    return Response(content, media_type=binary.OCTET, headers=headers)


@router.post("/v2/models/{name}/infer", **V2_INFER_ROUTE)
async def infer(request: Request) -> Response:
    return await _infer(request, request.path_params["name"])


@router.post("/v2/models/{name}/versions/{version}/infer", **V2_VERSION_INFER_ROUTE)
async def infer_version(request: Request) -> Response:
    return await _infer(request, request.path_params["name"], _path_version(request))
