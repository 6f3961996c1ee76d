"""The inference server: SageMaker's container contract over ONNX Runtime, with dynamic batching.

    python -m gpu_endpoints.server --model-dir DIR --port 8080

Routes (README.md has the contract in full):
- `GET /ping`: 200 once the models are loaded, 503 before (and with no model, unless
  `SAGEMAKER_MULTI_MODEL=true`).
- `POST /invocations`: predictions; the model is `X-Amzn-SageMaker-Target-Model`, or the only one.
- SageMaker's multi-model API: `GET|POST /models`, `GET|DELETE /models/{name}`,
  `POST /models/{name}/invoke`.
- `GET /metrics`: Prometheus metrics (metrics.py; not part of SageMaker's contract either).
- `GET /stats`: what is loaded, where it runs, and how its requests were batched (not part of
  SageMaker's contract; the tests and benchmarks read it).
- `POST /endpoints/{name}/invocations`, only with `AIMASS_GPU_RUNTIME_ENDPOINT`: SageMaker Runtime's
  InvokeEndpoint in front of `/invocations` (runtime.py), for the local stack's emulated endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aimass.protocol import binary
from aimass.protocol.asgi import AnswerUnexpected, Receive, Scope, Send
from aimass.protocol.errors import (
    AimassError,
    BadJson,
    BadRequest,
    PayloadTooLarge,
    ValidationFailed,
    field_error,
)
from gpu_endpoints import payloads, runtime
from gpu_endpoints.errors import ModelNotFound, Unavailable
from gpu_endpoints.metrics import CONTENT_TYPE, ServerMetrics
from gpu_endpoints.models import TARGET_MODEL, ModelStore, target_name
from gpu_endpoints.settings import Settings, SettingsError

log = logging.getLogger("gpu_endpoints")

INFERENCE_ID = "X-Amzn-SageMaker-Inference-Id"
CUSTOM_ATTRIBUTES = payloads.CUSTOM_ATTRIBUTES
PRODUCTION_VARIANT = "X-Amzn-Invoked-Production-Variant"
# How a request was served (documented in README.md).
MODEL_HEADER = "X-Aimass-Model"
BATCH_SIZE = "X-Aimass-Batch-Size"
BATCH_ROWS = "X-Aimass-Batch-Rows"
QUEUE_MS = "X-Aimass-Queue-Ms"
# The custom attribute each answer adds: the sha256 of the model file that answered.
MODEL_SHA256 = "model-sha256"
# The request headers an invocation reads, by the lower-case names ASGI gives them.
TARGET_KEY, ATTRIBUTES_KEY = TARGET_MODEL.lower(), CUSTOM_ATTRIBUTES.lower()
INFERENCE_ID_KEY, BINARY_KEY = INFERENCE_ID.lower(), binary.HEADER.lower()
ECHOED = ((INFERENCE_ID, INFERENCE_ID_KEY), (CUSTOM_ATTRIBUTES, ATTRIBUTES_KEY))
JSON = payloads.JSON


@dataclass(frozen=True)
class Reply:
    """An invocation's answer, as either way in writes it (Starlette's routes, or the direct path)."""

    status: int
    content: bytes
    media: str
    headers: dict[str, str]

    @classmethod
    def failed(cls, error: AimassError, headers: Mapping[str, str] | None = None) -> Reply:
        """The server's answer to an error: its JSON body, status and headers over `headers`."""
        return cls(error.status, payloads.dump_json(error.body()), JSON, {**(headers or {}), **error.headers})

    def response(self) -> Response:
        return Response(self.content, status_code=self.status, media_type=self.media, headers=self.headers)


def error_response(error: AimassError) -> Response:
    return Reply.failed(error).response()


