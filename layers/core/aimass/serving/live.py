"""A model's live traffic per version while a rollout is under way: what each version answered, how
fast, how often it failed or was refused, what it predicted. Each process adds its counts to the
registry (one item per policy version and model version, atomic ADDs) every `flush_every_s` (a
timer; in the Lambda also as an invocation ends once that long has passed), so
`GET /v1/models/{name}/rollout` reads what every container saw. Nothing is counted without a
rollout: the cost is a rollout's alone.

A shadow version's runs (aimass.serving.shadow) are counted in the same item as counters of their
own, prefixed `sh_`, so that they never mix with the same version's requests served as the canary:
`sh_requests`, `sh_errors`, `sh_skipped` (sampled, not run: the shadow queue was full), `sh_compared`
and `sh_agreed` (instances), `sh_lat_..`, `sh_cls_..`."""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

# Upper bounds of the latency histogram's buckets (ms); one more bucket holds the rest.
LATENCY_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)
# answered; refused by a reject rule; failed (5xx); invalid (a 4xx of the request's own making)
Outcome = Literal["answered", "rejected", "error", "invalid"]
# (model, policy version, model version)
Key = tuple[str, int, int]
# Adds one version's counters to the registry: model, policy version, model version, counters.
Add = Callable[[str, int, int, dict[str, int]], None]
# Labels given (aimass.feedback) while a rollout is under way are counted for the version that made
# the prediction: `labelled`, `classified` and `correct` (classifiers), `scored`, `abs_error_u` and
# `sq_abs_error_u` (regressors: the sum of |error| and of |error|^2 in millionths, as the registry
# ADDs integers; an error under 0.5e-6 counts as 0, a square under 0.5e-6 too).
MICRO = 1_000_000
# The prefix of a shadow version's counters, beside the ones of the requests it served.
SHADOW = "sh_"


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    rejected: int = 0
    fallback: int = 0
    instances: int = 0
    anomalies: int = 0
    flagged: int = 0
    # Shadow runs only: sampled but not run (the queue was full); instances compared with the
    # stable version's answer, and those that agreed.
    skipped: int = 0
    compared: int = 0
    agreed: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))
    classes: Counter[str] = field(default_factory=Counter)

    def counters(self) -> dict[str, int]:
        """As the registry keeps them: flat names, zeros left out."""
        flat = {
            "requests": self.requests,
            "errors": self.errors,
            "rejected": self.rejected,
            "fallback": self.fallback,
            "instances": self.instances,
            "anomalies": self.anomalies,
            "flagged": self.flagged,
            "skipped": self.skipped,
            "compared": self.compared,
            "agreed": self.agreed,
            **{f"lat_{i:02d}": n for i, n in enumerate(self.latency)},
            **{f"cls_{label}": n for label, n in self.classes.items()},
        }
        return {k: v for k, v in flat.items() if v}


def label_counters(correct: bool | None, abs_error: float | None) -> dict[str, int]:
    """One label's counters: a classifier's prediction right or wrong, a regressor's absolute error."""
    counters = {"labelled": 1}
    if correct is not None:
        counters |= {"classified": 1, "correct": int(correct)}
    if abs_error is not None:
        counters |= {
            "scored": 1,
            "abs_error_u": round(abs_error * MICRO),
            "sq_abs_error_u": round(abs_error * abs_error * MICRO),
        }
    return {k: v for k, v in counters.items() if v}


def _labels(counters: dict[str, int]) -> dict[str, Any]:
    """Live accuracy from label counters: a classifier's accuracy, a regressor's mean absolute error and
    the standard deviation of its absolute errors (n - 1 in the denominator)."""
    classified, scored = counters.get("classified", 0), counters.get("scored", 0)
    mae = sd = None
    if scored:
        total, squares = counters.get("abs_error_u", 0) / MICRO, counters.get("sq_abs_error_u", 0) / MICRO
        mae = total / scored
        if scored > 1:
            sd = math.sqrt(max(squares - scored * mae * mae, 0.0) / (scored - 1))
    return {
        "labelled": counters.get("labelled", 0),
        "accuracy": counters.get("correct", 0) / classified if classified else None,
        "mae": mae,
        "abs_error_sd": sd,
    }


def bucket_of(seconds: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS_MS, seconds * 1000)


def percentile_ms(latency: list[int], q: float) -> float | None:
    """The upper bound of the bucket the q-th percentile falls in (None: no requests; the last,
    open bucket reads as its lower bound)."""
    total = sum(latency)
    if not total:
        return None
    rank, seen = q / 100 * total, 0
    for i, count in enumerate(latency):
        seen += count
        if seen >= rank and count:
            return float(LATENCY_BOUNDS_MS[min(i, len(LATENCY_BOUNDS_MS) - 1)])
    return float(LATENCY_BOUNDS_MS[-1])


