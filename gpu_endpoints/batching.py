"""Dynamic batching: concurrent requests for one model run as one call of the model.

A GPU (and, for wide layers, a CPU) does a batch of 32 rows in little more time than one row: the
weights are read once for all of them. So requests that arrive close together are queued, joined
along axis 0, run once, and the outputs are split back to their requests.

- A batch closes when it holds `max_batch_size` rows, or `max_queue_delay_ms` after its first
  request arrived, whichever comes first. A request larger than `max_batch_size` runs alone, in
  model calls of `max_batch_size` rows: no call is ever larger (device memory, TensorRT's profile).
- Only requests with the same inputs (names, dtypes, and every dimension but the first) share a
  batch: each such signature has its own open batch and its own deadline.
- At most `instances` batches of a model run at once, each in a worker thread, so the event loop
  keeps taking requests while the model runs. A batch that is due while every instance is busy
  keeps taking requests (up to `max_batch_size`) until one is free: under load, batches fill up.
- A batch that fails is run again request by request, so one bad request fails alone and its
  neighbours still get their answers; other batches never see the failure.
- `enabled=False` (a model's opt-out), or `alone=True` (one request's opt-out), runs each request
  by itself, through the same instances.
- At most `max_queue_size` requests wait or run per model; beyond that, QueueFull (503).

`BatchQueue` is the bookkeeping alone (which batch is due at a given time), with no clock and no
event loop; `Batcher` drives it on asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpu_endpoints.errors import QueueFull, Unavailable
from gpu_endpoints.settings import BatchingConfig

log = logging.getLogger(__name__)

# The model's outputs by name: arrays (or lists) whose first dimension is the batch's rows.
Outputs = dict[str, Any]
RunFunction = Callable[[dict[str, np.ndarray]], Outputs]


class OutputNotBatched(RuntimeError):
    """An output without the batch dimension: the model cannot be batched (set batching off)."""


def batch_key(feeds: Mapping[str, np.ndarray]) -> tuple[Hashable | None, int]:
    """Which requests may share a batch with this one, and its rows. Key None: it must run alone
    (a scalar input, or inputs that disagree on the number of rows)."""
    rows = {array.shape[0] if array.ndim else -1 for array in feeds.values()}
    if len(rows) != 1 or -1 in rows:
        return None, 1
    key = tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items()))
    return key, rows.pop()


@dataclass(frozen=True)
class Answer:
    """One request's outputs, and how it was served."""

    outputs: Outputs
    # Requests and rows in the model call that answered it.
    batch_requests: int
    batch_rows: int
    # From its arrival until its batch started running.
    queued_ms: float


# Where a request's answer (or its error) goes: called on the event loop as soon as its batch is done.
Reply = Callable[[Answer | BaseException], None]


@dataclass(eq=False)
class Pending:
    feeds: dict[str, np.ndarray]
    rows: int
    key: Hashable | None
    arrived: float
    dispatched: float = 0.0
    # None only where the queue's bookkeeping is used alone, with no batcher to answer.
    reply: Reply | None = None


@dataclass(eq=False)
class Batch:
    key: Hashable | None
    deadline: float
    closed: bool
    requests: list[Pending] = field(default_factory=list)
    rows: int = 0


class BatchQueue:
    """Requests waiting for their batch, grouped by signature; says which batch is due when.

    Pure bookkeeping: times are given, nothing waits. A batch is due once it is closed (full, or a
    request that runs alone) or its deadline has passed; due batches leave oldest first.
    """

    def __init__(self, max_batch_size: int, max_queue_delay_s: float) -> None:
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self._batches: list[Batch] = []
        self._open: dict[Hashable, Batch] = {}
        self.waiting = 0

    def add(self, request: Pending, alone: bool = False) -> None:
        self.waiting += 1
        if alone or request.key is None or request.rows >= self.max_batch_size:
            self._batches.append(Batch(request.key, request.arrived, True, [request], request.rows))
            return
        batch = self._open.get(request.key)
        if batch is not None and batch.rows + request.rows > self.max_batch_size:
            self._close(batch)
            batch = None
        if batch is None:
            batch = Batch(request.key, request.arrived + self.max_queue_delay_s, False)
            self._batches.append(batch)
            self._open[request.key] = batch
        batch.requests.append(request)
        batch.rows += request.rows
        if batch.rows >= self.max_batch_size:
            self._close(batch)

    def _close(self, batch: Batch) -> None:
        batch.closed = True
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]

    def take(self, now: float) -> Batch | None:
        """The oldest batch that is due at `now`, removed from the queue; None when none is."""
        for index, batch in enumerate(self._batches):
            if batch.closed or batch.deadline <= now:
                del self._batches[index]
                self._close(batch)
                self.waiting -= len(batch.requests)
                return batch
        return None

    def next_deadline(self) -> float | None:
        """When the next batch falls due (a closed one is due since its first request arrived)."""
        return min((batch.deadline for batch in self._batches), default=None)

    def drain(self) -> list[Pending]:
        """Every waiting request, removed (the model is going away)."""
        requests = [request for batch in self._batches for request in batch.requests]
        self._batches.clear()
        self._open.clear()
        self.waiting = 0
        return requests