def _echo(headers: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """The SageMaker headers an answer carries back: the inference id and custom attributes as given,
    and the production variant when the environment names it."""
    echoed = {}
    for name, key in ECHOED:
        value = headers.get(key)
        if value is not None:
            echoed[name] = value
    if settings.production_variant:
        echoed[PRODUCTION_VARIANT] = settings.production_variant
    return echoed


async def read_body(declared: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The request's body, refused past `limit` bytes: by its Content-Length, or as it arrives."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if size > limit:
            raise PayloadTooLarge(f"the body is {size:,} bytes; at most {limit:,} are accepted")
    parts: list[bytes] = []
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"the body is over {limit:,} bytes, the most accepted")
        parts.append(chunk)
    return b"".join(parts)


async def asgi_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """A request's body as ASGI's server hands it over; ClientDisconnect when the client is gone."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class Server:
    """The routes, over one ModelStore."""

    def __init__(self, settings: Settings, store: ModelStore | None = None) -> None:
        self.settings = settings
        self.store = store or ModelStore(settings)
        self.metrics = ServerMetrics(self.store)
        self._start: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Models load in worker threads while /ping answers 503.
        self._start = asyncio.create_task(self.store.start())
        try:
            yield
        finally:
            self._start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._start
            await self.store.close()

    async def ping(self, request: Request) -> Response:
        store = self.store
        if store.startup_error:
            return JSONResponse({"status": "failed", "message": store.startup_error}, status_code=503)
        if not store.ready:
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "1"})
        if not store.known() and not self.settings.multi_model:
            message = f"no model in {self.settings.model_dir}; load one with POST /models"
            return JSONResponse({"status": "no model", "message": message}, status_code=503)
        return JSONResponse({"status": "healthy", "models": sorted(store.loaded)})

    async def invocations(self, request: Request) -> Response:
        return (await self.invocation(request.headers, request.stream())).response()

    async def invoke(self, request: Request) -> Response:
        """SageMaker's multi-model Invoke Model API: POST /models/{name}/invoke."""
        return (
            await self.invocation(request.headers, request.stream(), request.path_params["name"])
        ).response()

    async def invocation(
        self, headers: Mapping[str, str], body: AsyncIterator[bytes], name: str | None = None
    ) -> Reply:
        """One invocation, from its headers (read by lower-case name) and its body's chunks (read once
        the headers are found good, up to the body limit): the model `name`, else the one
        X-Amzn-SageMaker-Target-Model names, else the only one."""
        started = time.perf_counter()
        echoed = _echo(headers, self.settings)
        try:
            if name is None:
                name = self._target(headers)
            reply = await self._invoke(headers, body, name, echoed)
        except AimassError as error:
            reply = self._failed(headers, error, echoed)
        # A name the endpoint does not serve is whatever its caller wrote: counted without it, so that
        # callers cannot grow the metrics without bound.
        model = name if name is not None and name in self.store.known() else ""
        self.metrics.answered(model, reply.status, time.perf_counter() - started)
        return reply

    def _target(self, headers: Mapping[str, str]) -> str:
        target = headers.get(TARGET_KEY)
        name = target_name(target) if target else self.store.only()
        if name is not None:
            return name
        known = sorted(self.store.known())
        if not known:
            raise Unavailable("no model is loaded yet", retry_after_s=5)
        raise BadRequest(
            f"this endpoint serves {len(known)} models: name one with {TARGET_MODEL}",
            [field_error(["headers", TARGET_MODEL], f"one of {', '.join(known)}", "missing")],
        )

    async def _invoke(
        self,
        headers: Mapping[str, str],
        body: AsyncIterator[bytes],
        name: str,
        echoed: dict[str, str],
    ) -> Reply:
        attributes = payloads.custom_attributes(headers.get(ATTRIBUTES_KEY))
        content = await read_body(headers.get("content-length"), body, self.settings.max_body_bytes)
        model = await self.store.get(name)
        # No await between here and submit: the model cannot be unloaded in between.
        decoded = payloads.decode(
            content, headers.get("content-type"), model, attributes, headers.get(BINARY_KEY)
        )
        media = payloads.negotiate(headers.get("accept"), decoded, model)
        rows = next(iter(decoded.feeds.values())).shape[0] if decoded.feeds else 0
        answer = await model.batcher.submit(decoded.feeds, alone=not attributes.batching)
        content, extra = payloads.answer(answer.outputs, decoded, media, model, rows)
        given = echoed.get(CUSTOM_ATTRIBUTES)
        echoed |= extra | {
            CUSTOM_ATTRIBUTES: f"{given}; {MODEL_SHA256}={model.sha256}"
            if given
            else f"{MODEL_SHA256}={model.sha256}",
            MODEL_HEADER: model.name,
            BATCH_SIZE: str(answer.batch_requests),
            BATCH_ROWS: str(answer.batch_rows),
            QUEUE_MS: f"{answer.queued_ms:.3f}",
        }
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "invocation %s: model %s, %d rows, batch of %d requests",
                echoed.get(INFERENCE_ID, "-"),
                model.name,
                rows,
                answer.batch_requests,
            )
        return Reply(200, content, media, echoed)

    def _failed(self, headers: Mapping[str, str], error: AimassError, echoed: dict[str, str]) -> Reply:
        level = logging.WARNING if error.status >= 500 else logging.INFO
        log.log(
            level,
            "invocation %s failed with %d %s: %s",
            headers.get(INFERENCE_ID_KEY, "-"),
            error.status,
            error.code,
            error.message,
        )
        return Reply.failed(error, echoed)

    async def invoke_endpoint(self, request: Request) -> Response:
        """SageMaker Runtime's InvokeEndpoint, for the emulated endpoint (runtime.py)."""
        endpoint = request.path_params["endpoint"]
        if endpoint != self.settings.runtime_endpoint:
            return runtime.unknown_endpoint(endpoint)
        variant = self.settings.production_variant or runtime.DEFAULT_VARIANT
        answer = await self.invocations(request)
        if answer.status_code >= 400:
            return runtime.model_error(answer, variant, endpoint)
        answer.headers[PRODUCTION_VARIANT] = variant
        return answer

    # SageMaker's multi-model API.

    async def list_models(self, request: Request) -> Response:
        names = sorted(self.store.loaded)
        try:
            size = int(request.query_params.get("page_size", len(names) or 1))
            start = int(request.query_params.get("next_page_token", 0))
        except ValueError:
            raise BadRequest("page_size and next_page_token must be integers") from None
        page = names[start : start + max(1, size)]
        body: dict[str, Any] = {"models": [self._model_entry(name) for name in page]}
        if start + len(page) < len(names):
            body["nextPageToken"] = str(start + len(page))
        return JSONResponse(body)

    def _model_entry(self, name: str) -> dict[str, str]:
        return {"modelName": name, "modelUrl": str(self.store.available.get(name, ""))}

    async def load_model(self, request: Request) -> Response:
        try:
            payload = await request.json()
        except ValueError:
            raise BadJson("the body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise ValidationFailed('expected {"model_name": ..., "url": ...}')
        errors = [
            field_error(["body", key], "expected a non-empty string", "missing")
            for key in ("model_name", "url")
            if not isinstance(payload.get(key), str) or not payload[key]
        ]
        if errors:
            raise ValidationFailed('expected {"model_name": ..., "url": ...}', errors)
        name, url = payload["model_name"], Path(payload["url"])
        if not url.exists():
            raise ValidationFailed(
                "no such model path", [field_error(["body", "url"], f"{url} does not exist", "not_found")]
            )
        model = await self.store.load(name, url, explicit=True)
        return JSONResponse({"message": f"model {name!r} loaded", "providers": model.providers})

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.store.loaded:
            raise ModelNotFound(f"model {name!r} is not loaded")
        return JSONResponse(self._model_entry(name))

    async def unload_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        await self.store.unload(name)
        return JSONResponse({"message": f"model {name!r} unloaded"})

    async def prometheus_metrics(self, request: Request) -> Response:
        await self.store.refresh()
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    async def stats(self, request: Request) -> Response:
        await self.store.refresh()
        return JSONResponse(
            {
                "onnxruntime": ort.__version__,
                "available_providers": ort.get_available_providers(),
                **self.store.describe(),
            }
        )


async def _server_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, AimassError)
    return error_response(error)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    body = {
        "error": {"code": codes.get(error.status_code, "http_error"), "message": error.detail, "details": []}
    }
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


