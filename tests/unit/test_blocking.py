"""Where a route's blocking work runs (aimass.api.blocking): off the event loop on a server that
serves requests concurrently, inline in the Lambda's app (one request at a time)."""

from __future__ import annotations

import threading

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from aimass.api.blocking import blocking, serve_one_at_a_time


def app_reporting_threads() -> FastAPI:
    app = FastAPI()

    @app.get("/where")
    async def where(request: Request) -> dict[str, bool]:
        loop_thread = threading.get_ident()
        worker = await blocking(request, threading.get_ident)
        return {"on_the_loop": worker == loop_thread}

    return app


def test_blocking_work_leaves_the_event_loop_of_a_concurrent_server() -> None:
    with TestClient(app_reporting_threads()) as client:
        assert client.get("/where").json() == {"on_the_loop": False}


def test_an_app_serving_one_request_at_a_time_runs_it_inline() -> None:
    app = app_reporting_threads()
    serve_one_at_a_time(app)

    with TestClient(app) as client:
        assert client.get("/where").json() == {"on_the_loop": True}


def test_arguments_reach_the_work_and_its_errors_reach_the_route() -> None:
    app = FastAPI()

    def divide(a: int, *, by: int) -> float:
        return a / by

    @app.get("/divide/{a}/{by}")
    async def route(a: int, by: int, request: Request) -> dict[str, float | str]:
        try:
            return {"result": await blocking(request, divide, a, by=by)}
        except ZeroDivisionError as error:
            return {"error": type(error).__name__}

    with TestClient(app) as client:
        assert client.get("/divide/6/3").json() == {"result": 2.0}
        assert client.get("/divide/6/0").json() == {"error": "ZeroDivisionError"}
