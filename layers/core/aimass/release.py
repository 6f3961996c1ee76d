"""Releasing a model version: the one way a version reaches the traffic of requests that name none,
whoever asks (the training pipeline's Release step, an admin through the API).

The model's release policy (ReleasePolicy in its summary) says how: `direct` moves `champion` at
once; `canary` starts a rollout of the version with the policy's settings; `shadow-then-canary`
starts one with a 0 % canary and the policy's shadow share, which the rollout's steps take on to
the canary. With `approval` the version first waits as `pending_approval` until an admin approves
(now, or for a time: a scheduled release) or rejects it. A version that already serves every request
naming none (the model has no champion and it is the latest version) is released directly: there
is no stable version to compare it with.

A rollout under way when a release starts is superseded: it is aborted, with a note naming the
release that replaced it, and the new version's release starts. A release of the version being
rolled out already is a 409.

Each version's release is kept in the registry (RELEASE#<version>), written on the condition that
it is still in the state it was read in, so two approvers, or two tickers starting one scheduled
release, cannot both start it. Every change is audited: request_approval, approve_version,
reject_version, schedule_release, release_version, release_failed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aimass import rollout
from aimass.contracts.common import iso_utc, utcnow
from aimass.contracts.registry import (
    AuditRecord,
    CanarySplit,
    ModelSummary,
    Release,
    ReleasePolicy,
    ReleaseRollout,
    ReleaseView,
    Rollout,
    RolloutStart,
    TrafficPolicy,
)
from aimass.errors import AimassError, Conflict, NotFound, field_error
from aimass.registration import check_traffic_policy, set_alias
from aimass.registry import Registry, version_meant

# A release that is waiting: another release of the same version is refused meanwhile.
WAITING = ("pending_approval", "scheduled")
# What a new release of a version may replace: none yet, or one that ended.
ENDED = ("none", "released", "rejected", "failed")


class ReleasePending(Conflict):
    code = "release_pending"


class NotPending(Conflict):
    code = "not_pending"


class AlreadyRollingOut(Conflict):
    code = "already_rolling_out"


def policy(registry: Registry, name: str) -> ReleasePolicy:
    return registry.get_model(name).release_policy


def set_policy(
    registry: Registry, name: str, new: ReleasePolicy, actor: str, note: str | None = None
) -> ReleasePolicy:
    """Store the model's next release policy (audited: set_release_policy). Releases already waiting
    are started under the policy in force when they start."""
    return registry.set_release_policy(name, new, actor, note)


def view(registry: Registry, name: str) -> ReleaseView:
    model = registry.get_model(name)
    return ReleaseView(name=name, policy=model.release_policy, releases=registry.list_releases(name))


def _as_utc(at: datetime) -> datetime:
    """A time without a zone is read as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _audit(action: Any, release: Release, actor: str, note: str | None, **details: Any) -> AuditRecord:
    return AuditRecord(
        actor=actor,
        note=note,
        action=action,
        model=release.name,
        details={"version": release.version, "mode": release.mode, "origin": release.origin, **details},
    )


def _save(
    registry: Registry, release: Release, audit: AuditRecord | None, replacing: tuple[str, ...]
) -> Release:
    """The release written if it is still in a `replacing` state; else NotPending naming its state."""
    try:
        return registry.save_release(release, audit, replacing)
    except Conflict:
        found = registry.get_release(release.name, release.version)
        state = found.state if found else "none"
        raise NotPending(
            f"the release of v{release.version} of {release.name!r} is {state} now, not "
            f"{' or '.join(s for s in replacing if s != 'none')}",
            [field_error(["path", "version"], f"release is {state}", "not_pending")],
        ) from None


def _stable(model: ModelSummary) -> int | None:
    try:
        return version_meant(model, None)
    except NotFound:  # every version archived and no champion
        return None


def _rollout_request(version: int, chosen: ReleasePolicy) -> RolloutStart:
    shadow_first = chosen.mode == "shadow-then-canary"
    return RolloutStart(
        version=version,
        canary=0 if shadow_first else chosen.canary,
        shadow=chosen.shadow if shadow_first else 0,
        sticky_by=chosen.sticky_by,
        steps=chosen.steps,
        interval_s=chosen.interval_s,
        guards=chosen.guards,
    )