class Batcher:
    """One model's queue on asyncio: `await submit(feeds)` gives that request's outputs."""

    def __init__(
        self,
        run: RunFunction,
        config: BatchingConfig,
        name: str = "model",
        clock: Callable[[], float] = time.monotonic,
        isolate_failures: bool = True,
    ) -> None:
        self.run = run
        self.config = config
        self.name = name
        self.clock = clock
        self.isolate_failures = isolate_failures
        self._queue = BatchQueue(config.max_batch_size, config.max_queue_delay_ms / 1000)
        self._executor = ThreadPoolExecutor(config.instances, thread_name_prefix=f"model-{name}")
        self._free = config.instances
        self._outstanding = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # What /stats reports.
        self.requests = 0
        self.rows = 0
        self.batches = 0
        self.failed = 0
        self.batch_sizes: Counter[int] = Counter()
        self._stats_lock = threading.Lock()

    @property
    def outstanding(self) -> int:
        """Requests waiting or running."""
        return self._outstanding

    @property
    def running(self) -> int:
        return self.config.instances - self._free

    async def submit(self, feeds: Mapping[str, np.ndarray], alone: bool = False) -> Answer:
        return await self.enqueue(feeds, alone)

    def enqueue(self, feeds: Mapping[str, np.ndarray], alone: bool = False) -> asyncio.Future[Answer]:
        """`submit` without the await: the future of the request's answer."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

        def settle(result: Answer | BaseException) -> None:
            if future.done():  # the client went away
                return
            if isinstance(result, Answer):
                future.set_result(result)
            else:
                future.set_exception(result)

        self.send(feeds, settle, alone)
        return future

    def send(self, feeds: Mapping[str, np.ndarray], reply: Reply, alone: bool = False) -> None:
        """`enqueue` with no future: `reply` gets the answer or the error as its batch finishes, in the
        same turn of the loop. The model process answers its front ends this way: a future's callback
        would wait a turn of the loop more, each request on its own."""
        if self._closed:
            raise Unavailable(f"model {self.name!r} is being unloaded; retry")
        if self._outstanding >= self.config.max_queue_size:
            raise QueueFull(
                f"model {self.name!r} has {self._outstanding} requests waiting or running "
                f"(at most {self.config.max_queue_size}); retry shortly"
            )
        key, rows = batch_key(feeds)
        request = Pending(dict(feeds), rows, key, self.clock(), reply=reply)
        self._queue.add(request, alone=alone or not self.config.enabled)
        self._outstanding += 1
        self._start()
        self.wake()

    def wake(self) -> None:
        """Look at the queue again now (a request came, an instance is free, or the clock moved)."""
        if self._wake is not None:
            self._wake.set()

    def _start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._dispatch(), name=f"batcher-{self.name}")

    async def _dispatch(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = self.clock()
            while self._free > 0 and (batch := self._queue.take(now)) is not None:
                self._launch(batch, now)
            deadline = self._queue.next_deadline() if self._free > 0 else None
            timeout = None if deadline is None else max(0.0, deadline - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _launch(self, batch: Batch, now: float) -> None:
        self._free -= 1
        for request in batch.requests:
            request.dispatched = now
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._executor, self._execute, batch.requests)
        done.add_done_callback(lambda finished: self._finish(batch.requests, finished))

    def _finish(self, requests: list[Pending], finished: asyncio.Future[list[Answer | Exception]]) -> None:
        self._free += 1
        self._outstanding -= len(requests)
        error = None if finished.cancelled() else finished.exception()
        results: list[Answer | BaseException] = (
            [error or Unavailable("the batch was cancelled")] * len(requests)
            if error is not None or finished.cancelled()
            else list(finished.result())
        )
        for request, result in zip(requests, results, strict=True):
            if not isinstance(result, Answer):
                self.failed += 1
            _reply(request, result)
        self.wake()

    # In a worker thread from here on.

    def _execute(self, requests: list[Pending]) -> list[Answer | Exception]:
        try:
            return list(self._run_together(requests))
        except Exception as error:
            if len(requests) == 1 or not self.isolate_failures:
                return [error] * len(requests)
            log.warning(
                "model %s: a batch of %d requests failed (%s); running each alone",
                self.name,
                len(requests),
                str(error).splitlines()[0][:200] if str(error) else type(error).__name__,
            )
        results: list[Answer | Exception] = []
        for request in requests:
            try:
                results += self._run_together([request])
            except Exception as error:
                results.append(error)
        return results

    def _run_together(self, requests: list[Pending]) -> list[Answer]:
        if len(requests) == 1:
            feeds = requests[0].feeds
        else:
            feeds = {name: np.concatenate([r.feeds[name] for r in requests]) for name in requests[0].feeds}
        total = sum(request.rows for request in requests)
        outputs = self._call(feeds, total)
        with self._stats_lock:
            self.batches += 1
            self.requests += len(requests)
            self.rows += total
            self.batch_sizes[len(requests)] += 1
        parts = [outputs] if len(requests) == 1 else split(outputs, [r.rows for r in requests])
        return [
            Answer(part, len(requests), total, (request.dispatched - request.arrived) * 1000)
            for request, part in zip(requests, parts, strict=True)
        ]

    def _call(self, feeds: dict[str, np.ndarray], rows: int) -> Outputs:
        """The model on these rows, in calls of at most max_batch_size rows when batching is on."""
        limit = self.config.max_batch_size
        if not self.config.enabled or rows <= limit:
            return self.run(feeds)
        chunks = [self.run({n: a[i : i + limit] for n, a in feeds.items()}) for i in range(0, rows, limit)]
        return join(chunks)

    def stats(self) -> dict[str, Any]:
        return {
            "batching": self.config.enabled,
            "max_batch_size": self.config.max_batch_size,
            "max_queue_delay_ms": self.config.max_queue_delay_ms,
            "instances": self.config.instances,
            "requests": self.requests,
            "rows": self.rows,
            "batches": self.batches,
            "failed_requests": self.failed,
            "largest_batch": max(self.batch_sizes, default=0),
            "batch_sizes": {str(size): count for size, count in sorted(self.batch_sizes.items())},
            "waiting": self._queue.waiting,
            "running_batches": self.running,
        }

    async def close(self) -> None:
        """Stop taking requests; those still waiting fail with 503 (retry); running batches finish."""
        self._closed = True
        for request in self._queue.drain():
            self._outstanding -= 1
            _reply(request, Unavailable(f"model {self.name!r} was unloaded; retry"))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False)


def _reply(request: Pending, result: Answer | BaseException) -> None:
    """The request's answer to its reply. A reply that fails is logged, as the event loop logs a
    future's callback that fails: the other requests of its batch still get theirs."""
    assert request.reply is not None
    try:
        request.reply(result)
    except Exception:
        log.exception("a reply to a request failed")


