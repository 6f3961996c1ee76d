"""Retraining triggers in the local stack: the template's schedules and EventBridge rules, made in
the embedded AWS, and a rule's Step Functions target started as EventBridge starts it.

`install(names, parameters)` creates, with their properties resolved as aimass.local.statemachines
resolves them (`parameters` are the values that are not the template's Defaults: the local stack
schedules the `breast-cancer` demo):
- every `AWS::Scheduler::ScheduleGroup` and `AWS::Scheduler::Schedule` whose condition holds,
  through the Scheduler API: expression, time zone, flexible window, state, and the target's ARN
  (the local state machine), input and retry policy. moto keeps schedules and never fires them:
  aimass.cli.pipeline_schedules.run_schedule runs one, as Scheduler does when it fires. The group's
  name is set as AIMASS_RETRAINING_SCHEDULE_GROUP.
- every `AWS::Events::Rule` whose condition holds, through the EventBridge API: its bus, pattern and
  state, and each target's ARN, Input or InputTransformer.
Only schedules and rules whose targets are the template's state machines are made (the seam below
delivers to nothing else; the others are left out with a warning). Roles are local ones (moto checks
none); dead-letter queues and retries are not made: a start that fails here is logged, where AWS
would retry it and dead-letter it.

The seam into moto's internals (moto >=5.1.10,<5.3 in pyproject.toml;
tests/integration/test_retraining_triggers.py checks that it still holds): moto's EventBridge
delivers a matching event to log groups, SQS queues, buses, archives and API destinations in
`moto.events.models.Rule.send_to_targets(self, original_event, transform_input=True)` (called by
PutEvents for every rule of the bus), and raises NotImplementedError for any other target, a Step
Functions state machine among them. The wrapper starts an execution of each state machine target of
an ENABLED rule whose pattern matches, through the Step Functions API, with the input EventBridge
gives it: the target's Input, else the event through its InputTransformer (moto's own
`moto.events.utils.EventTemplateParser.parse`), else the whole event. The other targets keep moto's
behaviour.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from aimass import aws
from aimass.config import settings
from aimass.local import notifications, template
from aimass.local.statemachines import Resolver

logger = logging.getLogger(__name__)

SCHEDULER_ROLE = "aimass-local-scheduler"
EVENTS_ROLE = "aimass-local-events"
GROUP_VARIABLE = "AIMASS_RETRAINING_SCHEDULE_GROUP"


@dataclass
class Installed:
    """What `install` made: schedules as (group, name), rules by name."""

    schedules: list[tuple[str, str]] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)


@dataclass
class _State:
    send_to_targets: Any  # moto's own Rule.send_to_targets
    environment: list[str]


_lock = threading.Lock()
_state: _State | None = None


def install(names: Mapping[str, str] | None = None, parameters: Mapping[str, str] | None = None) -> Installed:
    """Create (or update) the template's schedules and rules in the embedded AWS, and make a rule's
    Step Functions targets start (see the module's doc). Idempotent; `uninstall` undoes it."""
    document = template.load(template.template_path())
    resources = document["Resources"]
    kinds = {"AWS::Scheduler::ScheduleGroup", "AWS::Scheduler::Schedule", "AWS::Events::Rule"}
    present = {
        logical_id: resource for logical_id, resource in resources.items() if resource.get("Type") in kinds
    }
    if not present:
        return Installed()
    resolver = Resolver.of(names, parameters)
    chosen = {
        logical_id: resource
        for logical_id, resource in present.items()
        if ("Condition" not in resource or resolver.condition(resource["Condition"]))
        and _starts_a_machine(resolver, logical_id, resource)
    }
    _patch()
    installed = Installed()
    groups = [
        _group(resolver, logical_id, resource["Properties"])
        for logical_id, resource in chosen.items()
        if resource["Type"] == "AWS::Scheduler::ScheduleGroup"
    ]
    for logical_id, resource in chosen.items():
        if resource["Type"] == "AWS::Scheduler::Schedule":
            installed.schedules.append(_schedule(resolver, logical_id, resource["Properties"]))
        elif resource["Type"] == "AWS::Events::Rule":
            installed.rules.append(_rule(resolver, logical_id, resource["Properties"]))
    environment = {GROUP_VARIABLE: groups[0]} if len(groups) == 1 else {}
    os.environ.update(environment)
    settings.cache_clear()
    with _lock:
        assert _state is not None
        _state.environment += list(environment)
    return installed


def uninstall() -> None:
    """Give moto its own EventBridge delivery back and unset the variables `install` set (moto keeps
    the schedules and rules until it stops). Idempotent."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is None:
        return
    from moto.events.models import Rule

    Rule.send_to_targets = state.send_to_targets  # type: ignore[method-assign]
    for variable in state.environment:
        os.environ.pop(variable, None)
    settings.cache_clear()


def _group(resolver: Resolver, logical_id: str, properties: dict[str, Any]) -> str:
    scheduler = aws.client("scheduler")
    name = resolver.resolve(properties["Name"], f"{logical_id}.Name")
    try:
        scheduler.get_schedule_group(Name=name)
    except ClientError:
        # (moto's create replaces a group that exists, with its schedules: ask first)
        scheduler.create_schedule_group(Name=name)
    return name


def _schedule(resolver: Resolver, logical_id: str, properties: dict[str, Any]) -> tuple[str, str]:
    scheduler = aws.client("scheduler")

    def value(key: str, default: str | None = None) -> str | None:
        found = properties.get(key)
        return default if found is None else resolver.resolve(found, f"{logical_id}.{key}")

    target = properties["Target"]
    run_input = (
        {"Input": resolver.resolve(target["Input"], f"{logical_id}.Target.Input")}
        if "Input" in target
        else {}
    )
    arguments: dict[str, Any] = {
        "Name": value("Name"),
        "GroupName": value("GroupName", "default"),
        "ScheduleExpression": value("ScheduleExpression"),
        "ScheduleExpressionTimezone": value("ScheduleExpressionTimezone", "UTC"),
        "FlexibleTimeWindow": properties["FlexibleTimeWindow"],
        "State": value("State", "ENABLED"),
        "Target": {
            "Arn": resolver.resolve(target["Arn"], f"{logical_id}.Target.Arn"),
            "RoleArn": notifications.service_role_arn(SCHEDULER_ROLE, "scheduler.amazonaws.com"),
            **run_input,
            **({"RetryPolicy": target["RetryPolicy"]} if "RetryPolicy" in target else {}),
        },
    }
    if "Description" in properties:
        arguments["Description"] = value("Description")
    try:
        scheduler.create_schedule(**arguments)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConflictException":
            raise
        scheduler.update_schedule(**arguments)
    return str(arguments["GroupName"]), str(arguments["Name"])


def _rule(resolver: Resolver, logical_id: str, properties: dict[str, Any]) -> str:
    events = aws.client("events")
    name = resolver.resolve(properties["Name"], f"{logical_id}.Name") if "Name" in properties else logical_id
    bus = resolver.resolve(properties.get("EventBusName", "default"), f"{logical_id}.EventBusName")
    rule: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": properties.get("State", "ENABLED")}
    if "EventPattern" in properties:
        rule["EventPattern"] = json.dumps(properties["EventPattern"])
    if "ScheduleExpression" in properties:
        rule["ScheduleExpression"] = properties["ScheduleExpression"]
    if "Description" in properties:
        rule["Description"] = properties["Description"]
    events.put_rule(**rule)
    targets = []
    for target in properties.get("Targets", []):
        where = f"{logical_id}.Targets.{target['Id']}"
        found: dict[str, Any] = {"Id": target["Id"], "Arn": resolver.resolve(target["Arn"], f"{where}.Arn")}
        if "RoleArn" in target:
            found["RoleArn"] = notifications.service_role_arn(EVENTS_ROLE, "events.amazonaws.com")
        if "Input" in target:
            found["Input"] = resolver.resolve(target["Input"], f"{where}.Input")
        if "InputTransformer" in target:
            found["InputTransformer"] = target["InputTransformer"]
        targets.append(found)
    if targets:
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    return name


# Functions a schedule invokes in AWS that the local stack runs on a timer of its own instead: the
# rollout tick (aimass.local.ticker, every AIMASS_ROLLOUT_TICK_S).
RUN_BY_THE_STACK = {"RolloutFunction"}
# Functions a schedule invokes in AWS whose work the local stack does only when asked: the monitor
# runs (`aimass monitor run NAME`, POST /v1/models/{name}/monitor:run; docs/monitoring.md). A local
# stack's traffic is a developer's few requests: a daily run would mostly find too few rows.
ON_DEMAND_LOCALLY = {"MonitorFunction"}


def _starts_a_machine(resolver: Resolver, logical_id: str, resource: dict[str, Any]) -> bool:
    """Whether a schedule's or rule's targets are the template's state machines (all this stack
    delivers to). One that starts anything else is left out, with a warning."""
    properties = resource.get("Properties", {})
    if resource["Type"] == "AWS::Scheduler::Schedule":
        targets = [properties["Target"]]
    elif resource["Type"] == "AWS::Events::Rule":
        targets = properties.get("Targets", [])
    else:
        return True
    named = [_logical_id(target["Arn"]) for target in targets]
    if all(name in resolver.machines for name in named):
        return True
    if all(name in RUN_BY_THE_STACK for name in named):
        logger.debug("%s: left out, the local stack runs %s itself", logical_id, named)
        return False
    if all(name in ON_DEMAND_LOCALLY for name in named):
        logger.debug("%s: left out, the local stack runs %s when asked", logical_id, named)
        return False
    logger.warning(
        "%s: leaving it out, its targets %s are not all the template's state machines", logical_id, named
    )
    return False


def _logical_id(arn: Any) -> str | None:
    """X of a target's `!Ref X` or `!GetAtt X.Arn`."""
    if isinstance(arn, dict) and isinstance(arn.get("Ref"), str):
        return str(arn["Ref"])
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        found = arn["Fn::GetAtt"]
        return str(found.split(".", 1)[0] if isinstance(found, str) else found[0])
    return None


