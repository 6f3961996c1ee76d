"""Which version serves a request that names none: the stable version (`champion`, else the latest
not archived) or the traffic policy's canary, by its percent (aimass.contracts.registry.TrafficPolicy).

A request with a routing key is placed by the key's hash: the same key lands on the same version for
as long as the percent holds, and raising the percent only moves keys from stable to canary, never
back. Without a key (no sticky_by, or a request that lacks it) the draw is random; a sticky policy
gives a request without its key the stable version, so that the canary sees only traffic it can be
tied to."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any, Literal

from aimass.contracts.registry import TrafficPolicy

Variant = Literal["stable", "canary", "pinned"]
HEADER = "x-aimass-routing-key"


def share_of(key: str) -> float:
    """Where a routing key falls in [0, 1), the same for every process and release."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def choose(
    policy: TrafficPolicy,
    stable: int,
    key: str | None,
    draw: Callable[[], float] = random.random,
) -> tuple[int, Variant]:
    """The version a request that named none gets, and why."""
    canary = policy.canary
    if canary is None or canary.percent <= 0:
        return stable, "stable"
    if policy.sticky_by is not None and key is None:
        return stable, "stable"
    at = share_of(key) if key is not None else draw()
    return (canary.version, "canary") if at * 100 < canary.percent else (stable, "stable")


def key_of(
    policy: TrafficPolicy, header: str | None, instances: list[Any] | None, features: list[str]
) -> str | None:
    """The request's routing key under the policy: the header's value, or the named feature of the
    first instance (an object keyed by feature name, or a row in the features' order)."""
    if policy.sticky_by is None:
        return None
    if policy.sticky_by == "header":
        return header or None
    feature = policy.sticky_by.removeprefix("feature:")
    if not instances:
        return None
    first = instances[0]
    if isinstance(first, dict):
        value = first.get(feature)
    elif isinstance(first, list) and feature in features and len(first) == len(features):
        value = first[features.index(feature)]
    else:
        value = None
    return None if value is None else str(value)
