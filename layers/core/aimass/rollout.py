"""A model version's rollout: brought in as the canary of the model's traffic policy, its shadow
(run on a share of the stable version's requests, never answering), or both, then promoted (it
becomes the champion and takes all the traffic) or aborted (the stable version takes it all
back). One rollout per model at a time; every step is audited (start_rollout, promote_rollout,
abort_rollout). While one is under way its status carries each version's live figures, as every
container counted them (aimass.serving.live). Steps on a schedule, guards and automatic rollback
are not built yet (docs/rollout.md)."""

from __future__ import annotations

from aimass import artifacts
from aimass.contracts.registry import (
    CanarySplit,
    LiveFigures,
    Rollout,
    RolloutStart,
    ShadowSplit,
    TrafficPolicy,
)
from aimass.errors import Conflict, NotFound, field_error
from aimass.registration import check_traffic_policy
from aimass.registry import Registry, version_meant
from aimass.serving import live as live_counts


class RolloutInProgress(Conflict):
    code = "rollout_in_progress"


class NoRollout(Conflict):
    code = "no_rollout"


def status(registry: Registry, name: str) -> Rollout:
    model = registry.get_model(name)
    policy = model.traffic
    try:
        stable: int | None = version_meant(model, None)
    except NotFound:  # every version archived and no champion
        stable = None
    live = None
    if policy.under_way:
        counts = registry.live_counts(name, policy.live_key)
        versions = {"stable": stable}
        if policy.canary is not None:
            versions["canary"] = policy.canary.version
        live = {
            variant: LiveFigures.model_validate(
                live_counts.summary(counts.get(version, {}) if version else {})
            )
            for variant, version in versions.items()
        }
        if policy.shadow is not None:
            # The shadow's own runs (`sh_` counters), apart from what the same version served as canary
            shadowed = counts.get(policy.shadow.version, {})
            live["shadow"] = LiveFigures.model_validate(live_counts.shadow_summary(shadowed))
    return Rollout(
        name=name,
        state="canary" if policy.canary is not None else "shadow" if policy.shadow is not None else "none",
        stable=stable,
        canary=policy.canary,
        shadow=policy.shadow,
        sticky_by=policy.sticky_by,
        policy_version=policy.version,
        live=live,
    )


def start(
    registry: Registry, name: str, request: RolloutStart, actor: str, note: str | None = None
) -> Rollout:
    """Bring a version in as the canary, as the shadow (`request.shadow` > 0), or both; a shadow
    without a canary share (`canary` 0, or unset with a shadow) is a shadow-only rollout. A rollout
    already under way is a Conflict naming it."""
    current = registry.get_model(name).traffic
    if current.under_way:
        role, split = ("canary", current.canary) if current.canary is not None else ("shadow", current.shadow)
        assert split is not None
        raise RolloutInProgress(
            f"a rollout of {name!r} is under way (v{split.version}, the {role}, at {split.percent:g} %): "
            "promote or abort it first",
            [field_error(["path", "name"], f"v{split.version} is the {role}", "rollout_in_progress")],
        )
    percent = request.canary
    if percent is None:
        percent = 0 if request.shadow > 0 else request.steps[0] if request.steps else 10
    shadow_only = request.shadow > 0 and percent == 0
    policy = TrafficPolicy(
        canary=None if shadow_only else CanarySplit(version=request.version, percent=percent),
        shadow=ShadowSplit(version=request.version, percent=request.shadow) if request.shadow > 0 else None,
        sticky_by=request.sticky_by,
    )
    check_traffic_policy(registry, name, policy, loc=["body", "version"])
    registry.set_traffic_policy(name, policy, actor, note, "start_rollout")
    return status(registry, name)


def promote(registry: Registry, name: str, actor: str, note: str | None = None) -> Rollout:
    """The version rolled out (the canary, else the shadow) becomes the champion and serves every
    request, checked as an alias move is."""
    rolled_out = _rolled_out(registry, name)
    record = registry.get_version(name, rolled_out)
    artifacts.verified(record.artifact_uri, record.sha256)
    registry.promote_canary(name, actor, note)
    return status(registry, name)


def abort(registry: Registry, name: str, actor: str, note: str | None = None) -> Rollout:
    """The stable version takes every request back; the canary (or shadow) stays registered,
    unaliased."""
    _rolled_out(registry, name)
    registry.set_traffic_policy(name, TrafficPolicy(), actor, note, "abort_rollout")
    return status(registry, name)


def _rolled_out(registry: Registry, name: str) -> int:
    """The version of the rollout under way: the canary's, else (a shadow-only rollout) the shadow's."""
    policy = registry.get_model(name).traffic
    split = policy.canary or policy.shadow
    if split is None:
        raise NoRollout(
            f"model {name!r} has no rollout under way",
            [field_error(["path", "name"], "no canary or shadow", "no_rollout")],
        )
    return split.version
