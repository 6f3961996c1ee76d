"""A model version's rollout: brought in as the canary of the model's traffic policy (or first as a
shadow), moved through its steps on a schedule while its guards hold (aimass.guards), then promoted
(it becomes the champion and takes all the traffic), rolled back when a guard trips, or aborted by
hand (the stable version takes it all back). One rollout per model at a time.

The rollout's plan (RolloutPlan) is kept in the model's registry summary beside the traffic policy
and written with it, in the same conditional write: the policy's `rollout` is the plan's id (the
policy version that started it), under which every version's live figures are counted across the
steps. A rollout ends with its outcome (RolloutOutcome) in the summary, and every step is audited
(start_rollout, rollout_step, promote_rollout, rollback_rollout, abort_rollout).

`tick` (and `tick_all`, what the schedule runs: functions/rollout in AWS, a thread of `aimass serve`
locally) judges the guards and takes at most one step. Each of its writes is conditioned on the
policy version it read: of two ticks that race, one wins and the other changes nothing. A write that
fails (the registry unreachable) changes nothing either: the last policy written keeps serving.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from aimass import artifacts, guards
from aimass.contracts.common import iso_utc
from aimass.contracts.registry import (
    CanarySplit,
    GuardResult,
    LiveFigures,
    ModelSummary,
    Rollout,
    RolloutOutcome,
    RolloutPlan,
    RolloutStart,
    ShadowSplit,
    TrafficPolicy,
)
from aimass.errors import Conflict, IntegrityError, NotFound, ValidationFailed, field_error
from aimass.pipeline.notices import sns_subject
from aimass.registration import check_traffic_policy
from aimass.registry import Registry, version_meant
from aimass.serving import live as live_counts

log = logging.getLogger(__name__)

# Publishes a notice (subject, message) on the pipeline topic; a failure raises, and is logged.
Notify = Callable[[str, str], None]
State = Literal["none", "shadow", "canary", "promoted", "rolled_back", "aborted"]
OutcomeState = Literal["promoted", "rolled_back", "aborted"]
# The canary's share after a shadow phase of a rollout without steps.
CANARY_AFTER_SHADOW = 10.0


class RolloutInProgress(Conflict):
    code = "rollout_in_progress"


class NoRollout(Conflict):
    code = "no_rollout"


class TickFailed(Exception):
    """Some models' rollouts could not be ticked (each logged); the others were."""


def check_start(request: RolloutStart) -> None:
    """A plan that can run: steps rising, each in (0, 100], the last 100; a canary given with steps
    is the first step (or 0 with a shadow: a shadow phase first); a rollout sends the version some
    traffic. ValidationFailed naming each problem where it is."""
    problems = []
    steps = request.steps or []
    for i, step in enumerate(steps):
        if not 0 < step <= 100:
            problems.append(field_error(["body", "steps", i], f"{step:g} is not in (0, 100]", "step_range"))
        elif i and step <= steps[i - 1]:
            problems.append(
                field_error(
                    ["body", "steps", i], f"{step:g} does not rise above {steps[i - 1]:g}", "not_rising"
                )
            )
    if steps and steps[-1] != 100:
        problems.append(
            field_error(["body", "steps", len(steps) - 1], "the last step must be 100", "last_step")
        )
    canary = request.canary
    if canary == 0 and request.shadow == 0:
        problems.append(
            field_error(["body", "canary"], "0 without a shadow sends the version nothing", "no_traffic")
        )
    elif steps and canary not in (None, 0, steps[0]):
        problems.append(
            field_error(
                ["body", "canary"], f"{canary:g} is not the first step, {steps[0]:g}", "not_first_step"
            )
        )
    if problems:
        raise ValidationFailed("the rollout's plan cannot run", problems)


