"""The layer both servers put outermost (aimass.protocol.asgi.AnswerUnexpected), under uvicorn as
they run: an exception no handler took is answered with the server's 500, and the keep-alive
connection serves the next request. The Lambda API's own real fault is in test_bad_input.py; here
the inference server's app, whose error handlers are its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from gpu_endpoints.process import free_port
from gpu_endpoints.server import create_app
from gpu_endpoints.settings import Settings


@pytest.fixture
def served(tmp_path: Path, demos: dict[str, Any]) -> Iterator[str]:
    import uvicorn

    (tmp_path / "model.onnx").write_bytes(demos["breast-cancer"].model)
    app = create_app(
        Settings.from_env({"AIMASS_GPU_MODEL_DIR": str(tmp_path), "AIMASS_GPU_INTRA_OP_THREADS": "1"})
    )

    async def failing(request: Any) -> Any:
        raise RuntimeError("a fault no handler expects")

    # The one route added here: a fault the server's own routes are tested not to have.
    app.router.routes.append(Route("/fail", failing, methods=["GET"]))
    # And the same fault on the direct path (POST /invocations), for the model named "fault".
    store = app.server.store
    get = store.get

    async def faulty_get(name: str) -> Any:
        if name == "fault":
            raise RuntimeError("a fault no handler expects")
        return await get(name)

    store.get = faulty_get  # type: ignore[method-assign]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    url = f"http://127.0.0.1:{server.config.port}"
    while not server.started or httpx.get(f"{url}/ping").status_code != 200:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not load its model"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.parametrize("way", ["a Starlette route", "the direct path"])
def test_the_inference_server_answers_an_unexpected_error_and_keeps_the_connection(
    served: str, way: str
) -> None:
    with httpx.Client(base_url=served) as client:
        if way == "the direct path":
            broken = client.post(
                "/invocations", json=[[0.0] * 30], headers={"X-Amzn-SageMaker-Target-Model": "fault"}
            )
        else:
            broken = client.get("/fail")
        assert broken.status_code == 500 and broken.json()["error"]["code"] == "internal_error"
        after = client.get("/ping")
        assert after.status_code == 200
        port = after.extensions["network_stream"].get_extra_info("client_addr")[1]
        assert port == broken.extensions["network_stream"].get_extra_info("client_addr")[1]
