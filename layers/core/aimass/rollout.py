"""A model version's rollout: brought in as the canary of the model's traffic policy, then promoted
(it becomes the champion and takes all the traffic) or aborted (the stable version takes it all
back). One rollout per model at a time; every step is audited (start_rollout, promote_rollout,
abort_rollout). While one is under way its status carries each version's live figures, as every
container counted them (aimass.serving.live). Steps on a schedule, guards and automatic rollback
are not built yet (docs/rollout.md)."""

from __future__ import annotations

from aimass import artifacts
from aimass.contracts.registry import CanarySplit, LiveFigures, Rollout, RolloutStart, TrafficPolicy
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
    if policy.canary is not None:
        counts = registry.live_counts(name, policy.live_key)
        versions = {"stable": stable, "canary": policy.canary.version}
        live = {
            variant: LiveFigures.model_validate(
                live_counts.summary(counts.get(version, {}) if version else {})
            )
            for variant, version in versions.items()
        }
    return Rollout(
        name=name,
        state="canary" if policy.canary is not None else "none",
        stable=stable,
        canary=policy.canary,
        sticky_by=policy.sticky_by,
        policy_version=policy.version,
        live=live,
    )


def start(
    registry: Registry, name: str, request: RolloutStart, actor: str, note: str | None = None
) -> Rollout:
    """Bring a version in as the canary; a rollout already under way is a Conflict naming it."""
    under_way = registry.get_model(name).traffic.canary
    if under_way is not None:
        raise RolloutInProgress(
            f"a rollout of {name!r} is under way (v{under_way.version} at {under_way.percent:g} %): promote "
            "or abort it first",
            [field_error(["path", "name"], f"v{under_way.version} is the canary", "rollout_in_progress")],
        )
    percent = request.canary
    if percent is None:
        percent = request.steps[0] if request.steps else 10
    policy = TrafficPolicy(
        canary=CanarySplit(version=request.version, percent=percent), sticky_by=request.sticky_by
    )
    check_traffic_policy(registry, name, policy, loc=["body", "version"])
    registry.set_traffic_policy(name, policy, actor, note, "start_rollout")
    return status(registry, name)


def promote(registry: Registry, name: str, actor: str, note: str | None = None) -> Rollout:
    """The canary becomes the champion and serves every request, checked as an alias move is."""
    canary = _canary(registry, name)
    record = registry.get_version(name, canary.version)
    artifacts.verified(record.artifact_uri, record.sha256)
    registry.promote_canary(name, actor, note)
    return status(registry, name)


def abort(registry: Registry, name: str, actor: str, note: str | None = None) -> Rollout:
    """The stable version takes every request back; the canary stays registered, unaliased."""
    _canary(registry, name)
    registry.set_traffic_policy(name, TrafficPolicy(), actor, note, "abort_rollout")
    return status(registry, name)


def _canary(registry: Registry, name: str) -> CanarySplit:
    canary = registry.get_model(name).traffic.canary
    if canary is None:
        raise NoRollout(
            f"model {name!r} has no rollout under way",
            [field_error(["path", "name"], "no canary", "no_rollout")],
        )
    return canary