def start(
    registry: Registry, name: str, request: RolloutStart, actor: str, note: str | None = None
) -> Rollout:
    """Bring a version in as the canary, with its plan; with `request.shadow` > 0 it also runs on that
    share of the stable version's requests, and a shadow without a canary share (`canary` 0, or unset
    with a shadow) is a shadow phase first. A rollout already under way is a Conflict naming it."""
    model = registry.get_model(name)
    under_way = model.traffic
    if under_way.under_way:
        split = under_way.canary or under_way.shadow
        assert split is not None
        role = "canary" if under_way.canary is not None else "shadow"
        raise RolloutInProgress(
            f"a rollout of {name!r} is under way (v{split.version} as the {role} at {split.percent:g} %): "
            "promote or abort it first",
            [field_error(["path", "name"], f"v{split.version} is the {role}", "rollout_in_progress")],
        )
    check_start(request)
    percent = request.canary
    if percent is None:
        percent = 0 if request.shadow > 0 else request.steps[0] if request.steps else CANARY_AFTER_SHADOW
    shadow_first = percent == 0
    policy = TrafficPolicy(
        canary=None if shadow_first else CanarySplit(version=request.version, percent=percent),
        shadow=ShadowSplit(version=request.version, percent=request.shadow) if request.shadow else None,
        sticky_by=request.sticky_by,
    )
    check_traffic_policy(registry, name, policy, loc=["body", "version"])
    plan = RolloutPlan(
        id=under_way.version + 1,  # the version this write gives the policy, if it wins
        version=request.version,
        steps=request.steps or [],
        step=-1 if shadow_first else 0,
        interval_s=request.interval_s,
        started_by=actor,
        guards=request.guards,
    )
    registry.set_traffic_policy(name, policy, actor, note, "start_rollout", plan=plan, previous=under_way)
    return status(registry, name)


def status(registry: Registry, name: str) -> Rollout:
    """Where the rollout stands, with its guards judged now (nothing is changed)."""
    model = registry.get_model(name)
    return _status(model, _live(registry, model))


def _status(model: ModelSummary, live: dict[str, LiveFigures] | None) -> Rollout:
    policy, plan = model.traffic, _plan(model)
    state: State
    if policy.canary is not None:
        state = "canary"
    elif policy.shadow is not None:
        state = "shadow"
    else:
        state = model.last_rollout.state if model.last_rollout is not None else "none"
    return Rollout(
        name=model.name,
        state=state,
        stable=_stable(model),
        canary=policy.canary,
        shadow=policy.shadow,
        sticky_by=policy.sticky_by,
        policy_version=policy.version,
        plan=plan,
        next_step_at=iso_utc(_due(plan)) if plan is not None and _steps_itself(plan) else None,
        judgement=guards.judge(live, plan.guards) if plan is not None and live is not None else [],
        live=live,
        outcome=model.last_rollout,
    )


def promote(registry: Registry, name: str, actor: str, note: str | None = None) -> Rollout:
    """The version rolled out (the canary, else in a shadow phase the shadow) becomes the champion and
    serves every request, checked as an alias move is."""
    model = registry.get_model(name)
    rolled_out = _rolled_out(model)
    record = registry.get_version(name, rolled_out)
    artifacts.verified(record.artifact_uri, record.sha256)
    outcome = _outcome(model, rolled_out, "promoted", actor, _live(registry, model), note)
    registry.promote_canary(name, actor, note, outcome=outcome, previous=model.traffic)
    return status(registry, name)


def abort(registry: Registry, name: str, actor: str, note: str | None = None) -> Rollout:
    """The stable version takes every request back; the version rolled out stays registered, unaliased."""
    model = registry.get_model(name)
    outcome = _outcome(model, _rolled_out(model), "aborted", actor, _live(registry, model), note)
    registry.set_traffic_policy(
        name, TrafficPolicy(), actor, note, "abort_rollout", outcome=outcome, previous=model.traffic
    )
    return status(registry, name)


