"""The local stack's rollout schedule: a thread of `aimass serve` that ticks every model's rollout
under way (and starts the releases that are due) every AIMASS_ROLLOUT_TICK_S seconds, as
RolloutTickSchedule invokes RolloutFunction in AWS (the same aimass.release.tick, notices on the
local pipeline topic)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from aimass import release, wiring

log = logging.getLogger(__name__)


def tick_once() -> list[str]:
    """One tick: the releases due started, then every rollout under way ticked, with this process's
    live counts added first; the names of the models ticked or released. A failure is logged (the
    policies stay as they were) and the next tick tries again."""
    try:
        wiring.flush_live()
        started, ticked = release.tick(wiring.registry(), datetime.now(UTC), wiring.rollout_notices)
    except Exception:
        log.exception("rollouts not ticked; the next tick tries again")
        return []
    names = sorted({r.name for r in started} | {r.name for r in ticked})
    for name in names:
        wiring.registry_changed(name)  # this process serves them: at once, not after its TTL
    return names


class Ticker:
    """Calls tick_once every `every_s` seconds on a daemon thread until stopped."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollout-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            tick_once()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s + 30)
