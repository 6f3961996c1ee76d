"""The model process: one per device, it holds the models and their batchers, and nothing else.

    python -m gpu_endpoints.engine --socket PATH      (started by the server: frontends.py)

The front ends (frontends.py) do the HTTP, the payloads' decoding and the answers' encoding, each
in its own process; they send this process the decoded feeds over a Unix socket (channel.py), and
it batches the requests of all of them together, as the single-process server batches its own: one
batcher per model, one ModelStore, on the device `AIMASS_GPU_DEVICE_ID`. Its event loop does only
the batching and the channel, so the device is fed at the rate the front ends decode.

What a front end asks, and what it is answered (`id` pairs them up):

| request | answer |
| --- | --- |
| `("infer", id, model, feeds, alone)` | `("answer", id, sha256, outputs, requests, rows, queued ms)` |
| `("get", id, model)`, `("load", id, model, path)` | `("model", id, ModelView)` (loaded now if it was not) |
| `("unload", id, model)` | `("done", id)` |
| `("describe", id)` | `("described", id, ModelStore.describe())` |

Feeds and outputs travel packed (channel.pack). Any of them may be answered `("error", id, fields)`
(channel.error_fields). The process also sends every front end `("state", State)` when it connects
and whenever the models loaded change, so a front end knows what the endpoint serves without asking
on each request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimass.protocol.errors import AimassError
from aimass.protocol.tensors import Spec
from gpu_endpoints.batching import Answer
from gpu_endpoints.channel import Outbox, error_fields, messages, pack, unpack
from gpu_endpoints.models import Model, ModelConfig, ModelStore
from gpu_endpoints.settings import Settings, SettingsError

log = logging.getLogger("gpu_endpoints.engine")

PARENT_POLL_S = 1.0


@dataclass(frozen=True)
class ModelView:
    """What a front end needs of a loaded model to decode its requests and encode its answers."""

    name: str
    sha256: str
    providers: list[str]
    inputs: list[Spec]
    output_names: list[str]
    config: ModelConfig

    @classmethod
    def of(cls, model: Model) -> ModelView:
        return cls(model.name, model.sha256, model.providers, model.inputs, model.output_names, model.config)


@dataclass(frozen=True)
class State:
    """What /ping and the choice of a request's model read: the store as the front ends see it."""

    ready: bool
    startup_error: str | None
    available: dict[str, str]
    loaded: dict[str, ModelView]


UNEXPECTED = "an unexpected error occurred; see the server's log"


