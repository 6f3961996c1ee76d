"""Timing and the few statistics every benchmark reports: p50, p99, mean, max and throughput."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted samples (q in 0..100): always a measured value."""
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass(frozen=True)
class Summary:
    """Latencies of one measured loop, in microseconds, and its throughput in calls per second."""

    count: int
    p50_us: float
    p99_us: float
    mean_us: float
    min_us: float
    max_us: float
    calls_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples_ns: Sequence[int], wall_ns: int) -> Summary:
    """Summary of per-call samples; throughput is calls over the wall time the loop took."""
    ordered = sorted(samples_ns)
    return Summary(
        count=len(ordered),
        p50_us=percentile(ordered, 50) / 1e3,
        p99_us=percentile(ordered, 99) / 1e3,
        mean_us=statistics.fmean(ordered) / 1e3,
        min_us=ordered[0] / 1e3,
        max_us=ordered[-1] / 1e3,
        calls_per_s=len(ordered) / (wall_ns / 1e9),
    )


def measure_interleaved(
    calls: dict[str, Callable[[], object]], iterations: int, warmup: int, block: int = 25
) -> dict[str, Summary]:
    """Time each call `iterations` times, in short alternating blocks of `block` calls.

    Alternating short blocks (A, B, A, B, ...) rather than all of A then all of B spreads the drift of
    a shared, noisy machine (neighbours, frequency, a background thread) over every contender alike,
    so that differences between contenders are the contenders'.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[int]] = {name: [] for name in calls}
    wall: dict[str, int] = dict.fromkeys(calls, 0)
    clock = time.perf_counter_ns
    remaining = iterations
    while remaining > 0:
        size = min(block, remaining)
        for name, call in calls.items():
            taken = samples[name]
            started = clock()
            for _ in range(size):
                before = clock()
                call()
                taken.append(clock() - before)
            wall[name] += clock() - started
        remaining -= size
    return {name: summarize(samples[name], wall[name]) for name in calls}


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """One call's result and its duration in milliseconds (for one-off steps such as a first request)."""
    started = time.perf_counter_ns()
    result = call()
    return result, (time.perf_counter_ns() - started) / 1e6


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
