"""Shadow traffic: a sampled share of the requests the stable version answered also runs on the
traffic policy's shadow version, off the request's path. The caller gets the stable answer only;
the shadow's answer is compared with it (agreement), counted under the shadow version's live key
with counters of its own (aimass.serving.live, `sh_`), and captured beside the served lines with
the same prediction ids (aimass.capture, `capture/<model>/shadow/...`).

The request thread only samples and enqueues (a bounded queue; full: the shadow is skipped and
counted). One worker thread per process runs the shadow through the same stages as a request
(decode, screen, rules, run), a SageMaker endpoint's invocation included, so the answer never waits
on it. Whatever the shadow does (raises, is slow, is gone) is counted and logged at most once a
minute; it never reaches the caller. In the Lambda, the worker is frozen with the execution
environment when an invocation returns and resumes at the next one; the runs of a container that is
reaped meanwhile are lost, like a sample (docs/rollout.md, "Shadow traffic")."""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aimass.contracts.registry import ShadowSplit, Signature
from aimass.errors import AimassError, RuleRejected
from aimass.serving import codecs, traffic
from aimass.serving.live import Key, LiveCounts, Outcome

if TYPE_CHECKING:
    from aimass.serving.pipeline import Answered

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
# A regressor's shadow answer agrees when |shadow - stable| <= ABS + REL * |stable|: 1 % of the
# stable's value, and an absolute floor so that answers near zero are not judged on float noise.
REL_TOLERANCE = 0.01
ABS_TOLERANCE = 1e-6
LOG_EVERY_S = 60.0


def sampled(split: ShadowSplit, key: str | None, draw: Callable[[], float] = random.random) -> bool:
    """Whether a request the stable version answered also runs on the shadow: by its routing key's
    hash when it has one (the same key always, or never), else a random draw. The key is salted so
    that the shadow's share is drawn apart from the canary's: at 10 % each, the shadowed keys are
    not the ones the canary takes."""
    if split.percent <= 0:
        return False
    at = traffic.share_of(f"shadow:{key}") if key is not None else draw()
    return at * 100 < split.percent


def _close(stable: Any, shadow: Any) -> bool:
    """Two answers the same within the tolerance: numbers by it, lists and objects item by item."""
    if isinstance(stable, bool) or isinstance(shadow, bool):
        return stable == shadow
    if isinstance(stable, int | float) and isinstance(shadow, int | float):
        if math.isnan(stable) or math.isnan(shadow):
            return math.isnan(stable) and math.isnan(shadow)
        return abs(shadow - stable) <= ABS_TOLERANCE + REL_TOLERANCE * abs(stable)
    if isinstance(stable, list) and isinstance(shadow, list):
        return len(stable) == len(shadow) and all(_close(a, b) for a, b in zip(stable, shadow, strict=True))
    if isinstance(stable, dict) and isinstance(shadow, dict):
        return stable.keys() == shadow.keys() and all(_close(stable[k], shadow[k]) for k in stable)
    return bool(stable == shadow)


def agrees(stable: Any, shadow: Any) -> bool:
    """One instance's answers agree: a classifier's by label (its probabilities may differ), any
    other model's within the tolerance (REL_TOLERANCE of the stable's value, ABS_TOLERANCE)."""
    if isinstance(stable, dict) and isinstance(shadow, dict) and "label" in stable and "label" in shadow:
        return bool(stable["label"] == shadow["label"])
    return _close(stable, shadow)


def model_answers(signature: Signature, outputs: dict[str, Any] | None, count: int) -> list[Any]:
    """A version's own answers, one per instance, as V1 gives them before rules and findings: what
    agreement compares (the rules and the quality checks are the model's, the same for both)."""
    return codecs.v1_predictions(signature, outputs or {}, count)


def compare(stable: Answered, shadow: Answered) -> tuple[int, int]:
    """Instances compared and instances that agreed; none when the two gave different counts."""
    ours = model_answers(stable.version.signature, stable.outputs, stable.instances)
    theirs = model_answers(shadow.version.signature, shadow.outputs, shadow.instances)
    if len(ours) != len(theirs):
        return 0, 0
    return len(ours), sum(agrees(a, b) for a, b in zip(ours, theirs, strict=True))