class Engine:
    """The ModelStore behind a Unix socket, serving any number of front-end connections."""

    def __init__(self, settings: Settings) -> None:
        self.store = ModelStore(settings)
        self._outboxes: set[Outbox] = set()
        self._state: State | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def state(self) -> State:
        store = self.store
        views = self._state.loaded if self._state is not None else {}
        return State(
            store.ready,
            store.startup_error,
            {name: str(path) for name, path in store.available.items()},
            # A view is made once per load: the sha256 and the specs do not change while it is loaded.
            {
                name: views[name]
                if name in views and views[name].sha256 == model.sha256
                else ModelView.of(model)
                for name, model in store.loaded.items()
            },
        )

    def _changed(self) -> None:
        """Tell every front end, when what it sees of the store is no longer what it is."""
        store, last = self.store, self._state
        if (
            last is not None
            and last.ready == store.ready
            and last.startup_error == store.startup_error
            and last.loaded.keys() == store.loaded.keys()
            and last.available.keys() == store.available.keys()
            and all(last.loaded[name].sha256 == model.sha256 for name, model in store.loaded.items())
        ):
            return
        self._state = self.state()
        for outbox in list(self._outboxes):
            outbox.send(("state", self._state))

    async def start(self) -> None:
        await self.store.start()
        self._changed()

    async def connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        outbox = Outbox(writer)
        self._outboxes.add(outbox)
        self._state = self.state()
        outbox.send(("state", self._state))
        try:
            async for message in messages(reader):
                if message[0] == "infer" and self._infer(message, outbox):
                    continue
                task = asyncio.create_task(self._answer(message, outbox))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except asyncio.CancelledError:
            # The process is stopping (its loop cancels what is left). asyncio's stream server asks a
            # handler's task for its exception when it ends, and logs a cancelled one's as an error
            # with a traceback per front end: this connection simply ends here.
            pass
        finally:
            self._outboxes.discard(outbox)
            writer.close()

    def _infer(self, message: tuple[Any, ...], outbox: Outbox) -> bool:
        """A request for a loaded model, queued at once with a callback for its answer (no task: this
        is every request's path). False for a model not loaded: _answer loads it first."""
        _, ident, name, feeds, alone = message
        store = self.store
        model = store.loaded.get(name)
        if model is None:
            return False
        store.loaded.move_to_end(name)  # what ModelStore.get does: least recently used goes first
        reply = functools.partial(self._answered, ident, model.sha256, outbox)
        try:
            model.batcher.send(unpack(feeds), reply, alone=alone)
        except AimassError as error:
            outbox.send(("error", ident, error_fields(error)))
        return True

    def _answered(self, ident: int, sha256: str, outbox: Outbox, result: Answer | BaseException) -> None:
        if isinstance(result, Answer):
            answer = result
            outbox.send(
                (
                    "answer",
                    ident,
                    sha256,
                    pack(answer.outputs),
                    answer.batch_requests,
                    answer.batch_rows,
                    answer.queued_ms,
                )
            )
        elif isinstance(result, AimassError):
            outbox.send(("error", ident, error_fields(result)))
        else:  # the single-process server's answer to the unexpected, the same
            log.error("unexpected error on a request", exc_info=result)
            outbox.send(("error", ident, error_fields(AimassError(UNEXPECTED))))

    async def _answer(self, message: tuple[Any, ...], outbox: Outbox) -> None:
        kind, ident = message[0], message[1]
        try:
            reply = await self._handle(kind, ident, message[2:])
        except AimassError as error:
            reply = ("error", ident, error_fields(error))
        except Exception as error:  # the single-process server's answer to the unexpected, the same
            log.error("unexpected error on %s", kind, exc_info=error)
            reply = ("error", ident, error_fields(AimassError(UNEXPECTED)))
        self._changed()
        outbox.send(reply)

    async def _handle(self, kind: str, ident: int, rest: tuple[Any, ...]) -> tuple[Any, ...]:
        store = self.store
        if kind == "infer":  # a model not loaded yet: loaded on its first request, as ModelStore.get does
            name, feeds, alone = rest
            model = await store.get(name)
            answer = await model.batcher.submit(unpack(feeds), alone=alone)
            outputs = pack(answer.outputs)
            return (
                "answer",
                ident,
                model.sha256,
                outputs,
                answer.batch_requests,
                answer.batch_rows,
                answer.queued_ms,
            )
        if kind == "get":
            return ("model", ident, ModelView.of(await store.get(rest[0])))
        if kind == "load":
            name, path = rest
            return ("model", ident, ModelView.of(await store.load(name, Path(path), explicit=True)))
        if kind == "unload":
            await store.unload(rest[0])
            return ("done", ident)
        if kind == "describe":
            return ("described", ident, {**store.describe(), "engine_pid": os.getpid()})
        raise AimassError(f"the model process does not know {kind!r}")


def server_gone(server_pid: int) -> bool:
    """Whether the server that started this process (its parent) has exited or is exiting. A killed
    process's threads exit one by one, and its children are handed to init only when the last has:
    until then getppid() still names it, but its main thread is gone, which leaves the process a
    zombie (state Z in /proc). Without /proc (not Linux) the parent's id is all there is."""
    if os.getppid() != server_pid:
        return True
    try:
        stat = Path(f"/proc/{server_pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


async def serve(settings: Settings, socket_path: Path) -> None:
    engine = Engine(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    server = await asyncio.start_unix_server(engine.connected, path=str(socket_path))
    os.chmod(socket_path, 0o600)
    log.info("model process %d: listening on %s", os.getpid(), socket_path)
    starting = asyncio.create_task(engine.start())
    parent = os.getppid()
    try:
        # A server killed outright cannot stop its model process: it notices that it was orphaned.
        while not server_gone(parent):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), PARENT_POLL_S)
            if stopping.is_set():
                break
        else:
            log.error("model process %d: the server (pid %d) is gone; stopping", os.getpid(), parent)
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        server.close()
        await engine.store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gpu_endpoints.engine", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--socket", type=Path, required=True, help="the Unix socket to listen on")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        raise SystemExit(f"gpu_endpoints.engine: {error}") from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        import uvloop
    except ImportError:  # the standard loop: slower, the same answers
        asyncio.run(serve(settings, args.socket))
    else:
        uvloop.run(serve(settings, args.socket))


if __name__ == "__main__":
    # Through the module's own name: the classes pickled to the front ends must be
    # gpu_endpoints.engine's, not __main__'s.
    from gpu_endpoints import engine

    engine.main()
