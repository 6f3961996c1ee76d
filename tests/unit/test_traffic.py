"""The traffic policy's choice of version for a request that names none (aimass.serving.traffic)."""

from __future__ import annotations

import math
import random

import pytest

from aimass.contracts.registry import CanarySplit, TrafficPolicy
from aimass.serving.traffic import choose, key_of

STABLE, CANARY = 1, 2


def policy(percent: float, sticky_by: str | None = None) -> TrafficPolicy:
    return TrafficPolicy(canary=CanarySplit(version=CANARY, percent=percent), sticky_by=sticky_by)


def within_99_9(hits: int, n: int, percent: float) -> bool:
    """Whether `hits` of `n` fits a binomial share of `percent` at 99.9 % (two-sided, z = 3.29)."""
    p = percent / 100
    return abs(hits / n - p) <= 3.2905 * math.sqrt(p * (1 - p) / n)


def test_without_a_canary_everything_is_stable() -> None:
    assert choose(TrafficPolicy(), STABLE, "k") == (STABLE, "stable")
    assert choose(policy(0), STABLE, None) == (STABLE, "stable")
    assert choose(policy(100), STABLE, None) == (CANARY, "canary")


@pytest.mark.parametrize("percent", [10, 50])
def test_over_2000_requests_the_canary_share_is_within_its_binomial_interval(percent: float) -> None:
    draw = random.Random(17).random
    drawn = sum(choose(policy(percent), STABLE, None, draw)[1] == "canary" for _ in range(2000))
    keyed = sum(choose(policy(percent, "header"), STABLE, f"user-{i}")[1] == "canary" for i in range(2000))
    assert within_99_9(drawn, 2000, percent) and within_99_9(keyed, 2000, percent)


def test_a_key_always_gets_the_same_version_and_a_larger_percent_only_moves_keys_to_the_canary() -> None:
    keys = [f"user-{i}" for i in range(2000)]
    at_10 = {k: choose(policy(10, "header"), STABLE, k)[0] for k in keys}
    assert all(choose(policy(10, "header"), STABLE, k)[0] == at_10[k] for k in keys)  # sticky: 100 %
    at_50 = {k: choose(policy(50, "header"), STABLE, k)[0] for k in keys}
    assert all(at_50[k] == CANARY for k in keys if at_10[k] == CANARY)


def test_a_sticky_policy_gives_a_request_without_its_key_the_stable_version() -> None:
    assert choose(policy(100, "header"), STABLE, None) == (STABLE, "stable")


def test_the_routing_key_is_the_header_or_the_first_instances_feature() -> None:
    features = ["age", "patient"]
    assert key_of(policy(10), "h", None, features) is None  # not sticky: no key
    assert key_of(policy(10, "header"), "h", None, features) == "h"
    by_patient = policy(10, "feature:patient")
    assert key_of(by_patient, None, [{"patient": 42, "age": 3}], features) == "42"
    assert key_of(by_patient, None, [[3, "p-7"]], features) == "p-7"
    assert key_of(by_patient, None, [{"age": 3}], features) is None
    assert key_of(by_patient, None, None, features) is None