@dataclass(frozen=True)
class ShadowJob:
    """A request the stable version answered, to run again on the shadow version."""

    name: str
    version: int  # the shadow version
    counted: Key  # (model, the policy's live key, the shadow version)
    view: Any  # the request's protocol view (aimass.serving.pipeline.View), shared, never changed
    served: Answered
    ids: list[str] | None  # the served predictions' ids: the shadow's lines carry them


@dataclass(frozen=True)
class ShadowResult:
    """What observers (the Lambda's metrics) hear of each shadow run."""

    model: str
    version: int
    outcome: Outcome
    seconds: float
    instances: int = 0
    compared: int = 0
    agreed: int = 0


# Runs a job's request on its shadow version, through the pipeline's stages, and gives the answer.
Run = Callable[[ShadowJob], "Answered"]
# Writes a shadow answer's capture lines under the served predictions' ids (aimass.capture).
ShadowCapture = Callable[["Answered", list[str]], None]


class Shadows:
    """The shadow queue and its one worker thread (started with the first job)."""

    def __init__(
        self,
        run: Run,
        live: LiveCounts | None = None,
        capture: ShadowCapture | None = None,
        observers: Sequence[Callable[[ShadowResult], None]] = (),
        queue_size: int = QUEUE_SIZE,
        labels: Callable[[Answered], list[str]] = lambda _: [],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run = run
        self.live = live
        self.capture = capture
        self.observers = observers
        self.labels = labels
        self.clock = clock
        self.skipped = 0
        self.errors = 0
        self._queue: queue.Queue[ShadowJob] = queue.Queue(queue_size)
        self._worker: threading.Thread | None = None
        self._start = threading.Lock()
        self._logged_at: float | None = None

    def submit(self, job: ShadowJob) -> bool:
        """Enqueue a job, never waiting: False (counted as skipped) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.skipped += 1
            if self.live is not None:
                self.live.shadow_skipped(job.counted)
            self._log(
                "%s v%s: the shadow queue is full; %d shadow runs skipped so far",
                job.name,
                job.version,
                self.skipped,
            )
            return False
        if self._worker is None:
            with self._start:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._work, name="aimass-shadow", daemon=True)
                    self._worker.start()
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the jobs enqueued so far have run (tests, benchmarks, a local server's reads);
        False when they have not within `timeout`."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self.run_one(job)
            except Exception:  # the worker outlives anything a job does
                log.exception("shadow run of %s v%s failed", job.name, job.version)
            finally:
                self._queue.task_done()

    def run_one(self, job: ShadowJob) -> ShadowResult:
        """Run one job and count it: its outcome, latency, and agreement with the served answer."""
        started = time.perf_counter()
        answered: Answered | None = None
        outcome: Outcome = "answered"
        try:
            answered = self.run(job)
        except RuleRejected:
            outcome = "rejected"
        except Exception as error:
            outcome = "error"
            self.errors += 1
            what = error.message if isinstance(error, AimassError) else repr(error)
            self._log("shadow %s v%s failed (%d so far): %s", job.name, job.version, self.errors, what)
        seconds = time.perf_counter() - started
        compared = agreed = instances = 0
        if answered is not None:
            instances = answered.instances
            compared, agreed = compare(job.served, answered)
        result = ShadowResult(job.name, job.version, outcome, seconds, instances, compared, agreed)
        if self.live is not None:
            labels = self.labels(answered) if answered is not None else []
            self.live.shadowed(job.counted, seconds, outcome, instances, compared, agreed, labels)
        for observer in self.observers:
            try:
                observer(result)
            except Exception:
                log.exception("a shadow observer failed")
        if answered is not None and job.ids is not None and self.capture is not None:
            try:
                self.capture(answered, job.ids)
            except Exception:
                log.exception("capture of a %s shadow answer failed", job.name)
        return result

    def _log(self, message: str, *args: Any) -> None:
        """At most once a minute: a shadow that fails on every run must not flood the logs."""
        now = self.clock()
        if self._logged_at is not None and now - self._logged_at < LOG_EVERY_S:
            return
        self._logged_at = now
        log.warning(message, *args)