async def _unexpected(request: Request, error: Exception) -> Response:
    return _answer_unexpected(request.scope, error)


def _answer_unexpected(scope: Any, error: Exception) -> Response:
    log.error("unexpected error on %s %s", scope.get("method"), scope.get("path"), exc_info=error)
    return error_response(AimassError("an unexpected error occurred; see the server's log"))


class InferenceApp(Starlette):
    """The server's Starlette app, with its hot route taken straight from ASGI: `POST /invocations`
    is answered by Server.invocation, as its Starlette route would answer it, without the routing,
    middleware, request and response objects around it, which cost a fifth to a quarter of the
    server's CPU per one-image request (gpu_endpoints/README.md, bench/RESULTS.md). Every other
    request, and the lifespan, go through Starlette."""

    def __init__(self, server: Server, **options: Any) -> None:
        super().__init__(**options)
        self.server = server
        self.state.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/invocations" and scope["method"] == "POST":
            await self.invocations(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            name = key.decode("latin-1")
            if name not in headers:  # the first of a repeated header, as Starlette's Headers.get reads it
                headers[name] = value.decode("latin-1")
        started = False
        try:
            reply = await self.server.invocation(headers, asgi_chunks(receive))
            raw = [
                (b"content-type", reply.media.encode("latin-1")),
                (b"content-length", str(len(reply.content)).encode("latin-1")),
            ]
            raw += [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in reply.headers.items()
            ]
            started = True
            await send({"type": "http.response.start", "status": reply.status, "headers": raw})
            await send({"type": "http.response.body", "body": reply.content})
        except ClientDisconnect:
            return  # no one is left to answer
        except Exception as error:
            if started:
                raise
            await _answer_unexpected(scope, error)(scope, receive, send)


def create_app(settings: Settings | None = None, store: ModelStore | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    server = Server(settings, store)
    routes = [
        Route("/ping", server.ping, methods=["GET"]),
        Route("/invocations", server.invocations, methods=["POST"]),
        Route("/models", server.list_models, methods=["GET"]),
        Route("/models", server.load_model, methods=["POST"]),
        Route("/models/{name}", server.get_model, methods=["GET"]),
        Route("/models/{name}", server.unload_model, methods=["DELETE"]),
        Route("/models/{name}/invoke", server.invoke, methods=["POST"]),
        Route("/stats", server.stats, methods=["GET"]),
        Route("/metrics", server.prometheus_metrics, methods=["GET"]),
    ]
    if settings.runtime_endpoint:
        routes.append(Route("/endpoints/{endpoint}/invocations", server.invoke_endpoint, methods=["POST"]))
    app = InferenceApp(
        server,
        routes=routes,
        lifespan=server.lifespan,
        exception_handlers={AimassError: _server_error, HTTPException: _http_error, Exception: _unexpected},
    )
    # Outermost: an exception no handler took is answered on a connection that stays open
    app.add_middleware(AnswerUnexpected, answer=_answer_unexpected)
    return app


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gpu_endpoints.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model-dir", type=Path, help="the models (default: AIMASS_GPU_MODEL_DIR or /opt/ml/model)"
    )
    parser.add_argument("--host", help="default: AIMASS_GPU_HOST or 0.0.0.0")
    parser.add_argument("--port", type=int, help="default: SAGEMAKER_BIND_TO_PORT or 8080")
    parser.add_argument(
        "--workers",
        type=int,
        help="processes, each with its own models; default: SAGEMAKER_MODEL_SERVER_WORKERS or 1",
    )
    parser.add_argument(
        "--frontends",
        type=int,
        help="front-end processes sharing one model process; default: AIMASS_GPU_FRONTENDS or 0 (none)",
    )
    parser.add_argument("--log-level", help="default: AIMASS_GPU_LOG_LEVEL or info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    overrides = {
        key: value
        for key, value in {
            "model_dir": args.model_dir,
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
            "frontends": args.frontends,
            "log_level": args.log_level.lower() if args.log_level else None,
        }.items()
        if value is not None
    }
    try:
        settings = Settings.from_env(**overrides)
        configure_logging(settings.log_level)
        app = create_app(settings) if settings.workers == 1 and not settings.frontends else None
    except SettingsError as error:
        raise SystemExit(f"gpu_endpoints: {error}") from None
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "timeout_keep_alive": 75,
        "log_config": None,
    }
    if app is not None:
        uvicorn.run(app, **options)
        return
    if settings.frontends:
        from gpu_endpoints import frontends

        os.environ.update(settings.as_env())
        frontends.serve(settings, options)
        return
    # Each worker process loads its own copy of every model and batches only its own requests:
    # one process (the default) is what a GPU wants.
    log.warning("%d worker processes: each loads every model and batches on its own", settings.workers)
    os.environ.update(settings.as_env())
    uvicorn.run("gpu_endpoints.server:create_app", factory=True, workers=settings.workers, **options)


if __name__ == "__main__":
    main()
