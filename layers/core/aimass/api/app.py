"""The FastAPI apps: `online` (predictions), `registry` (administration), `metrics` (Prometheus), or
all three (the local server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI

from aimass import __version__
from aimass.api.bodies import add_body_schemas
from aimass.api.guard import RequestGuard
from aimass.api.responses import answer_unexpected, install_error_handlers
from aimass.api.verbs import CustomMethodTakesPost
from aimass.config import settings
from aimass.protocol.asgi import AnswerUnexpected


def create_app(parts: Iterable[str] = ("online", "registry", "metrics")) -> FastAPI:
    """`metrics`: the local server's Prometheus metrics (GET /metrics); the Lambda apps leave it out,
    so that prometheus-client is never imported there."""
    parts = set(parts)
    app = FastAPI(
        title="aimass",
        version=__version__,
        description="Versioned ONNX models behind V1 (:predict) and Open Inference Protocol V2 APIs.",
    )
    if "online" in parts:
        from aimass.api import feedback, online

        app.include_router(online.router)
        app.include_router(feedback.router)
    if "registry" in parts:
        from aimass.api import monitoring, pipeline, registry, release, subscriptions

        app.include_router(registry.router)
        app.include_router(release.router)
        app.include_router(pipeline.router)
        app.include_router(monitoring.router)
        app.include_router(subscriptions.router)
    if "metrics" in parts:
        from aimass.api import metrics
        from aimass.serving.prometheus import observe

        app.include_router(metrics.router)
        observe()  # counted from the app's start, not from the first scrape
    # First: a GET on `x:predict` would otherwise match `GET /v1/models/{name}` with name "x:predict".
    app.router.routes.insert(0, CustomMethodTakesPost())
    document = app.openapi
    app.openapi = lambda: add_body_schemas(document())  # type: ignore[method-assign]
    install_error_handlers(app)
    s = settings()
    app.add_middleware(
        RequestGuard, max_body_bytes=s.max_payload_bytes, api_key=s.api_key, admin_key=s.admin_key
    )
    app.add_middleware(AnswerUnexpected, answer=answer_unexpected)  # added last: outermost
    return app


# Matches no route: its 404 walks every route of the app.
UNROUTED_PATH = "/.aimass-init-routing"


def build_routes(app: FastAPI) -> None:
    """Have FastAPI build its routing now rather than on the first request. It builds each route's
    matching context lazily, the first time a request is routed past it: 30-60 ms of the first request
    of a new Lambda environment, and of the first request after a SnapStart restore unless the
    snapshot holds it. One request that matches no route builds them all; it reads nothing, and its
    404 is discarded."""
    route_once(app, UNROUTED_PATH)


def route_once(app: FastAPI, path: str) -> None:
    """One GET of `path` through the ASGI app (its middleware, routing and response), the answer
    discarded; for paths that read and write nothing."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("localhost", 443),
        "client": ("127.0.0.1", 0),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(app(scope, receive, send))
    finally:
        loop.close()