def tick(registry: Registry, name: str, now: datetime, notify: Notify) -> Rollout:
    """Judge the model's rollout and act on it: roll it back when a guard trips; else, once its step's
    interval has passed and the guards let it (aimass.guards.may_advance), take the next step, or
    promote it after the last. A rollout without steps is only judged. A tick that loses a race to
    another (Conflict) changes nothing; one whose write fails raises, and nothing changed."""
    model = registry.get_model(name)
    plan = _plan(model)
    if plan is None:
        return _status(model, _live(registry, model))
    live = _live(registry, model) or {}
    judgement = guards.judge(live, plan.guards)
    try:
        if (bad := guards.tripped(judgement)) is not None:
            _roll_back(registry, model, plan, bad, live, notify)
        elif _steps_itself(plan) and now >= _due(plan):
            _step(registry, model, plan, judgement, live, now, notify)
    except IntegrityError:  # the version's model file changed since it was registered: not a race
        raise
    except Conflict:
        log.info("rollout of %s changed meanwhile (another tick or a person): left as it is", name)
    return status(registry, name)


def tick_all(registry: Registry, now: datetime, notify: Notify) -> list[Rollout]:
    """Tick every model with a rollout under way; the rollouts as they stand after. A model whose tick
    fails is logged and the others ticked; then TickFailed names them."""
    ticked, failed = [], []
    for model in registry.list_models():
        if _plan(model) is None:
            continue
        try:
            ticked.append(tick(registry, model.name, now, notify))
        except Exception:
            log.exception("rollout of %s not ticked: its policy stays as it was", model.name)
            failed.append(model.name)
    if failed:
        raise TickFailed(f"rollouts not ticked: {', '.join(failed)}")
    return ticked


def _step(
    registry: Registry,
    model: ModelSummary,
    plan: RolloutPlan,
    judgement: list[GuardResult],
    live: dict[str, LiveFigures],
    now: datetime,
    notify: Notify,
) -> None:
    policy, actor = model.traffic, _actor(plan)
    if plan.step == -1:  # the shadow phase: on to the canary once the shadow agreed enough
        if next(r for r in judgement if r.guard == "agreement").status != "passed":
            return
        step, percent = 0, plan.steps[0] if plan.steps else CANARY_AFTER_SHADOW
    else:
        assert policy.canary is not None
        if not guards.may_advance(judgement, policy.canary.percent):
            return
        if plan.step + 1 >= len(plan.steps):
            _promote_on_schedule(registry, model, plan, live, notify)
            return
        step, percent = plan.step + 1, plan.steps[plan.step + 1]
    moved = TrafficPolicy(
        canary=CanarySplit(version=plan.version, percent=percent), sticky_by=policy.sticky_by
    )
    registry.set_traffic_policy(
        model.name,
        moved,
        actor,
        None,
        "rollout_step",
        plan=plan.model_copy(update={"step": step, "step_started_at": iso_utc(now)}),
        previous=policy,
        details={"step": step, "percent": percent, "judgement": [r.model_dump() for r in judgement]},
    )
    log.info("rollout of %s v%s: step %s, canary at %g %%", model.name, plan.version, step, percent)


def _promote_on_schedule(
    registry: Registry, model: ModelSummary, plan: RolloutPlan, live: dict[str, LiveFigures], notify: Notify
) -> None:
    record = registry.get_version(model.name, plan.version)
    artifacts.verified(record.artifact_uri, record.sha256)
    reason = f"every step passed its guards ({', '.join(f'{s:g} %' for s in plan.steps)})"
    outcome = _outcome(model, plan.version, "promoted", _actor(plan), live, reason)
    registry.promote_canary(model.name, _actor(plan), reason, outcome=outcome, previous=model.traffic)
    _publish(notify, f"aimass rollout {model.name}: v{plan.version} promoted", outcome)


def _roll_back(
    registry: Registry,
    model: ModelSummary,
    plan: RolloutPlan,
    bad: GuardResult,
    live: dict[str, LiveFigures],
    notify: Notify,
) -> None:
    """Empty the policy (the stable version serves everything), record why, and say so on the topic."""
    reason = f"guard {bad.guard} tripped: {bad.detail}"
    outcome = _outcome(model, plan.version, "rolled_back", _actor(plan), live, reason, bad)
    registry.set_traffic_policy(
        model.name,
        TrafficPolicy(),
        _actor(plan),
        reason,
        "rollback_rollout",
        outcome=outcome,
        previous=model.traffic,
        details={"guard": bad.model_dump()},
    )
    log.warning("rollout of %s v%s rolled back: %s", model.name, plan.version, reason)
    _publish(notify, f"aimass rollout {model.name}: v{plan.version} rolled back ({bad.guard})", outcome)


