"""The retraining schedules: template.yaml's RetrainingSchedule1..5 (EventBridge Scheduler), one per
model in the stack's RetrainingModels, in the schedule group `aimass-<stage>-retraining`. Each starts
the training pipeline with `{"model": NAME, "trigger": "schedule"}` on RetrainingSchedule.

`list_schedules` reads them through the Scheduler API; `run_schedule` runs one now, as Scheduler does
when it fires: it starts an execution of the schedule's target with the schedule's input. In the
local stack (which creates the schedules in its embedded AWS, where nothing fires them) this is how a
schedule runs; in AWS it runs one between its times. `aimass pipeline schedules` and
`aimass pipeline schedule-run NAME` call them.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from aimass import aws
from aimass.config import settings
from aimass.errors import BadRequest, NotFound


def schedule_group() -> str:
    """The group the stack's retraining schedules are in (template.yaml's RetrainingScheduleGroup)."""
    s = settings()
    return s.retraining_schedule_group or f"aimass-{s.stage}-retraining"


def list_schedules() -> list[dict[str, Any]]:
    """Every retraining schedule, by name: `name`, `model` (from its input), `expression`
    (e.g. "rate(1 day)"), `timezone`, `state` (ENABLED or DISABLED), `flexible_window_minutes`
    (None: fires on time), `target` (the state machine's ARN), `input` (the run's input, parsed)
    and `arn`. An empty list when the stack has none (RetrainingModels empty)."""
    scheduler = aws.client("scheduler")
    group = schedule_group()
    names: list[str] = []
    try:
        for page in scheduler.get_paginator("list_schedules").paginate(GroupName=group):
            names += [found["Name"] for found in page.get("Schedules", [])]
    except ClientError as error:
        if _code(error) == "ResourceNotFoundException":  # no schedule, no group
            return []
        raise
    return [_describe(scheduler.get_schedule(Name=name, GroupName=group)) for name in sorted(names)]


def run_schedule(name: str) -> str:
    """Run the retraining schedule `name` now, exactly as EventBridge Scheduler does when it fires:
    start an execution of its target state machine with its input (an execution name of Step
    Functions' choosing). Returns the execution's ARN. A disabled schedule runs too: it was asked for.

    Raises NotFound for a schedule the group does not have, and BadRequest for one whose target is not
    a Step Functions state machine."""
    scheduler = aws.client("scheduler")
    group = schedule_group()
    try:
        schedule = scheduler.get_schedule(Name=name, GroupName=group)
    except ClientError as error:
        if _code(error) == "ResourceNotFoundException":
            raise NotFound(
                f"no retraining schedule {name!r} in schedule group {group}",
                [{"loc": ["schedule"], "message": "unknown schedule", "type": "not_found"}],
            ) from None
        raise
    target = schedule["Target"]
    if ":states:" not in target["Arn"] or ":stateMachine:" not in target["Arn"]:
        raise BadRequest(f"schedule {name!r} targets {target['Arn']}, not a Step Functions state machine")
    started = aws.client("stepfunctions").start_execution(
        stateMachineArn=target["Arn"], input=target.get("Input") or "{}"
    )
    return str(started["executionArn"])


def _describe(schedule: dict[str, Any]) -> dict[str, Any]:
    target = schedule["Target"]
    try:
        run_input = json.loads(target.get("Input") or "{}")
    except ValueError:
        run_input = target.get("Input")
    window = schedule.get("FlexibleTimeWindow") or {}
    flexible = window.get("MaximumWindowInMinutes") if window.get("Mode") == "FLEXIBLE" else None
    return {
        "name": schedule["Name"],
        "model": run_input.get("model") if isinstance(run_input, dict) else None,
        "expression": schedule["ScheduleExpression"],
        "timezone": schedule.get("ScheduleExpressionTimezone") or "UTC",
        "state": schedule.get("State", "ENABLED"),
        "flexible_window_minutes": flexible,
        "target": target["Arn"],
        "input": run_input,
        "arn": schedule.get("Arn"),
    }


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
