"""The inference server's dynamic batcher on its own: a fake model, a clock the tests move.

Times are never measured: the queue's bookkeeping is given its times, and the asyncio batcher reads
a clock that only moves when a test moves it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import pytest

from gpu_endpoints.batching import (
    Answer,
    Batcher,
    BatchQueue,
    OutputNotBatched,
    Pending,
    batch_key,
    split,
)
from gpu_endpoints.errors import QueueFull, Unavailable
from gpu_endpoints.settings import BatchingConfig
from tests.support import Clock

T = TypeVar("T")
# Long enough that a batch never falls due by itself while a test runs: the tests move the clock.
FOREVER_MS = 3_600_000.0
# A safety net for awaiting answers that the test makes due; never an assertion on time.
ANSWER_TIMEOUT_S = 30


def pending(rows: int = 1, width: int = 3, arrived: float = 0.0, dtype: Any = np.float32) -> Pending:
    feeds = {"x": np.zeros((rows, width), dtype=dtype)}
    key, counted = batch_key(feeds)
    return Pending(feeds, counted, key, arrived)


class FakeModel:
    """y = 2x and the sum of each row; raises on a batch that holds a NaN. Records every call."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[np.ndarray] = []
        self.gate = gate
        self.started = threading.Event()

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        x = feeds["x"]
        self.calls.append(x.copy())
        self.started.set()
        if self.gate is not None:
            self.gate.wait(ANSWER_TIMEOUT_S)
        if np.isnan(x).any():
            raise ValueError("the model cannot take NaN")
        return {"y": x * 2, "total": x.sum(axis=tuple(range(1, x.ndim)))}

    @property
    def batch_rows(self) -> list[int]:
        return [len(call) for call in self.calls]


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(test())


