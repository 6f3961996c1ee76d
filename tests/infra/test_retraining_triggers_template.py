"""The retraining triggers in template.yaml: one EventBridge Scheduler schedule per model named in
RetrainingModels (none for an empty list), each starting the training pipeline through a role that
may do nothing else; and the drift rule that turns the batch functions' "Drift detected" events into
runs. Conditions and parameter-only intrinsics are evaluated here as CloudFormation evaluates them
at deploy time."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aimass.config import Settings
from aimass.contracts.common import MODEL_NAME_PATTERN
from aimass.pipeline import triggers
from tests.support import event

from .conftest import sam_translate, walk

pytestmark = pytest.mark.infra

SLOTS = [f"RetrainingSchedule{n}" for n in range(1, 6)]
MACHINE = {"Ref": "TrainingPipelineStateMachine"}
QUEUE_ARN = {"Fn::GetAtt": ["RetrainingTriggerDeadLetterQueue", "Arn"]}
PARAMETER_INTRINSICS = {"Ref", "Fn::Sub", "Fn::Select", "Fn::Split", "Fn::Join"}


def parameters(template: dict[str, Any], **given: str) -> dict[str, str]:
    defaults = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    return {**defaults, **given}


def evaluate(value: Any, template: dict[str, Any], values: dict[str, str]) -> Any:
    """`value` with the parameters' intrinsics and the conditions evaluated; a resource's Ref or
    GetAtt (and a ${Resource} or ${AWS::...} in a Sub) is left as written."""
    if isinstance(value, list):
        return [evaluate(item, template, values) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        return {key: evaluate(item, template, values) for key, item in value.items()}
    [(kind, argument)] = value.items()
    if kind == "Ref" and argument in values:
        return values[argument]
    if kind in INTRINSICS:
        return INTRINSICS[kind](argument, template, values)
    return {kind: evaluate(argument, template, values)}


def _sub(argument: Any, template: dict[str, Any], values: dict[str, str]) -> str:
    text, variables = (argument, {}) if isinstance(argument, str) else argument
    known = {**values, **{k: evaluate(v, template, values) for k, v in variables.items()}}
    return re.sub(r"\$\{([^}!]+)\}", lambda m: str(known.get(m.group(1), m.group(0))), text)


def _equals(argument: Any, template: dict[str, Any], values: dict[str, str]) -> bool:
    left, right = evaluate(argument, template, values)
    return left == right


# What CloudFormation evaluates at deploy time from the parameters and conditions alone: each
# function of the template's, given its argument, the template and the parameters' values.
INTRINSICS: dict[str, Callable[[Any, dict[str, Any], dict[str, str]], Any]] = {
    "Fn::Sub": _sub,
    "Fn::Select": lambda argument, t, v: evaluate(argument[1], t, v)[int(argument[0])],
    "Fn::Split": lambda argument, t, v: str(evaluate(argument[1], t, v)).split(argument[0]),
    "Fn::Join": lambda argument, t, v: argument[0].join(evaluate(argument[1], t, v)),
    "Fn::Equals": _equals,
    "Fn::Not": lambda argument, t, v: not evaluate(argument[0], t, v),
    "Fn::And": lambda argument, t, v: all(evaluate(item, t, v) for item in argument),
    "Fn::Or": lambda argument, t, v: any(evaluate(item, t, v) for item in argument),
    "Condition": lambda argument, t, v: evaluate(t["Conditions"][argument], t, v),
    "Fn::If": lambda argument, t, v: evaluate(
        argument[1] if evaluate({"Condition": argument[0]}, t, v) else argument[2], t, v
    ),
}


def deployed(template: dict[str, Any], **given: str) -> dict[str, dict[str, Any]]:
    """The resources a deploy with these parameters creates, their properties evaluated."""
    values = parameters(template, **given)
    return {
        logical_id: {"Type": resource["Type"], **evaluate(resource.get("Properties", {}), template, values)}
        for logical_id, resource in template["Resources"].items()
        if "Condition" not in resource or evaluate({"Condition": resource["Condition"]}, template, values)
    }


def schedules(resources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The retraining schedules (the rollout tick is another: tests/infra/test_rollout_template.py)."""
    return {
        k: r
        for k, r in resources.items()
        if r["Type"] == "AWS::Scheduler::Schedule" and k.startswith("RetrainingSchedule")
    }


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def transform(transformer: dict[str, Any], incoming: dict[str, Any]) -> Any:
    """What EventBridge's InputTransformer makes of `incoming`: each <name> the value at its path, as
    JSON, or inside quotes the bare string."""

    def at(path: str) -> Any:
        found: Any = incoming
        for part in path.removeprefix("$.").split("."):
            found = found[part]
        return found

    values = {name: at(path) for name, path in transformer["InputPathsMap"].items()}

    # "<name>" and <name> alike become the value as JSON (quoted only when it is a string)
    text = re.sub(
        r'"?<([A-Za-z0-9_.-]+)>"?', lambda m: json.dumps(values[m.group(1)]), transformer["InputTemplate"]
    )
    return json.loads(text)