def _is_state_machine(arn: str) -> bool:
    return arn.split(":")[2:3] == ["states"] and ":stateMachine:" in arn


def target_input(target: dict[str, Any], event: dict[str, Any], transform_input: bool = True) -> str:
    """The input EventBridge gives a target for `event`: its Input, else the event through its
    InputTransformer, else the event itself."""
    if "Input" in target:
        return str(target["Input"])
    transformer = target.get("InputTransformer")
    if transform_input and transformer:
        from moto.events.utils import EventTemplateParser

        return json.dumps(
            EventTemplateParser.parse(
                input_template=transformer.get("InputTemplate"),
                input_paths_map=transformer.get("InputPathsMap", {}),
                event=event,  # type: ignore[arg-type]
            )
        )
    return json.dumps(event, default=str)


def _patch() -> None:
    global _state
    from moto.events.models import Rule

    with _lock:
        if _state is not None:
            return
        original = Rule.send_to_targets
        _state = _State(original, [])

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        machines = [t for t in self.targets if _is_state_machine(t.get("Arn", ""))]
        if machines and self.state == "ENABLED" and self.event_pattern.matches_event(original_event):
            for target in machines:
                try:
                    started = aws.client("stepfunctions").start_execution(
                        stateMachineArn=target["Arn"],
                        input=target_input(target, original_event, transform_input),
                    )
                    logger.info("rule %s started %s", self.name, started["executionArn"])
                except Exception:  # EventBridge retries and dead-letters; here it is only logged
                    logger.exception("rule %s could not start %s", self.name, target["Arn"])
        others = [t for t in self.targets if not _is_state_machine(t.get("Arn", ""))]
        if others:
            rule = copy.copy(self)
            rule.targets = others
            original(rule, original_event, transform_input)

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