async def settle() -> None:
    """Let the batcher's task look at its queue (no time passes on the test's clock)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def answers(*tasks: asyncio.Task[Answer]) -> list[Answer]:
    return await asyncio.wait_for(asyncio.gather(*tasks), ANSWER_TIMEOUT_S)


def row(value: float, width: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.full((1, width), value, dtype=np.float32)}


def config(**changes: Any) -> BatchingConfig:
    return replace(BatchingConfig(max_batch_size=8, max_queue_delay_ms=FOREVER_MS), **changes)


# The queue's bookkeeping, with the times given.


def test_a_batch_falls_due_as_soon_as_it_holds_max_batch_size_rows() -> None:
    queue = BatchQueue(max_batch_size=4, max_queue_delay_s=10.0)
    for _ in range(3):
        queue.add(pending())
    assert queue.take(now=0.0) is None

    queue.add(pending())

    batch = queue.take(now=0.0)
    assert batch is not None and batch.rows == 4 and len(batch.requests) == 4
    assert queue.take(now=0.0) is None and queue.waiting == 0


def test_a_batch_falls_due_max_queue_delay_after_its_first_request() -> None:
    queue = BatchQueue(max_batch_size=8, max_queue_delay_s=0.010)
    queue.add(pending(arrived=1.000))
    queue.add(pending(arrived=1.008))

    assert queue.next_deadline() == pytest.approx(1.010)
    assert queue.take(now=1.0099) is None
    batch = queue.take(now=1.010)

    assert batch is not None and len(batch.requests) == 2


def test_requests_beyond_a_full_batch_open_the_next_one() -> None:
    queue = BatchQueue(max_batch_size=4, max_queue_delay_s=10.0)
    for _ in range(6):
        queue.add(pending())

    first = queue.take(now=0.0)
    assert first is not None and first.rows == 4
    assert queue.take(now=0.0) is None
    second = queue.take(now=10.0)
    assert second is not None and second.rows == 2


def test_rows_not_requests_count_towards_the_batch_size() -> None:
    queue = BatchQueue(max_batch_size=4, max_queue_delay_s=10.0)
    queue.add(pending(rows=3))
    queue.add(pending(rows=3))  # would make 6 rows: closes the first batch, opens a second

    first = queue.take(now=0.0)
    assert first is not None and first.rows == 3
    assert queue.take(now=0.0) is None
    second = queue.take(now=10.0)
    assert second is not None and second.rows == 3


def test_a_request_larger_than_max_batch_size_runs_alone_at_once() -> None:
    queue = BatchQueue(max_batch_size=4, max_queue_delay_s=10.0)
    queue.add(pending(rows=10))

    batch = queue.take(now=0.0)

    assert batch is not None and batch.rows == 10 and len(batch.requests) == 1


def test_requests_of_different_shapes_or_dtypes_never_share_a_batch() -> None:
    queue = BatchQueue(max_batch_size=8, max_queue_delay_s=10.0)
    queue.add(pending(width=3))
    queue.add(pending(width=4))
    queue.add(pending(width=3, dtype=np.float64))
    queue.add(pending(width=3))

    batches = [queue.take(now=10.0) for _ in range(3)]

    assert queue.take(now=10.0) is None
    shapes = []
    for batch in batches:
        assert batch is not None
        assert len({r.key for r in batch.requests}) == 1
        shapes.append([(*r.feeds["x"].shape[1:], r.feeds["x"].dtype.name) for r in batch.requests])
    assert shapes == [[(3, "float32"), (3, "float32")], [(4, "float32")], [(3, "float64")]]


def test_each_shape_has_its_own_deadline() -> None:
    queue = BatchQueue(max_batch_size=8, max_queue_delay_s=0.010)
    queue.add(pending(width=3, arrived=0.000))
    queue.add(pending(width=4, arrived=0.005))

    early = queue.take(now=0.010)
    assert early is not None and early.requests[0].feeds["x"].shape == (1, 3)
    assert queue.take(now=0.010) is None
    late = queue.take(now=0.015)
    assert late is not None and late.requests[0].feeds["x"].shape == (1, 4)


def test_a_request_sent_alone_is_due_at_once_and_joins_no_batch() -> None:
    queue = BatchQueue(max_batch_size=8, max_queue_delay_s=10.0)
    queue.add(pending())
    queue.add(pending(), alone=True)
    queue.add(pending())

    batch = queue.take(now=0.0)

    assert batch is not None and len(batch.requests) == 1
    rest = queue.take(now=10.0)
    assert rest is not None and len(rest.requests) == 2


def test_inputs_that_disagree_on_rows_must_run_alone() -> None:
    feeds = {"a": np.zeros((2, 3)), "b": np.zeros((3, 3))}

    assert batch_key(feeds)[0] is None
    assert batch_key({"a": np.zeros((2, 3)), "b": np.zeros((2, 5))}) != batch_key(
        {"a": np.zeros((2, 3)), "b": np.zeros((2, 6))}
    )


def test_outputs_are_split_back_by_rows() -> None:
    outputs = {"y": np.arange(12).reshape(6, 2), "labels": ["a", "b", "c", "d", "e", "f"]}

    parts = split(outputs, [1, 3, 2])

    assert [p["y"].tolist() for p in parts] == [[[0, 1]], [[2, 3], [4, 5], [6, 7]], [[8, 9], [10, 11]]]
    assert [p["labels"] for p in parts] == [["a"], ["b", "c", "d"], ["e", "f"]]


def test_an_output_without_the_batch_dimension_cannot_be_split() -> None:
    with pytest.raises(OutputNotBatched, match="no batch dimension"):
        split({"y": np.zeros((6, 2)), "scale": np.array(1.0, dtype=np.float32)}, [3, 3])


# The batcher on asyncio, with a fake model in its worker thread.


def test_concurrent_requests_run_as_one_batch_and_each_gets_its_own_rows() -> None:
    async def scenario() -> tuple[FakeModel, list[Answer]]:
        model = FakeModel()
        batcher = Batcher(model, config(max_batch_size=8), clock=Clock())
        tasks = [asyncio.create_task(batcher.submit(row(float(i)))) for i in range(8)]
        results = await answers(*tasks)
        await batcher.close()
        return model, results

    model, results = run(scenario)

    assert model.batch_rows == [8]
    for i, answer in enumerate(results):
        alone = FakeModel()(row(float(i)))  # the same request, unbatched
        np.testing.assert_array_equal(answer.outputs["y"], alone["y"])
        np.testing.assert_array_equal(answer.outputs["total"], alone["total"])
        assert (answer.batch_requests, answer.batch_rows) == (8, 8)


def test_a_batch_waits_for_max_queue_delay_and_no_longer() -> None:
    async def scenario() -> None:
        clock, model = Clock(), FakeModel()
        batcher = Batcher(model, config(max_batch_size=8, max_queue_delay_ms=50), clock=clock)
        tasks = [asyncio.create_task(batcher.submit(row(float(i)))) for i in range(3)]
        await settle()
        assert model.calls == [] and batcher.stats()["waiting"] == 3

        clock.now = 0.049
        batcher.wake()
        await settle()
        assert model.calls == []

        clock.now = 0.050
        batcher.wake()
        results = await answers(*tasks)
        assert model.batch_rows == [3]
        assert [a.batch_requests for a in results] == [3, 3, 3]
        assert [a.queued_ms for a in results] == pytest.approx([50.0, 50.0, 50.0])
        await batcher.close()

    run(scenario)


def test_batches_never_exceed_max_batch_size() -> None:
    async def scenario() -> list[int]:
        clock, model = Clock(), FakeModel()
        batcher = Batcher(model, config(max_batch_size=4), clock=clock)
        tasks = [asyncio.create_task(batcher.submit(row(float(i)))) for i in range(10)]
        await settle()
        clock.now = FOREVER_MS  # the last, partial batch falls due
        batcher.wake()
        results = await answers(*tasks)
        assert [float(a.outputs["y"][0, 0]) for a in results] == [2.0 * i for i in range(10)]
        await batcher.close()
        return model.batch_rows

    assert run(scenario) == [4, 4, 2]


def test_requests_of_different_shapes_run_in_different_batches() -> None:
    async def scenario() -> FakeModel:
        clock, model = Clock(), FakeModel()
        batcher = Batcher(model, config(max_batch_size=8), clock=clock)
        tasks = [asyncio.create_task(batcher.submit(row(float(i), width=3 + i % 2))) for i in range(6)]
        await settle()
        clock.now = FOREVER_MS
        batcher.wake()
        results = await answers(*tasks)
        for i, answer in enumerate(results):
            assert answer.outputs["y"].shape == (1, 3 + i % 2)
            assert answer.outputs["total"].tolist() == [float(i) * (3 + i % 2)]
        await batcher.close()
        return model

    model = run(scenario)

    assert sorted((len(call), call.shape[1]) for call in model.calls) == [(3, 3), (3, 4)]


def test_a_failing_batch_fails_only_the_request_that_broke_it() -> None:
    async def scenario() -> tuple[list[Answer | BaseException], FakeModel]:
        clock, model = Clock(), FakeModel()
        batcher = Batcher(model, config(max_batch_size=4), clock=clock)
        values = [0.0, float("nan"), 2.0, 3.0, 4.0, 5.0]  # batches [0, nan, 2, 3] and [4, 5]
        tasks = [asyncio.create_task(batcher.submit(row(v))) for v in values]
        await settle()
        clock.now = FOREVER_MS
        batcher.wake()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), ANSWER_TIMEOUT_S)
        assert batcher.stats()["failed_requests"] == 1
        await batcher.close()
        return results, model

    results, model = run(scenario)

    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [1]
    assert "cannot take NaN" in str(results[1])
    assert [float(r.outputs["y"][0, 0]) for r in results if isinstance(r, Answer)] == [0, 4, 6, 8, 10]
    # The failed batch of 4 was run again request by request; the other batch ran once, untouched.
    assert model.batch_rows == [4, 1, 1, 1, 1, 2]


def test_without_isolation_a_failing_batch_fails_its_requests_and_no_others() -> None:
    async def scenario() -> list[Answer | BaseException]:
        clock = Clock()
        batcher = Batcher(FakeModel(), config(max_batch_size=2), clock=clock, isolate_failures=False)
        tasks = [asyncio.create_task(batcher.submit(row(v))) for v in (float("nan"), 1.0, 2.0, 3.0)]
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), ANSWER_TIMEOUT_S)
        await batcher.close()
        return results

    results = run(scenario)

    assert [isinstance(r, ValueError) for r in results] == [True, True, False, False]


def test_a_request_larger_than_max_batch_size_runs_in_calls_of_max_batch_size_rows() -> None:
    async def scenario() -> tuple[FakeModel, Answer]:
        model = FakeModel()
        batcher = Batcher(model, config(max_batch_size=4), clock=Clock())
        feeds = {"x": np.arange(30, dtype=np.float32).reshape(10, 3)}
        [answer] = await answers(asyncio.create_task(batcher.submit(feeds)))
        await batcher.close()
        return model, answer

    model, answer = run(scenario)

    assert model.batch_rows == [4, 4, 2]
    expected = FakeModel()({"x": np.arange(30, dtype=np.float32).reshape(10, 3)})
    np.testing.assert_array_equal(answer.outputs["y"], expected["y"])
    np.testing.assert_array_equal(answer.outputs["total"], expected["total"])
    assert (answer.batch_requests, answer.batch_rows) == (1, 10)


def test_a_model_that_opts_out_runs_every_request_alone() -> None:
    async def scenario() -> tuple[FakeModel, list[Answer]]:
        model = FakeModel()
        batcher = Batcher(model, config(enabled=False), clock=Clock())
        results = await answers(*[asyncio.create_task(batcher.submit(row(float(i)))) for i in range(5)])
        await batcher.close()
        return model, results

    model, results = run(scenario)

    assert model.batch_rows == [1, 1, 1, 1, 1]
    assert {a.batch_requests for a in results} == {1}


def test_a_request_can_opt_out_of_its_models_batching() -> None:
    async def scenario() -> tuple[Answer, FakeModel, Batcher, list[asyncio.Task[Answer]]]:
        model = FakeModel()
        batcher = Batcher(model, config(), clock=Clock())
        waiting = [asyncio.create_task(batcher.submit(row(float(i)))) for i in range(2)]
        alone = await answers(asyncio.create_task(batcher.submit(row(9.0), alone=True)))
        return alone[0], model, batcher, waiting

    async def scenario_and_close() -> tuple[Answer, FakeModel]:
        answer, model, batcher, waiting = await scenario()
        await batcher.close()
        await asyncio.gather(*waiting, return_exceptions=True)
        return answer, model

    answer, model = run(scenario_and_close)

    assert answer.batch_requests == 1 and float(answer.outputs["y"][0, 0]) == 18.0
    assert model.batch_rows == [1]  # the two batched requests are still waiting for their batch


def test_while_the_model_is_busy_a_due_batch_keeps_filling() -> None:
    async def scenario() -> FakeModel:
        clock, gate = Clock(), threading.Event()
        model = FakeModel(gate)
        batcher = Batcher(model, config(max_batch_size=8, max_queue_delay_ms=1, instances=1), clock=clock)
        first = asyncio.create_task(batcher.submit(row(0.0), alone=True))
        await asyncio.wait_for(asyncio.to_thread(model.started.wait, ANSWER_TIMEOUT_S), ANSWER_TIMEOUT_S)
        later = [asyncio.create_task(batcher.submit(row(float(i)))) for i in range(1, 6)]
        await settle()
        clock.now = 1.0  # long past the delay: due, but the only instance is busy
        batcher.wake()
        await settle()
        assert len(model.calls) == 1
        gate.set()
        await answers(first, *later)
        await batcher.close()
        return model

    assert run(scenario).batch_rows == [1, 5]


def test_a_full_queue_refuses_requests_with_503() -> None:
    async def scenario() -> None:
        batcher = Batcher(FakeModel(), config(max_queue_size=2), clock=Clock())
        waiting = [asyncio.create_task(batcher.submit(row(float(i)))) for i in range(2)]
        await settle()
        with pytest.raises(QueueFull) as refused:
            await batcher.submit(row(3.0))
        assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
        await batcher.close()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, Unavailable) for r in results)

    run(scenario)


def test_requests_sent_with_a_reply_get_their_answers_and_errors_as_their_batches_finish() -> None:
    async def scenario() -> tuple[dict[float, Answer | BaseException], dict[str, Any], FakeModel]:
        clock, model = Clock(), FakeModel()
        batcher = Batcher(model, config(max_batch_size=4), clock=clock)
        got: dict[float, Answer | BaseException] = {}
        done = asyncio.Event()

        def reply_to(value: float) -> Callable[[Answer | BaseException], None]:
            def reply(result: Answer | BaseException) -> None:
                got[value] = result
                if len(got) == 6:
                    done.set()

            return reply

        for value in (0.0, float("nan"), 2.0, 3.0, 4.0, 5.0):  # batches [0, nan, 2, 3] and [4, 5]
            batcher.send(row(value), reply_to(value))
        await settle()
        clock.now = FOREVER_MS
        batcher.wake()
        await asyncio.wait_for(done.wait(), ANSWER_TIMEOUT_S)
        stats = batcher.stats()
        await batcher.close()
        return got, stats, model

    got, stats, model = run(scenario)

    assert {v: float(r.outputs["y"][0, 0]) for v, r in got.items() if isinstance(r, Answer)} == {
        0.0: 0.0,
        2.0: 4.0,
        3.0: 6.0,
        4.0: 8.0,
        5.0: 10.0,
    }
    [failed] = [r for r in got.values() if not isinstance(r, Answer)]
    assert "cannot take NaN" in str(failed)
    assert stats["failed_requests"] == 1 and stats["requests"] == 5  # those a model call answered
    assert model.batch_rows == [4, 1, 1, 1, 1, 2]  # as with futures: the failed batch ran again one by one


def test_a_request_sent_with_a_reply_is_told_when_its_model_is_unloaded() -> None:
    async def scenario() -> list[Answer | BaseException]:
        batcher = Batcher(FakeModel(), config(), clock=Clock())
        got: list[Answer | BaseException] = []
        batcher.send(row(1.0), got.append)
        await settle()
        await batcher.close()
        return got

    [result] = run(scenario)
    assert isinstance(result, Unavailable) and "unloaded" in str(result)


def test_a_reply_that_fails_leaves_the_other_replies_of_its_batch_to_arrive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> list[float]:
        clock = Clock()
        batcher = Batcher(FakeModel(), config(max_batch_size=3), clock=clock)
        got: list[float] = []

        def broken(result: Answer | BaseException) -> None:
            raise RuntimeError("this front end is gone")

        def keep(result: Answer | BaseException) -> None:
            assert isinstance(result, Answer)
            got.append(float(result.outputs["y"][0, 0]))

        batcher.send(row(1.0), keep)
        batcher.send(row(2.0), broken)
        batcher.send(row(3.0), keep)
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        await batcher.close()
        return got

    assert run(scenario) == [2.0, 6.0]
    assert "a reply to a request failed" in caplog.text