def _goes_direct(model: ModelSummary, version: int) -> bool:
    return model.release_policy.mode == "direct" or _stable(model) in (None, version)


def _check_startable(registry: Registry, name: str, version: int) -> ModelSummary:
    """What starting the release would check, before anything is written: the version is not being
    rolled out already, and (for a rollout) it may be the model's canary."""
    model = registry.get_model(name)
    traffic = model.traffic
    if version in {split.version for split in (traffic.canary, traffic.shadow) if split is not None}:
        raise AlreadyRollingOut(
            f"v{version} of {name!r} is being rolled out already (`aimass rollout status {name}`)",
            [field_error(["path", "version"], "under way", "already_rolling_out")],
        )
    if version in model.archived_versions:
        raise Conflict(
            f"version {version} of {name!r} is archived; unarchive it first",
            [field_error(["path", "version"], "archived", "archived")],
        )
    if not _goes_direct(model, version):
        percent = _rollout_request(version, model.release_policy).canary
        split = CanarySplit(version=version, percent=10 if percent is None else percent)
        check_traffic_policy(registry, name, TrafficPolicy(canary=split), loc=["path", "version"])
    return model


def _start(
    registry: Registry,
    claimed: Release,
    actor: str,
    note: str | None,
    audit: AuditRecord,
    replacing: tuple[str, ...],
) -> Release:
    """Claim the release (written as `released` if it is still in a `replacing` state), then start it
    under the policy in force: an alias move or a rollout, superseding a rollout under way. A start
    that fails after the claim leaves the release `failed`, with why, and raises."""
    name, version = claimed.name, claimed.version
    model = registry.get_model(name)
    release = claimed.model_copy(update={"state": "released", "mode": model.release_policy.mode})
    release.started_at = utcnow()
    _save(registry, release, audit, replacing)
    try:
        if model.traffic.under_way:
            rollout.abort(registry, name, actor, f"superseded by the release of v{version}")
            model = registry.get_model(name)
        if _goes_direct(model, version):
            moved = set_alias(registry, name, "champion", version, actor, note)
            release.alias = moved.alias
            if model.release_policy.mode != "direct":
                release.mode = "direct"
                release.reason = (
                    f"v{version} already serves the requests that name no version (no champion to "
                    "compare it with): champion moved at once"
                )
        else:
            started = rollout.start(
                registry, name, _rollout_request(version, model.release_policy), actor, note
            )
            release.rollout = ReleaseRollout(state=started.state, policy_version=started.policy_version)
    except Exception as error:  # a refusal, or an AWS error that outlived its retries
        reason = error.message if isinstance(error, AimassError) else f"{type(error).__name__}: {error}"
        failed = release.model_copy(update={"state": "failed", "reason": reason})
        registry.save_release(failed, _audit("release_failed", failed, actor, reason), ("released",))
        raise
    return registry.save_release(release, None, ("released",))


def release(
    registry: Registry,
    name: str,
    version: int,
    actor: str,
    note: str | None = None,
    origin: dict[str, Any] | None = None,
    at: datetime | None = None,
    now: datetime | None = None,
) -> Release:
    """Release a version through the model's release policy: wait for approval, wait for `at`, or
    start now. `origin` says where it came from (`{"pipeline": run, "report": uri}`, `{"api": ...}`)."""
    now = now or datetime.now(UTC)
    registry.get_version(name, version)  # 404 for an unknown model or version
    model = registry.get_model(name)
    waiting = registry.get_release(name, version)
    retried = origin is not None and "pipeline" in origin and waiting is not None and waiting.origin == origin
    if retried and waiting is not None and waiting.state != "failed":
        return waiting  # the same run's Release step again (a retry): what it got the first time
    if waiting is not None and waiting.state in WAITING:
        raise ReleasePending(
            f"v{version} of {name!r} is {waiting.state} already: approve or reject it",
            [field_error(["path", "version"], waiting.state, "release_pending")],
        )
    chosen = model.release_policy
    request = Release(
        name=name,
        version=version,
        state="pending_approval",
        mode=chosen.mode,
        origin=origin or {},
        requested_by=actor,
        at=iso_utc(_as_utc(at)) if at is not None else None,
    )
    if chosen.approval:
        report = request.origin.get("report")
        audit = _audit("request_approval", request, actor, note, report=report, at=request.at)
        return _save(registry, request, audit, ENDED)
    if at is not None and _as_utc(at) > now:
        scheduled = request.model_copy(update={"state": "scheduled"})
        return _save(
            registry, scheduled, _audit("schedule_release", scheduled, actor, note, at=scheduled.at), ENDED
        )
    _check_startable(registry, name, version)
    return _start(registry, request, actor, note, _audit("release_version", request, actor, note), ENDED)