def split(outputs: Outputs, rows: list[int]) -> list[Outputs]:
    """A batch's outputs cut back into each request's rows."""
    total = sum(rows)
    bounds = np.cumsum([0, *rows]).tolist()
    parts: list[Outputs] = [{} for _ in rows]
    for name, value in outputs.items():
        if isinstance(value, np.ndarray):
            length, shape = (value.shape[0] if value.ndim else None), str(list(value.shape))
        elif isinstance(value, list | tuple):
            length, shape = len(value), f"a list of {len(value)}"
        else:
            length, shape = None, type(value).__name__
        if length != total:
            raise OutputNotBatched(
                f"output {name!r} ({shape}) has no batch dimension of {total} rows: "
                "this model cannot be batched; turn batching off for it"
            )
        for part, start, stop in zip(parts, bounds, bounds[1:], strict=False):
            part[name] = value[start:stop]
    return parts


def join(chunks: list[Outputs]) -> Outputs:
    """Outputs of consecutive calls joined along the rows."""
    joined: Outputs = {}
    for name, first in chunks[0].items():
        values = [chunk[name] for chunk in chunks]
        if isinstance(first, np.ndarray) and first.ndim:
            joined[name] = np.concatenate(values)
        elif isinstance(first, list | tuple):
            joined[name] = [item for value in values for item in value]
        else:
            raise OutputNotBatched(
                f"output {name!r} has no batch dimension: the request cannot be cut in chunks"
            )
    return joined