def _publish(notify: Notify, subject: str, outcome: RolloutOutcome) -> None:
    """A notice for people, then the outcome as JSON on its last line, for scripts. A notice that
    cannot be published is logged: it never undoes what the registry recorded."""
    lines = [f"The rollout {outcome.id} of v{outcome.version} ended: {outcome.state} by {outcome.actor}."]
    if outcome.reason:
        lines.append(outcome.reason)
    for variant, figures in (outcome.live or {}).items():
        lines.append(
            f"  {variant}: {figures.requests} requests, error rate {figures.error_rate}, "
            f"p99 <= {figures.latency_p99_ms} ms, accuracy {figures.accuracy} of {figures.labelled} labelled"
        )
    lines += ["", "The outcome as JSON, for scripts, is the last line:", json.dumps(outcome.model_dump())]
    try:
        notify(sns_subject(subject), "\n".join(lines))
    except Exception:
        log.exception("notice %r not published (the rollout's outcome is recorded)", subject)


def _plan(model: ModelSummary) -> RolloutPlan | None:
    """The plan of the rollout under way: the one kept with the policy, while the policy is its own."""
    plan = model.rollout_plan
    if plan is None or not model.traffic.under_way or model.traffic.rollout != plan.id:
        return None
    return plan


def _steps_itself(plan: RolloutPlan) -> bool:
    """Whether the schedule moves it on: it has steps, or a shadow phase to end."""
    return bool(plan.steps) or plan.step == -1


def _due(plan: RolloutPlan) -> datetime:
    return datetime.fromisoformat(plan.step_started_at) + timedelta(seconds=plan.interval_s)


def _actor(plan: RolloutPlan) -> str:
    return f"rollout/{plan.id}"


def _stable(model: ModelSummary) -> int | None:
    try:
        return version_meant(model, None)
    except NotFound:  # every version archived and no champion
        return None


def _live(registry: Registry, model: ModelSummary) -> dict[str, LiveFigures] | None:
    """Each version's live figures under the rollout (`stable`, `canary`, `shadow`); None without one."""
    policy = model.traffic
    if not policy.under_way:
        return None
    counts = registry.live_counts(model.name, policy.live_key)
    stable = _stable(model)
    live = {
        "stable": LiveFigures.model_validate(live_counts.summary(counts.get(stable, {}) if stable else {}))
    }
    if policy.canary is not None:
        live["canary"] = LiveFigures.model_validate(
            live_counts.summary(counts.get(policy.canary.version, {}))
        )
    if policy.shadow is not None:
        # The shadow's own runs (`sh_` counters), apart from what the same version served as the canary
        shadowed = counts.get(policy.shadow.version, {})
        live["shadow"] = LiveFigures.model_validate(live_counts.shadow_summary(shadowed))
    return live


def _outcome(
    model: ModelSummary,
    version: int,
    state: OutcomeState,
    actor: str,
    live: dict[str, LiveFigures] | None,
    reason: str | None,
    guard: GuardResult | None = None,
) -> RolloutOutcome:
    return RolloutOutcome(
        id=model.traffic.live_key,
        version=version,
        state=state,
        actor=actor,
        reason=reason,
        guard=guard,
        live=live,
    )


def _rolled_out(model: ModelSummary) -> int:
    """The version of the rollout under way: the canary's, else (a shadow phase) the shadow's."""
    split = model.traffic.canary or model.traffic.shadow
    if split is None:
        raise _no_rollout(model.name)
    return split.version


def _no_rollout(name: str) -> NoRollout:
    return NoRollout(
        f"model {name!r} has no rollout under way",
        [field_error(["path", "name"], "no canary or shadow", "no_rollout")],
    )
