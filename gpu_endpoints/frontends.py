"""Several front-end processes feeding one model process: the server bound by the device, not by one
Python process's CPU (`AIMASS_GPU_FRONTENDS=N`, `--frontends N`).

    main process ── starts ──▶ model process (engine.py): the ModelStore, one batcher per model
         │                          ▲  Unix socket, pickled feeds and outputs (channel.py)
         └─ uvicorn ─▶ N front ends ┘  the same Starlette app as the single-process server

Each front end is `server.create_app` over a `RemoteStore`: it parses HTTP, decodes the payload
(JSON V1/V2, V2 binary, .npy, .npz), checks it against the model's signature, and encodes the answer,
exactly as the single-process server does, and hands only the model call to the model process, whose
batcher joins the requests of every front end. One process per device holds the models: each front
end loading its own copy (`SAGEMAKER_MODEL_SERVER_WORKERS`) multiplies device memory and splits the
batches N ways, which is what dynamic batching is there to avoid.

The front ends share one listening socket (uvicorn's workers: the kernel hands each connection to
one of them); uvicorn starts a front end again when one dies. The model process dying is not
recovered: the front ends answer 503 (`/ping` "failed", invocations `unavailable`) and the main
process exits with status 1 and says why, so SageMaker (or the supervisor of the emulated endpoint)
replaces the container, whose models would have to be loaded again anyway.
A main process killed outright (SIGKILL) leaves orphans that stop by themselves: the model process
within a second, then the front ends, which see its channel close with their parent gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gpu_endpoints.batching import Answer, Batcher
from gpu_endpoints.channel import SOCKET_ENV, Outbox, error_from, messages, pack, private_socket, unpack
from gpu_endpoints.engine import ModelView, State, server_gone
from gpu_endpoints.errors import Unavailable
from gpu_endpoints.models import Model, ModelStore
from gpu_endpoints.process import stop
from gpu_endpoints.settings import Settings

log = logging.getLogger("gpu_endpoints.frontends")

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# How long a front end waits for the model process's socket, and the main process for it to appear.
CONNECT_TIMEOUT_S = 60.0
# The main process's pid, for the front ends it starts.
SERVER_PID_ENV = "AIMASS_GPU_SERVER_PID"
# How often a front end that lost the model process looks again for its server being gone.
ORPHAN_POLL_S = 0.2


class EngineLost(Unavailable):
    code = "unavailable"


class EngineClient:
    """One front end's connection to the model process: many requests at once, answered by id."""

    def __init__(self, socket_path: Path, on_state: Any, on_lost: Any) -> None:
        self.socket_path = socket_path
        self.on_state, self.on_lost = on_state, on_lost
        self.lost: str | None = None
        self.closing = False
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[tuple[Any, ...]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._outbox: Outbox | None = None
        self._reading: asyncio.Task[None] | None = None

    async def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                reader, self._writer = await asyncio.open_unix_connection(str(self.socket_path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        self._outbox = Outbox(self._writer)
        self._reading = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            async for message in messages(reader):
                if message[0] == "state":
                    self.on_state(message[1])
                    continue
                future = self._pending.pop(message[1], None)
                if future is not None and not future.done():
                    future.set_result(message)
        except Exception:
            log.exception("front end %d: the model channel failed", os.getpid())
        finally:
            self.lost = f"the model process closed its channel ({self.socket_path})"
            if not self.closing:
                log.error("front end %d: %s", os.getpid(), self.lost)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(EngineLost(self.lost, retry_after_s=5))
            self._pending.clear()
            if not self.closing:
                self.on_lost(self.lost)

    async def call(self, kind: str, *arguments: Any) -> tuple[Any, ...]:
        if self.lost is not None or self._outbox is None:
            raise EngineLost(self.lost or "the model process is not connected yet", retry_after_s=5)
        ident = next(self._ids)
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        self._outbox.send((kind, ident, *arguments))
        reply = await future
        if reply[0] == "error":
            raise error_from(reply[2])
        return reply

    async def close(self) -> None:
        self.closing = True
        if self._writer is not None:
            self._writer.close()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading


class RemoteBatcher(Batcher):
    """A model's batcher as a front end sees it: `submit` sends the feeds to the model process, whose
    own batcher joins them with every front end's requests. Its counts are the model process's, as of
    the last `RemoteStore.refresh` (what /stats and /metrics read)."""

    def __init__(self, model: RemoteModel, client: EngineClient) -> None:
        # Not Batcher's: no queue, no threads here. The attributes the metrics read, and no more.
        self.model, self.client, self.name = model, client, model.name
        self.config = model.config.batching
        self.requests = self.rows = self.batches = self.failed = 0
        self.batch_sizes = {}  # type: ignore[assignment]
        self._outstanding = 0

    async def submit(self, feeds: Mapping[str, np.ndarray], alone: bool = False) -> Answer:
        _, _, sha256, outputs, requests, rows, queued_ms = await self.client.call(
            "infer", self.name, pack(feeds), alone
        )
        self.model.sha256 = sha256  # the file that answered, should it have been loaded again meanwhile
        return Answer(unpack(outputs), requests, rows, queued_ms)

    def counted(self, stats: dict[str, Any]) -> None:
        self.requests, self.rows = stats["requests"], stats["rows"]
        self.batches, self.failed = stats["batches"], stats["failed_requests"]
        self.batch_sizes = {int(size): count for size, count in stats["batch_sizes"].items()}  # type: ignore[assignment]
        self._outstanding = stats["waiting"]

    async def close(self) -> None:
        return None


class RemoteModel(Model):
    """A model loaded in the model process, as a front end needs it: its signature, no session."""

    def __init__(self, view: ModelView, client: EngineClient) -> None:
        # Not Model's: the session lives in the model process.
        self.name, self.sha256, self.providers = view.name, view.sha256, view.providers
        self.inputs, self.output_names, self.config = view.inputs, view.output_names, view.config
        self.batcher = RemoteBatcher(self, client)


class RemoteStore(ModelStore):
    """The model process's ModelStore, as the routes of server.Server use a ModelStore: what is
    loaded and available comes from the model process's `state` messages; loading, unloading and
    describing are asked of it."""

    def __init__(self, settings: Settings, socket_path: Path) -> None:
        # Not ModelStore's: nothing is discovered or loaded in a front end.
        self.settings = settings
        self.available: dict[str, Path] = {}
        self.loaded: OrderedDict[str, Model] = OrderedDict()
        self.ready = False
        self.startup_error: str | None = None
        self.evictions = 0
        self.budget_mb = None
        self.client = EngineClient(socket_path, self._state, self._lost)
        self._described: dict[str, Any] = {}
        # The main process, which started this front end: named by it, since a front end that starts
        # after it was killed outright has init as its parent by then, and would wait for no one.
        self._server_pid = int(os.environ.get(SERVER_PID_ENV) or os.getppid())

    def _lost(self, reason: str) -> None:
        """The model process is gone: /ping says so at once. The main process stops the front ends
        when it sees it; a front end whose main process is gone too (killed outright) stops itself,
        rather than keep the port answering 503."""
        self.startup_error = reason
        self._stop_if_orphaned()

    def _orphaned(self) -> bool:
        # One front end runs in the server's own process (uvicorn serves a single worker in place):
        # it is the server, and no one else's orphan.
        return self._server_pid != os.getpid() and server_gone(self._server_pid)

    def _stop_if_orphaned(self) -> None:
        if self._orphaned():
            log.error(
                "front end %d: the server (pid %d) is gone too; stopping", os.getpid(), self._server_pid
            )
            os.kill(os.getpid(), signal.SIGTERM)
            return
        # The model process may have stopped for another reason: the server, alive, stops the front
        # ends then. Look again until it does, or is found gone.
        asyncio.get_running_loop().call_later(ORPHAN_POLL_S, self._stop_if_orphaned)

    def _state(self, state: State) -> None:
        self.ready, self.startup_error = state.ready, state.startup_error
        self.available = {name: Path(path) for name, path in state.available.items()}
        before = self.loaded
        self.loaded = OrderedDict(
            (
                name,
                before[name] if name in before and before[name].sha256 == view.sha256 else self._model(view),
            )
            for name, view in state.loaded.items()
        )

    def _model(self, view: ModelView) -> RemoteModel:
        return RemoteModel(view, self.client)

    async def start(self) -> None:
        try:
            await self.client.connect()
        except OSError as error:
            self.startup_error = f"no model process at {self.client.socket_path}: {error}"
            log.error("front end %d: %s", os.getpid(), self.startup_error)
        if self._orphaned():  # started as the server was killed: no one will stop it
            self._stop_if_orphaned()

    def _check(self) -> None:
        if self.client.lost is not None:
            self.startup_error = self.client.lost
            raise EngineLost(self.client.lost, retry_after_s=5)

    async def get(self, name: str) -> Model:
        self._check()
        model = self.loaded.get(name)
        if model is not None:
            return model
        reply = await self.client.call("get", name)
        model = self.loaded[name] = self._model(reply[2])
        return model

    async def load(self, name: str, folder: Path, explicit: bool = False) -> Model:
        self._check()
        reply = await self.client.call("load", name, str(folder))
        model = self.loaded[name] = self._model(reply[2])
        return model

    async def unload(self, name: str) -> None:
        self._check()
        await self.client.call("unload", name)
        self.loaded.pop(name, None)

    async def refresh(self) -> None:
        self._check()
        _, _, described = await self.client.call("describe")
        for name, stats in described["models"].items():
            model = self.loaded.get(name)
            if isinstance(model, RemoteModel):
                batcher = model.batcher
                assert isinstance(batcher, RemoteBatcher)
                batcher.counted(stats["batcher"])
        self._described = described

    async def close(self) -> None:
        await self.client.close()

    def describe(self) -> dict[str, Any]:
        engine = dict(self._described)
        engine_pid = engine.pop("engine_pid", None)
        return {
            **engine,
            "frontends": {"count": self.settings.frontends, "pid": os.getpid(), "engine_pid": engine_pid},
        }

    @property
    def used_mb(self) -> float:
        return float(self._described.get("memory_used_mb", 0.0))


def create_app() -> Any:
    """A front end's app (uvicorn's factory, in each worker process): the single-process server's
    routes over the model process named by AIMASS_GPU_ENGINE_SOCKET."""
    from gpu_endpoints.server import configure_logging
    from gpu_endpoints.server import create_app as server_app

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    socket_path = os.environ.get(SOCKET_ENV)
    if not socket_path:
        raise SystemExit(f"gpu_endpoints.frontends: {SOCKET_ENV} names no model process")
    return server_app(settings, RemoteStore(settings, Path(socket_path)))


def serve(settings: Settings, options: dict[str, Any]) -> None:
    """The model process, then `settings.frontends` front ends on the server's port until stopped;
    SystemExit(1) when the model process dies under them."""
    import uvicorn

    socket_path = private_socket()
    environment = {**os.environ, **settings.as_env(), SOCKET_ENV: str(socket_path)}
    os.environ[SOCKET_ENV] = str(socket_path)
    os.environ[SERVER_PID_ENV] = str(os.getpid())  # the front ends' server
    engine = subprocess.Popen(
        [sys.executable, "-m", "gpu_endpoints.engine", "--socket", str(socket_path)],
        cwd=PACKAGE_ROOT,
        env=environment,
    )
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not socket_path.exists():
        if engine.poll() is not None:
            raise SystemExit(f"gpu_endpoints: the model process exited with {engine.returncode} at start")
        if time.monotonic() > deadline:
            stop(engine)
            raise SystemExit(f"gpu_endpoints: the model process did not listen in {CONNECT_TIMEOUT_S:g} s")
        time.sleep(0.02)
    log.info("model process %d; %d front-end processes", engine.pid, settings.frontends)
    stopping = threading.Event()
    died: list[int] = []

    def watch() -> None:
        code = engine.wait()
        if not stopping.is_set():
            died.append(code)
            log.error("the model process %d exited with %d: stopping the server", engine.pid, code)
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="model process", daemon=True).start()
    try:
        uvicorn.run("gpu_endpoints.frontends:create_app", factory=True, workers=settings.frontends, **options)
    finally:
        stopping.set()
        stop(engine)
        socket_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            socket_path.parent.rmdir()
    if died:
        raise SystemExit(f"gpu_endpoints: the model process exited with {died[0]}; the server stopped")
