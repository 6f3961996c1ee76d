"""Where a route's blocking work runs (the registry, S3, ONNX Runtime, an endpoint's answer): on the
thread pool when the app serves requests concurrently (the local server), so one slow call never
holds the event loop and the requests beside it; inline when it serves one request at a time (the
Lambda, behind Mangum), where a thread hop would only add to each request's latency."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")


def serve_one_at_a_time(app: FastAPI) -> None:
    """Mark `app` as serving one request at a time: its blocking work runs inline."""
    app.state.one_at_a_time = True


async def blocking(request: Request, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`work(*args, **kwargs)`, off the event loop unless the app serves one request at a time."""
    if getattr(request.app.state, "one_at_a_time", False):
        return work(*args, **kwargs)
    return await run_in_threadpool(work, *args, **kwargs)


async def serving_work(
    request: Request, local: bool, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """A prediction's work: inline when it needs nothing outside this process (`local`: the model
    store holds all of it, aimass.serving.store.ModelStore.local), since a thread hop costs more
    than such a request's whole run and 64 threads contending for the GIL served less than one
    loop (bench/RESULTS.md, "under load"); else as `blocking` work."""
    if local:
        return work(*args, **kwargs)
    return await blocking(request, work, *args, **kwargs)
