"""Circuit breakers: one per SageMaker endpoint, so an endpoint that stopped answering costs each
request nothing instead of the client's whole deadline (docs/design.md, "When an endpoint fails").

Closed: calls go through; `threshold` consecutive failures (no answer, down, missing) open it. Open:
calls are refused at once (the request pipeline falls back); after `cooldown_s` the next call is let
through as the one half-open probe, the others still refused. The probe's success closes it, its
failure opens it for another cool-down. Any answer from the endpoint (a throttle or a model error
included) is a success: the endpoint is there. Thread-safe; the clock is injectable."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger(__name__)


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass
class Breaker:
    """The breaker of one endpoint."""

    name: str
    threshold: int = 3
    cooldown_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _failures: int = field(default=0, init=False)
    _opened_at: float | None = field(default=None, init=False)
    _probing: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return State.CLOSED
        if self._probing or self.clock() - self._opened_at >= self.cooldown_s:
            return State.HALF_OPEN
        return State.OPEN

    def allow(self) -> bool:
        """Whether a call may go to the endpoint now; True in half-open makes this call the probe,
        whose outcome the caller must report (`succeeded` or `failed`)."""
        with self._lock:
            state = self._state()
            if state is State.CLOSED:
                return True
            if state is State.HALF_OPEN and not self._probing:
                self._probing = True
                log.info("endpoint %s: circuit half-open, one probe request goes through", self.name)
                return True
            return False

    def retry_in_s(self) -> float:
        """Seconds until a probe may go through (0: now, or closed)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self._opened_at + self.cooldown_s - self.clock())

    def succeeded(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.warning("endpoint %s answered: circuit closed", self.name)
            self._failures, self._opened_at, self._probing = 0, None, False

    def abandoned(self) -> None:
        """A call let through ended without telling whether the endpoint answers: a probe it was is
        no longer under way, and the next call probes."""
        with self._lock:
            self._probing = False

    def failed(self, reason: str = "") -> None:
        with self._lock:
            self._failures += 1
            if self._probing:
                self._open(f"the probe failed: {reason}")
            elif self._opened_at is None and self._failures >= self.threshold:
                self._open(f"{self._failures} failures in a row, the last: {reason}")

    def trip(self, reason: str) -> None:
        """Open it now, whatever the count (something that watches the endpoint saw it down); open
        already, its cool-down starts again, unlogged: a watcher says so while the endpoint stays down."""
        with self._lock:
            if self._state() is State.OPEN:
                self._opened_at = self.clock()
            else:
                self._open(reason)

    def _open(self, reason: str) -> None:
        log.warning(
            "endpoint %s: circuit open for %.3g s (%s); requests go to the fallback",
            self.name,
            self.cooldown_s,
            reason,
        )
        self._opened_at, self._probing = self.clock(), False


@dataclass
class Breakers:
    """The process's breakers, one per endpoint name, made on first use."""

    threshold: int = 3
    cooldown_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _by_name: dict[str, Breaker] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def of(self, endpoint: str) -> Breaker:
        with self._lock:
            breaker = self._by_name.get(endpoint)
            if breaker is None:
                breaker = Breaker(endpoint, self.threshold, self.cooldown_s, self.clock)
                self._by_name[endpoint] = breaker
            return breaker

    def available(self, endpoint: str) -> bool:
        """False while the endpoint's circuit is open (a probe still to come counts as available)."""
        return self.of(endpoint).state is not State.OPEN