def _waiting(registry: Registry, name: str, version: int, states: tuple[str, ...]) -> Release:
    registry.get_version(name, version)  # 404 for an unknown model or version
    found = registry.get_release(name, version)
    if found is None or found.state not in states:
        state = found.state if found else "not asked for"
        raise NotPending(
            f"v{version} of {name!r} is not waiting for approval (its release is {state})",
            [field_error(["path", "version"], f"release is {state}", "not_pending")],
        )
    return found


def approve(
    registry: Registry,
    name: str,
    version: int,
    actor: str,
    note: str | None = None,
    at: datetime | None = None,
    now: datetime | None = None,
) -> Release:
    """Approve a version waiting for it: its release starts now, or is scheduled for `at` (else for the
    time it was asked for with). A version not waiting: NotPending (409); nothing changes."""
    now = now or datetime.now(UTC)
    pending = _waiting(registry, name, version, ("pending_approval",))
    when = _as_utc(at) if at is not None else (datetime.fromisoformat(pending.at) if pending.at else None)
    decided = pending.model_copy(update={"decided_by": actor, "decided_at": iso_utc(now), "note": note})
    if when is not None and when > now:
        scheduled = decided.model_copy(update={"state": "scheduled", "at": iso_utc(when)})
        audit = _audit("approve_version", scheduled, actor, note, at=scheduled.at)
        return _save(registry, scheduled, audit, ("pending_approval",))
    _check_startable(registry, name, version)
    audit = _audit("approve_version", decided, actor, note, at=None)
    return _start(registry, decided, actor, note, audit, ("pending_approval",))


def reject(registry: Registry, name: str, version: int, actor: str, note: str) -> Release:
    """Reject a version waiting for approval (or for its scheduled time): it stays registered and
    unreleased; the stable version keeps serving."""
    waiting = _waiting(registry, name, version, WAITING)
    rejected = waiting.model_copy(
        update={"state": "rejected", "decided_by": actor, "decided_at": utcnow(), "note": note}
    )
    return _save(registry, rejected, _audit("reject_version", rejected, actor, note), (waiting.state,))


def start_due(registry: Registry, now: datetime, actor: str = "schedule") -> list[Release]:
    """Start every scheduled release whose time has come, for every model; what this call started (a
    release that could not start is among them as `failed`). Safe to run from two tickers at once:
    each release is claimed by a conditional write, and the one that loses the claim skips it."""
    started = []
    for model in registry.list_models():
        for due in registry.list_releases(model.name):
            if due.state != "scheduled" or due.at is None or datetime.fromisoformat(due.at) > now:
                continue
            note = f"scheduled for {due.at}"
            try:
                audit = _audit("release_version", due, actor, note, at=due.at)
                started.append(_start(registry, due, actor, note, audit, ("scheduled",)))
            except NotPending:  # another ticker claimed it first
                continue
            except Exception:  # kept as `failed`, with why; the other due releases still start
                failed = registry.get_release(model.name, due.version)
                if failed is not None and failed.state == "failed":
                    started.append(failed)
    return started


def tick(registry: Registry, now: datetime, notify: rollout.Notify) -> tuple[list[Release], list[Rollout]]:
    """What the schedule does each time (RolloutFunction in AWS, the ticker of `aimass serve`): start
    the releases that are due, then judge and step every rollout under way, those just started
    included (their first step waits out its interval). The releases started and the rollouts as
    they then stand; a rollout that could not be ticked raises rollout.TickFailed after the rest."""
    return start_due(registry, now), rollout.tick_all(registry, now, notify)
