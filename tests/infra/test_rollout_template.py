"""The rollout schedule in template.yaml: an EventBridge Scheduler schedule, every RolloutTickMinutes
(default 1), invokes RolloutFunction through a role that may do nothing else; the function reads
and writes the registry, reads the bucket and publishes on the pipeline topic, and nothing more.
Conditions and parameter-only intrinsics are evaluated as CloudFormation evaluates them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import event

from .conftest import sam_translate
from .test_retraining_triggers_template import deployed, statements

pytestmark = pytest.mark.infra

FUNCTION_ARN = {"Fn::GetAtt": ["RolloutFunction", "Arn"]}


def tick_schedule(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return resources["RolloutTickSchedule"]


@pytest.mark.parametrize(
    ("minutes", "expression"), [(None, "rate(1 minute)"), ("1", "rate(1 minute)"), ("5", "rate(5 minutes)")]
)
def test_the_tick_schedule_runs_every_rollout_tick_minutes(
    template: dict[str, Any], minutes: str | None, expression: str
) -> None:
    parameter = template["Parameters"]["RolloutTickMinutes"]
    assert (parameter["Default"], parameter["MinValue"]) == (1, 1)

    schedule = tick_schedule(deployed(template, **({"RolloutTickMinutes": minutes} if minutes else {})))

    assert schedule["Type"] == "AWS::Scheduler::Schedule" and schedule["State"] == "ENABLED"
    assert schedule["ScheduleExpression"] == expression
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["Target"]["Arn"] == FUNCTION_ARN
    assert schedule["Target"]["RoleArn"] == {"Fn::GetAtt": ["RolloutTickScheduleRole", "Arn"]}


def test_the_schedules_role_may_only_invoke_the_rollout_function(template: dict[str, Any]) -> None:
    role = deployed(template)["RolloutTickScheduleRole"]

    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "scheduler.amazonaws.com"
    }
    assert [(s["Action"], s["Resource"]) for s in statements(role)] == [
        ("lambda:InvokeFunction", FUNCTION_ARN)
    ]


def test_the_rollout_function_reaches_the_registry_the_bucket_and_the_pipeline_topic_only(
    template: dict[str, Any],
) -> None:
    function = template["Resources"]["RolloutFunction"]["Properties"]

    assert function["CodeUri"] == "functions/rollout/" and function["Handler"] == "app.handler"
    assert function["Environment"]["Variables"] == {"AIMASS_PIPELINE_TOPIC_ARN": {"Ref": "PipelineTopic"}}
    assert [next(iter(policy)) for policy in function["Policies"]] == [
        "Fn::If",  # the bucket's customer key, when KmsKeyArn is given (test_privacy_template.py)
        "DynamoDBCrudPolicy",
        "S3ReadPolicy",
        "SNSPublishMessagePolicy",
    ]
    assert function["Policies"][3]["SNSPublishMessagePolicy"] == {
        "TopicName": {"Fn::GetAtt": ["PipelineTopic", "TopicName"]}
    }
    assert "Events" not in function  # the schedule invokes it; no route, no S3 event
    # Its failures raise an alarm
    alarm = template["Resources"]["RolloutFunctionErrorsAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "RolloutFunction"}}]


def test_the_schedules_input_is_the_sample_event(template: dict[str, Any]) -> None:
    assert json.loads(tick_schedule(deployed(template))["Target"]["Input"]) == event("scheduler_rollout_tick")


def test_the_sam_transform_keeps_the_schedule_as_written(
    tools: Path, tool_env: dict[str, str], template: dict[str, Any]
) -> None:
    [translated] = sam_translate(tools, tool_env, [{"parameters": {}}])
    for logical_id in ("RolloutTickSchedule", "RolloutTickScheduleRole"):
        assert translated["Resources"][logical_id] == template["Resources"][logical_id]
    assert translated["Resources"]["RolloutFunction"]["Type"] == "AWS::Lambda::Function"
