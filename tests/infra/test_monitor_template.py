"""The monitor schedule in template.yaml: an EventBridge Scheduler schedule on
MonitorScheduleExpression (default daily at 00:05 UTC) invokes MonitorFunction through a role that may
do nothing else; the function reads the registry, captured traffic and baselines, writes monitor runs'
files, publishes on the pipeline topic and asks for retraining through the drift cooldown, and nothing
more. Conditions and parameter-only intrinsics are evaluated as CloudFormation evaluates them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import event

from .conftest import sam_translate
from .test_retraining_triggers_template import deployed, statements

pytestmark = pytest.mark.infra

FUNCTION_ARN = {"Fn::GetAtt": ["MonitorFunction", "Arn"]}
BUCKET_ARN = "arn:${AWS::Partition}:s3:::aimass-${Stage}-artifacts-${AWS::AccountId}-${AWS::Region}"


@pytest.mark.parametrize("expression", [None, "rate(1 hour)", "cron(0 */6 * * ? *)"])
def test_the_monitor_schedule_runs_on_its_expression(
    template: dict[str, Any], expression: str | None
) -> None:
    parameters = template["Parameters"]
    assert parameters["MonitorScheduleExpression"]["Default"] == "cron(5 0 * * ? *)"
    assert parameters["MonitorWindowHours"]["Default"] == 24

    schedule = deployed(template, **({"MonitorScheduleExpression": expression} if expression else {}))[
        "MonitorSchedule"
    ]

    assert schedule["Type"] == "AWS::Scheduler::Schedule" and schedule["State"] == "ENABLED"
    assert schedule["ScheduleExpression"] == (expression or "cron(5 0 * * ? *)")
    assert schedule["Target"]["Arn"] == FUNCTION_ARN
    assert schedule["Target"]["RoleArn"] == {"Fn::GetAtt": ["MonitorScheduleRole", "Arn"]}
    assert schedule["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 0}


@pytest.mark.parametrize(
    ("expression", "allowed"),
    [("rate(1 hour)", True), ("cron(5 0 * * ? *)", True), ("rate(0 hours)", False), ("every day", False)],
)
def test_the_schedule_expression_parameter_takes_rates_and_crons_only(
    template: dict[str, Any], expression: str, allowed: bool
) -> None:
    pattern = template["Parameters"]["MonitorScheduleExpression"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, expression)) is allowed


def test_the_schedules_role_may_only_invoke_the_monitor_function(template: dict[str, Any]) -> None:
    role = deployed(template)["MonitorScheduleRole"]

    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "scheduler.amazonaws.com"
    }
    assert [(s["Action"], s["Resource"]) for s in statements(role)] == [
        ("lambda:InvokeFunction", FUNCTION_ARN)
    ]


def test_the_monitor_function_reads_capture_and_baselines_and_writes_runs_only(
    template: dict[str, Any],
) -> None:
    function = template["Resources"]["MonitorFunction"]["Properties"]

    assert function["CodeUri"] == "functions/monitor/" and function["Handler"] == "app.handler"
    variables = function["Environment"]["Variables"]
    assert variables["AIMASS_MONITOR_WINDOW_HOURS"] == {"Ref": "MonitorWindowHours"}
    assert variables["AIMASS_MONITOR_MODELS"] == {"Ref": "MonitorModels"}
    assert variables["AIMASS_PIPELINE_TOPIC_ARN"] == {"Ref": "PipelineTopic"}
    assert variables["AIMASS_IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}
    key, *policies = function["Policies"]
    assert key == {"Fn::If": ["HasKmsKey", {"Ref": "ArtifactsKeyAccess"}, {"Ref": "AWS::NoValue"}]}
    assert policies[0] == {"DynamoDBReadPolicy": {"TableName": {"Ref": "RegistryTable"}}}
    s3 = {s["Sid"]: s for s in policies[1]["Statement"]}
    assert s3["ReadCaptureAndBaselines"]["Action"] == "s3:GetObject"
    assert [r["Fn::Sub"] for r in s3["ReadCaptureAndBaselines"]["Resource"]] == [
        f"{BUCKET_ARN}/capture/*",
        f"{BUCKET_ARN}/models/*",
        f"{BUCKET_ARN}/monitoring/*",
    ]
    assert s3["WriteRuns"]["Action"] == "s3:PutObject"
    assert s3["WriteRuns"]["Resource"] == {"Fn::Sub": f"{BUCKET_ARN}/monitoring/*"}
    assert policies[2] == {
        "SNSPublishMessagePolicy": {"TopicName": {"Fn::GetAtt": ["PipelineTopic", "TopicName"]}}
    }
    drift = {s["Sid"]: s for s in policies[3]["Statement"]}
    assert drift["PublishDriftEvents"]["Condition"] == {
        "StringEquals": {"events:source": "aimass.monitoring"}
    }
    assert drift["GuardDriftRetraining"]["Condition"]["ForAllValues:StringLike"] == {
        "dynamodb:LeadingKeys": ["drift-retraining#*"]
    }
    assert len(policies) == 4 and "Events" not in function  # the schedule invokes it; no route
    alarm = template["Resources"]["MonitorFunctionErrorsAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "MonitorFunction"}}]


def test_the_schedules_input_is_the_sample_event(template: dict[str, Any]) -> None:
    assert json.loads(deployed(template)["MonitorSchedule"]["Target"]["Input"]) == event("scheduler_monitor")


def test_the_sam_transform_keeps_the_schedule_as_written(
    tools: Path, tool_env: dict[str, str], template: dict[str, Any]
) -> None:
    [translated] = sam_translate(tools, tool_env, [{"parameters": {}}])
    for logical_id in ("MonitorSchedule", "MonitorScheduleRole"):
        assert translated["Resources"][logical_id] == template["Resources"][logical_id]
    assert translated["Resources"]["MonitorFunction"]["Type"] == "AWS::Lambda::Function"