def test_no_model_deploys_no_schedule_and_nothing_for_one(template: dict[str, Any]) -> None:
    assert template["Parameters"]["RetrainingModels"]["Default"] == ""

    resources = deployed(template)

    assert not schedules(resources)
    assert not [k for k, r in resources.items() if r["Type"] == "AWS::Scheduler::ScheduleGroup"]
    assert "RetrainingScheduleRole" not in resources
    # The drift rule does not depend on the schedules
    assert "DriftRetrainingRule" in resources and "RetrainingTriggerDeadLetterQueue" in resources


@pytest.mark.parametrize(
    "models", ["breast-cancer", "breast-cancer,churn", "a,b.c,d_e,f-g,h1", "x" * 63 + ",y"]
)
def test_each_model_named_gets_a_schedule_that_starts_the_pipeline_with_its_input(
    template: dict[str, Any], models: str
) -> None:
    names = models.split(",")
    resources = deployed(template, RetrainingModels=models)
    found = schedules(resources)

    assert sorted(found) == SLOTS[: len(names)]
    assert sorted(s["Name"] for s in found.values()) == sorted(names)
    group = resources["RetrainingScheduleGroup"]
    assert group["Type"] == "AWS::Scheduler::ScheduleGroup" and group["Name"] == "aimass-dev-retraining"
    for logical_id, schedule in found.items():
        target = schedule["Target"]
        assert target["Arn"] == MACHINE, logical_id
        assert target["RoleArn"] == {"Fn::GetAtt": ["RetrainingScheduleRole", "Arn"]}, logical_id
        assert json.loads(target["Input"]) == {"model": schedule["Name"], "trigger": "schedule"}
        assert schedule["GroupName"] == {"Ref": "RetrainingScheduleGroup"}
        assert schedule["ScheduleExpression"] == "rate(1 day)"
        assert schedule["ScheduleExpressionTimezone"] == "UTC"
        assert schedule["State"] == "ENABLED"
        assert schedule["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 60}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
        assert target["DeadLetterConfig"] == {"Arn": QUEUE_ARN}


def test_the_schedule_expression_and_time_zone_are_parameters(template: dict[str, Any]) -> None:
    resources = deployed(
        template,
        RetrainingModels="churn",
        RetrainingSchedule="cron(0 3 ? * MON *)",
        RetrainingScheduleTimezone="Europe/Paris",
    )
    [schedule] = schedules(resources).values()

    assert schedule["ScheduleExpression"] == "cron(0 3 ? * MON *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Paris"
    pattern = template["Parameters"]["RetrainingSchedule"]["AllowedPattern"]
    for good in ("rate(1 day)", "rate(12 hours)", "cron(0 3 ? * MON *)", "at(2026-12-01T03:00:00)"):
        assert re.fullmatch(pattern, good), good
    for bad in ("daily", "1 day", "rate 1 day"):
        assert not re.fullmatch(pattern, bad), bad


def test_the_model_list_parameter_takes_up_to_five_valid_names(template: dict[str, Any]) -> None:
    pattern = template["Parameters"]["RetrainingModels"]["AllowedPattern"]
    name = MODEL_NAME_PATTERN.removeprefix("^").removesuffix("$")

    for good in ("", "breast-cancer", "a,b,c,d,e", "model.v2,x_y"):
        assert re.fullmatch(pattern, good), good
    # One slot each: a sixth name would have none, so CloudFormation refuses it before deploying
    for bad in ("a,b,c,d,e,f", "breast-cancer, churn", "Breast", "a,,b", ",a", "a,", "-a", "x" * 64):
        assert not re.fullmatch(pattern, bad), bad
    # Every name the pattern takes is a registry model name
    assert pattern == f"^$|^{name}(,{name}){{0,4}}$"


def test_the_slots_are_the_same_but_for_their_position(template: dict[str, Any]) -> None:
    def normalised(logical_id: str, index: int) -> str:
        resource = template["Resources"][logical_id]
        text = json.dumps(resource, sort_keys=True)
        return text.replace(f'"Fn::Select": [{index},', '"Fn::Select": [N,').replace(
            f"Model{index + 1}", "ModelN"
        )

    shapes = {normalised(logical_id, i) for i, logical_id in enumerate(SLOTS)}
    conditions = {
        json.dumps(template["Conditions"][f"HasRetrainingModel{i + 1}"]).replace(f"[{i},", "[N,")
        for i in range(len(SLOTS))
    }

    assert len(shapes) == 1 and len(conditions) == 1
    # The list is padded so that the last slot's Select is always in range
    padded = template["Conditions"]["HasRetrainingModel5"]["Fn::And"][1]["Fn::Not"][0]["Fn::Equals"][0]
    assert padded["Fn::Select"][1] == {"Fn::Split": [",", {"Fn::Sub": "${RetrainingModels}" + "," * 4}]}


def test_the_schedules_role_may_only_start_the_pipeline_and_dead_letter(template: dict[str, Any]) -> None:
    role = template["Resources"]["RetrainingScheduleRole"]

    assert role["Type"] == "AWS::IAM::Role" and role["Condition"] == "HasRetrainingSchedules"
    properties = role["Properties"]
    [trust] = properties["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "ManagedPolicyArns" not in properties
    granted = {(a, json.dumps(s["Resource"])) for s in statements(properties) for a in as_list(s["Action"])}
    assert granted == {
        ("states:StartExecution", json.dumps(MACHINE)),
        ("sqs:SendMessage", json.dumps(QUEUE_ARN)),
    }
    assert all(s["Effect"] == "Allow" for s in statements(properties))


def test_the_drift_rule_starts_the_pipeline_on_the_batch_functions_drift_events(
    template: dict[str, Any],
) -> None:
    rule = template["Resources"]["DriftRetrainingRule"]
    properties = rule["Properties"]

    assert rule["Type"] == "AWS::Events::Rule" and "Condition" not in rule
    assert properties["State"] == "ENABLED" and properties["EventBusName"] == "default"
    assert properties["EventPattern"] == {"source": [triggers.SOURCE], "detail-type": [triggers.DETAIL_TYPE]}
    [target] = properties["Targets"]
    assert target["Arn"] == MACHINE
    assert target["RoleArn"] == {"Fn::GetAtt": ["DriftRetrainingRole", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": QUEUE_ARN}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1


def test_a_drift_event_becomes_a_drift_run_of_its_model(template: dict[str, Any]) -> None:
    [target] = template["Resources"]["DriftRetrainingRule"]["Properties"]["Targets"]
    incoming = event("eventbridge_drift_detected")

    run_input = transform(target["InputTransformer"], incoming)

    detail = incoming["detail"]
    assert run_input == {
        "model": detail["model"],
        "trigger": "drift",
        "report": detail["report"],
        "drift": {
            "version": detail["version"],
            "drifted_fraction": detail["drifted_fraction"],
            "drifted_features": detail["drifted_features"],
            "event": incoming["id"],
        },
    }
    # The sample is what the batch functions publish, and the rule reads only what they publish
    drift = triggers.Drift(detail["model"], detail["version"], 30, tuple(detail["drifted_features"]))
    assert triggers.event_detail(drift, detail["report"]) == detail
    paths = target["InputTransformer"]["InputPathsMap"].values()
    assert {p.removeprefix("$.detail.") for p in paths if p.startswith("$.detail.")} <= set(detail)


def test_the_drift_rules_role_may_only_start_the_pipeline(template: dict[str, Any]) -> None:
    properties = template["Resources"]["DriftRetrainingRole"]["Properties"]

    [trust] = properties["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "ManagedPolicyArns" not in properties
    granted = [(a, s["Resource"]) for s in statements(properties) for a in as_list(s["Action"])]
    assert granted == [("states:StartExecution", MACHINE)]


def test_failed_starts_go_to_an_encrypted_queue_that_raises_an_alarm(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    queue = resources["RetrainingTriggerDeadLetterQueue"]["Properties"]
    [policy] = resources["RetrainingTriggerDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    [alarm] = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and {"Fn::GetAtt": ["RetrainingTriggerDeadLetterQueue", "QueueName"]}
        in [d["Value"] for d in r["Properties"].get("Dimensions", [])]
    ]

    assert queue["SqsManagedSseEnabled"] is True and queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    # EventBridge sends a rule's dead letters itself: only for the drift rule
    assert (
        policy["Principal"] == {"Service": "events.amazonaws.com"} and policy["Action"] == "sqs:SendMessage"
    )
    assert policy["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["DriftRetrainingRule", "Arn"]}}
    }
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Threshold"] == 1
    assert alarm["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }


@pytest.mark.parametrize("function", ["BatchFunction", "BatchStepsFunction"])
def test_the_batch_functions_publish_only_drift_events_and_read_the_threshold(
    template: dict[str, Any], function: str
) -> None:
    properties = template["Resources"][function]["Properties"]
    variables = properties["Environment"]["Variables"]
    found = [s for p in properties["Policies"] if "Statement" in p for s in p["Statement"]]
    publishing = [s for s in found if any(a.startswith("events:") for a in as_list(s["Action"]))]

    assert variables["AIMASS_DRIFT_RETRAINING_FRACTION"] == {"Ref": "DriftRetrainingFraction"}
    assert variables["AIMASS_DRIFT_RETRAINING_COOLDOWN_HOURS"] == {"Ref": "DriftRetrainingCooldownHours"}
    assert variables["AIMASS_IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}  # where the claims are
    [statement] = publishing
    assert as_list(statement["Action"]) == ["events:PutEvents"]
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"
    }
    assert statement["Condition"] == {"StringEquals": {"events:source": triggers.SOURCE}}
    # The same defaults as the settings the package falls back on
    fraction = template["Parameters"]["DriftRetrainingFraction"]
    cooldown = template["Parameters"]["DriftRetrainingCooldownHours"]
    assert fraction["MinValue"] == 0 and fraction["MaxValue"] == 1
    assert fraction["Default"] == Settings.model_fields["drift_retraining_fraction"].default
    assert cooldown["Default"] == Settings.model_fields["drift_retraining_cooldown_hours"].default


def test_the_steps_function_may_only_claim_drift_retraining_in_the_idempotency_table(
    template: dict[str, Any],
) -> None:
    properties = template["Resources"]["BatchStepsFunction"]["Properties"]
    found = {s["Sid"]: s for p in properties["Policies"] if "Statement" in p for s in p["Statement"]}
    granted = [a for s in found.values() for a in as_list(s["Action"]) if a.startswith("dynamodb:")]

    guard = found["GuardDriftRetraining"]
    assert sorted(granted) == ["dynamodb:DeleteItem", "dynamodb:PutItem"]
    assert guard["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    assert guard["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{triggers.CLAIM_PREFIX}*"]}
    }


def test_the_template_uses_no_language_extensions(template: dict[str, Any]) -> None:
    # docs/pipeline.md: checkov skips what Fn::ForEach makes, and plain `sam build` fails on it
    transforms = as_list(template["Transform"])

    assert "AWS::LanguageExtensions" not in transforms
    assert not [
        k for node in walk(template) if isinstance(node, dict) for k in node if k.startswith("Fn::ForEach")
    ]


def test_the_sam_transform_keeps_the_schedules_and_the_rule_as_written(
    tools: Path, tool_env: dict[str, str], template: dict[str, Any]
) -> None:
    cases = [
        {"parameters": {"RetrainingModels": ""}},
        {"parameters": {"RetrainingModels": "breast-cancer,churn"}},
    ]
    for translated in sam_translate(tools, tool_env, cases):
        resources = translated["Resources"]
        # The state machine they start keeps its logical id, so the Refs still name it
        assert resources["TrainingPipelineStateMachine"]["Type"] == "AWS::StepFunctions::StateMachine"
        for logical_id in [*SLOTS, "RetrainingScheduleRole", "DriftRetrainingRule", "DriftRetrainingRole"]:
            assert resources[logical_id] == template["Resources"][logical_id], logical_id
        for condition in ("HasRetrainingSchedules", *(f"HasRetrainingModel{n}" for n in range(1, 6))):
            assert translated["Conditions"][condition] == template["Conditions"][condition]