def summary(counters: dict[str, int]) -> dict[str, Any]:
    """One version's figures from its counters: rates per request or per instance, latency, classes."""
    requests, instances = counters.get("requests", 0), counters.get("instances", 0)
    latency = [counters.get(f"lat_{i:02d}", 0) for i in range(len(LATENCY_BOUNDS_MS) + 1)]

    def rate(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    classes = {k.removeprefix("cls_"): v for k, v in counters.items() if k.startswith("cls_")}
    return {
        "requests": requests,
        "errors": counters.get("errors", 0),
        "error_rate": rate(counters.get("errors", 0), requests),
        "rule_rejection_rate": rate(counters.get("rejected", 0), requests),
        "fallback_rate": rate(counters.get("fallback", 0), requests),
        "instances": instances,
        "anomaly_rate": rate(counters.get("anomalies", 0), instances),
        "quality_flag_rate": rate(counters.get("flagged", 0), instances),
        "latency_p50_ms": percentile_ms(latency, 50),
        "latency_p99_ms": percentile_ms(latency, 99),
        "classes": {k: rate(v, instances) for k, v in sorted(classes.items())},
        **_labels(counters),
        "compared": counters.get("compared", 0),
        "agreement": rate(counters.get("agreed", 0), counters.get("compared", 0)),
        "skipped": counters.get("skipped", 0),
    }


def shadow_summary(counters: dict[str, int]) -> dict[str, Any]:
    """A shadow version's figures from its `sh_` counters: its runs, not the requests it served."""
    return summary({k.removeprefix(SHADOW): v for k, v in counters.items() if k.startswith(SHADOW)})


class LiveCounts:
    """This process's counts not yet added to the registry."""

    def __init__(
        self, add: Add, flush_every_s: float | None = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.add = add
        self.flush_every_s = flush_every_s
        self.clock = clock
        self._flushed_at = clock()
        self._lock = threading.Lock()
        self._tallies: dict[Key, Tally] = {}
        self._shadows: dict[Key, Tally] = {}
        self._timer: threading.Timer | None = None

    def request(self, key: Key, seconds: float, outcome: Outcome, fell_back: bool) -> None:
        with self._lock:
            tally = self._tally(key)
            tally.requests += 1
            tally.errors += outcome == "error"
            tally.rejected += outcome == "rejected"
            tally.fallback += fell_back
            tally.latency[bucket_of(seconds)] += 1

    def answered(self, key: Key, instances: int, anomalies: int, flagged: int, labels: list[str]) -> None:
        with self._lock:
            tally = self._tally(key)
            tally.instances += instances
            tally.anomalies += anomalies
            tally.flagged += flagged
            tally.classes.update(labels)

    def shadowed(
        self,
        key: Key,
        seconds: float,
        outcome: Outcome,
        instances: int = 0,
        compared: int = 0,
        agreed: int = 0,
        labels: list[str] | None = None,
    ) -> None:
        """One shadow run of a request the stable version answered (aimass.serving.shadow)."""
        with self._lock:
            tally = self._tally(key, self._shadows)
            tally.requests += 1
            tally.errors += outcome in ("error", "invalid")
            tally.rejected += outcome == "rejected"
            tally.latency[bucket_of(seconds)] += 1
            tally.instances += instances
            tally.compared += compared
            tally.agreed += agreed
            tally.classes.update(labels or [])

    def shadow_skipped(self, key: Key) -> None:
        """A request sampled for the shadow that was not run: the shadow queue was full."""
        with self._lock:
            self._tally(key, self._shadows).skipped += 1

    def _tally(self, key: Key, tallies: dict[Key, Tally] | None = None) -> Tally:
        tallies = self._tallies if tallies is None else tallies
        if key not in tallies:
            tallies[key] = Tally()
            if self.flush_every_s is not None and self._timer is None:
                self._timer = threading.Timer(self.flush_every_s, self._flush_on_time)
                self._timer.daemon = True
                self._timer.start()
        return tallies[key]

    def _flush_on_time(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def flush_if_due(self) -> None:
        """Flush when the last flush is `flush_every_s` old: what a Lambda invocation does as it ends,
        so that a model under a rollout costs one registry write per container every 10 s, not one
        per request (a container frozen meanwhile keeps its counts until its next invocation)."""
        if self.flush_every_s is not None and self.clock() - self._flushed_at >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Add what was counted to the registry. A failed add is logged and its counts dropped: live
        figures are a sample of the traffic, never a reason to fail or hold a request."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
            shadows, self._shadows = self._shadows, {}
            self._flushed_at = self.clock()
        for key in {**tallies, **shadows}:
            model, policy_version, version = key
            counters = tallies[key].counters() if key in tallies else {}
            if key in shadows:
                counters.update({SHADOW + k: v for k, v in shadows[key].counters().items()})
            try:
                self.add(model, policy_version, version, counters)
            except Exception:
                log.exception("live counts of %s v%s (policy v%s) dropped", model, version, policy_version)
