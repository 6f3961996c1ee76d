"""A version's live counts (aimass.serving.live): the tally, its figures, and flushing."""

from __future__ import annotations

from typing import Any

from aimass.serving.live import LATENCY_BOUNDS_MS, LiveCounts, bucket_of, percentile_ms, summary


def test_latency_percentiles_read_the_histogram_buckets_upper_bounds() -> None:
    latency = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    for seconds in [0.0008] * 90 + [0.015] * 9 + [0.4]:
        latency[bucket_of(seconds)] += 1
    assert (percentile_ms(latency, 50), percentile_ms(latency, 99), percentile_ms(latency, 100)) == (
        1.0,
        20.0,
        500.0,
    )
    assert percentile_ms([0] * len(latency), 50) is None


def test_counts_add_up_per_version_and_flush_once_to_the_registry() -> None:
    added: list[tuple[str, int, int, dict[str, int]]] = []
    live = LiveCounts(lambda *args: added.append(args), flush_every_s=None)
    stable, canary = ("m", 3, 1), ("m", 3, 2)
    for _ in range(3):
        live.request(stable, 0.004, "answered", False)
        live.answered(stable, 2, 1, 0, ["a", "b"])
    live.request(canary, 0.2, "error", True)
    live.request(canary, 0.001, "rejected", False)
    live.flush()
    live.flush()  # nothing left: nothing added
    by_version = {version: counters for _, _, version, counters in added}
    assert len(added) == 2
    assert by_version[1] == {
        "requests": 3,
        "instances": 6,
        "anomalies": 3,
        "lat_02": 3,
        "cls_a": 3,
        "cls_b": 3,
    }
    figures: dict[str, Any] = summary(by_version[2])
    assert (
        figures["requests"],
        figures["error_rate"],
        figures["rule_rejection_rate"],
        figures["fallback_rate"],
    ) == (
        2,
        0.5,
        0.5,
        0.5,
    )
    assert summary(by_version[1])["classes"] == {"a": 0.5, "b": 0.5}


def test_a_failed_add_drops_the_counts_and_raises_nothing() -> None:
    def broken(*args: Any) -> None:
        raise ConnectionError("registry down")

    live = LiveCounts(broken, flush_every_s=None)
    live.request(("m", 1, 1), 0.01, "answered", False)
    live.flush()
    live.flush()


def test_an_invocation_end_flushes_only_once_the_interval_has_passed() -> None:
    added: list[Any] = []
    now = [0.0]
    live = LiveCounts(lambda *args: added.append(args), flush_every_s=10, clock=lambda: now[0])
    live.request(("m", 1, 1), 0.01, "answered", False)
    live.flush_if_due()
    assert added == []
    now[0] = 10.0
    live.flush_if_due()
    assert len(added) == 1
