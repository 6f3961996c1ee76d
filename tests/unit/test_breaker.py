"""The endpoints' circuit breakers (aimass.serving.breaker), on a fake clock: nothing sleeps."""

from __future__ import annotations

import logging
import threading

import pytest

from aimass.serving.breaker import Breaker, Breakers, State
from tests.support import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


def opened(clock: Clock, threshold: int = 3, cooldown_s: float = 10.0) -> Breaker:
    breaker = Breaker("gpu", threshold, cooldown_s, clock)
    for _ in range(threshold):
        assert breaker.allow()
        breaker.failed("ReadTimeoutError")
    return breaker


def test_it_opens_after_the_threshold_of_failures_in_a_row_and_then_refuses_calls(clock: Clock) -> None:
    breaker = Breaker("gpu", 3, 10.0, clock)

    breaker.failed("a")
    breaker.failed("b")
    still_closed = breaker.state
    breaker.failed("c")

    assert still_closed is State.CLOSED
    assert breaker.state is State.OPEN
    assert not breaker.allow()
    assert breaker.retry_in_s() == 10.0


def test_a_success_between_failures_starts_the_count_again(clock: Clock) -> None:
    breaker = Breaker("gpu", 3, 10.0, clock)

    for _ in range(5):
        breaker.failed("a")
        breaker.failed("b")
        breaker.succeeded()

    assert breaker.state is State.CLOSED
    assert breaker.allow()


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes_it(clock: Clock) -> None:
    breaker = opened(clock)
    clock.now += 9.9
    early = breaker.allow()
    clock.now += 0.1

    probe = breaker.allow()
    beside_the_probe = breaker.allow()
    breaker.succeeded()

    assert not early
    assert probe and not beside_the_probe
    assert breaker.state is State.CLOSED
    assert breaker.allow() and breaker.allow()


def test_a_failed_probe_opens_it_for_another_cool_down(clock: Clock) -> None:
    breaker = opened(clock)
    clock.now += 10

    assert breaker.allow()
    breaker.failed("ReadTimeoutError")

    assert breaker.state is State.OPEN
    assert not breaker.allow()
    assert breaker.retry_in_s() == 10.0
    clock.now += 10
    assert breaker.allow()


def test_a_probe_that_ended_without_a_verdict_lets_the_next_call_probe(clock: Clock) -> None:
    breaker = opened(clock)
    clock.now += 10
    assert breaker.allow()

    breaker.abandoned()

    assert breaker.allow()
    assert not breaker.allow()


def test_trip_opens_it_at_once_and_a_success_closes_it(clock: Clock) -> None:
    breaker = Breaker("gpu", 3, 10.0, clock)

    breaker.trip("pid 42 exited with -9")
    tripped = (breaker.state, breaker.allow())
    breaker.succeeded()

    assert tripped == (State.OPEN, False)
    assert breaker.state is State.CLOSED


def test_tripping_an_open_breaker_again_starts_its_cool_down_again_unlogged(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = Breaker("gpu", 3, 10.0, clock)

    with caplog.at_level(logging.WARNING, logger="aimass.serving.breaker"):
        breaker.trip("missed 2 pings")
        clock.now += 8
        breaker.trip("missed 3 pings")
    clock.now += 8

    assert breaker.state is State.OPEN and breaker.retry_in_s() == 2.0
    assert len(caplog.records) == 1 and "missed 2 pings" in caplog.records[0].getMessage()


def test_opening_and_closing_are_logged(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="aimass.serving.breaker"):
        breaker = opened(clock)
        clock.now += 10
        breaker.allow()
        breaker.succeeded()

    messages = [record.getMessage() for record in caplog.records]
    assert any("gpu: circuit open" in m and "3 failures in a row" in m for m in messages), messages
    assert any("gpu: circuit half-open" in m for m in messages), messages
    assert any("gpu answered: circuit closed" in m for m in messages), messages


def test_threads_failing_at_once_open_it_once_and_let_one_probe_through(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = Breaker("gpu", 50, 10.0, clock)
    start = threading.Barrier(8)

    def fail() -> None:
        start.wait()
        for _ in range(25):
            breaker.failed("x")

    with caplog.at_level(logging.WARNING, logger="aimass.serving.breaker"):
        threads = [threading.Thread(target=fail) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    clock.now += 10
    probes: list[bool] = []
    start = threading.Barrier(8)

    def probe() -> None:
        start.wait()
        probes.append(breaker.allow())

    threads = [threading.Thread(target=probe) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.getMessage() for r in caplog.records if "circuit open" in r.getMessage()] == [
        "endpoint gpu: circuit open for 10 s (50 failures in a row, the last: x); requests go to the fallback"
    ]
    assert sorted(probes) == [False] * 7 + [True]


def test_breakers_are_one_per_endpoint_and_available_until_opened(clock: Clock) -> None:
    breakers = Breakers(threshold=1, cooldown_s=5.0, clock=clock)

    breakers.of("a").failed("down")

    assert breakers.of("a") is breakers.of("a")
    assert not breakers.available("a")
    assert breakers.available("b")
    clock.now += 5  # half-open: a probe will tell, the endpoint counts as available again
    assert breakers.available("a")
