"""Code rollouts in template.yaml: the functions that take traffic (the API's and S3's) publish each
new version behind their `live` alias, and CodeDeploy moves the alias to it by CodeDeployType,
rolling back on the function's errors and p99 duration alarms (docs/deploy.md, "Code rollouts").
Checked in the template as written and as the SAM transform expands it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import sam_translate

pytestmark = pytest.mark.infra

TRAFFIC = ["OnlineFunction", "RegistryFunction", "BatchFunction"]
# Tasks of a state machine run: a weighted alias would split one run's steps between two versions.
STEPS = {"BatchStepsFunction", "PipelineFunction"}
# Invoked by a schedule of its own, not by traffic: a tick is idempotent and the next one a minute
# later runs whatever code is deployed; there is no traffic to shift gradually.
SCHEDULED = {"RolloutFunction", "MonitorFunction"}
# Consumers of the registry's stream and events bus (docs/events.md): no caller waits on them, their
# failures are retried and kept in a queue, and a weighted alias would split a stream's batches.
EVENT_CONSUMERS = {"EventsPublisherFunction", "WebhooksFunction"}
LATENCY_PARAMETERS = {
    "OnlineFunction": "OnlineLatencyAlarmMs",
    "RegistryFunction": "RegistryLatencyAlarmMs",
    "BatchFunction": "BatchLatencyAlarmMs",
}
# CodeDeploy's predefined Lambda deployment configurations (CodeDeployDefault.Lambda<name>)
PREDEFINED = {
    *(f"Canary10Percent{m}Minutes" for m in (5, 10, 15, 30)),
    *(f"Linear10PercentEvery{m}Minute{'s' if m > 1 else ''}" for m in (1, 2, 3, 10)),
    "AllAtOnce",
}
ROLLBACK_EVENTS = {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"}


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def alarms(function: str) -> list[str]:
    return [f"{function}ErrorsAlarm", f"{function}LatencyAlarm"]


@pytest.fixture(scope="module")
def expanded(tools: Path, tool_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The template after the SAM transform, with CodeDeployType as given (None: its default)."""
    types = [None, "AllAtOnce", "Linear10PercentEvery1Minute"]
    cases = [{"parameters": {"CodeDeployType": t} if t else {}} for t in types]
    return {
        t or "default": cfn["Resources"]
        for t, cfn in zip(types, sam_translate(tools, tool_env, cases), strict=True)
    }


def test_traffic_functions_are_exactly_those_with_event_sources(template: dict[str, Any]) -> None:
    # A new function with an API route or an S3 event must get a rollout too (or a reason here).
    with_events = {name for name, props in functions(template).items() if props.get("Events")}
    with_rollout = {name for name, props in functions(template).items() if "DeploymentPreference" in props}

    assert with_events - EVENT_CONSUMERS == with_rollout == set(TRAFFIC)
    assert set(functions(template)) - with_rollout == STEPS | SCHEDULED | EVENT_CONSUMERS


@pytest.mark.parametrize("function", TRAFFIC)
def test_traffic_function_rolls_out_behind_its_live_alias_on_its_alarms(
    template: dict[str, Any], function: str
) -> None:
    props = functions(template)[function]

    assert props["AutoPublishAlias"] == "live"
    # A new layer (new aimass code) publishes a new version too, not only a new handler folder
    assert props["AutoPublishAliasAllProperties"] is True
    assert props["DeploymentPreference"] == {
        "Type": {"Ref": "CodeDeployType"},
        "Alarms": [{"Ref": alarm} for alarm in alarms(function)],
    }


def test_code_deploy_type_defaults_to_a_canary_and_offers_linear_and_all_at_once(
    template: dict[str, Any],
) -> None:
    parameter = template["Parameters"]["CodeDeployType"]

    assert parameter["Default"].startswith("Canary")
    assert set(parameter["AllowedValues"]) <= PREDEFINED
    assert {"Linear10PercentEvery1Minute", "AllAtOnce", parameter["Default"]} <= set(
        parameter["AllowedValues"]
    )


@pytest.mark.parametrize("function", TRAFFIC)
def test_the_rollback_alarms_watch_the_functions_errors_and_p99_duration(
    template: dict[str, Any], function: str
) -> None:
    resources = template["Resources"]
    errors, latency = (resources[alarm]["Properties"] for alarm in alarms(function))
    dimension = [{"Name": "FunctionName", "Value": {"Ref": function}}]

    assert (errors["Namespace"], errors["MetricName"], errors["Dimensions"]) == (
        "AWS/Lambda",
        "Errors",
        dimension,
    )
    assert errors["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and errors["Threshold"] == 1
    assert (latency["Namespace"], latency["MetricName"], latency["Dimensions"]) == (
        "AWS/Lambda",
        "Duration",
        dimension,
    )
    assert latency["ExtendedStatistic"] == "p99"
    assert latency["Threshold"] == {"Ref": LATENCY_PARAMETERS[function]}
    # No data during a quiet rollout is no evidence against the new version
    assert errors["TreatMissingData"] == latency["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("function", TRAFFIC)
def test_the_default_latency_threshold_is_under_the_functions_timeout(
    template: dict[str, Any], function: str
) -> None:
    # Over the timeout the alarm could never fire: a timeout ends the invocation first.
    timeout_s = functions(template)[function].get("Timeout", template["Globals"]["Function"]["Timeout"])
    default_ms = template["Parameters"][LATENCY_PARAMETERS[function]]["Default"]

    assert 0 < default_ms < timeout_s * 1000


@pytest.mark.parametrize("deploy_type", ["default", "AllAtOnce", "Linear10PercentEvery1Minute"])
def test_sam_makes_a_deployment_group_per_traffic_function_that_rolls_back_on_its_alarms(
    expanded: dict[str, dict[str, Any]], template: dict[str, Any], deploy_type: str
) -> None:
    resources = expanded[deploy_type]
    wanted = template["Parameters"]["CodeDeployType"]["Default"] if deploy_type == "default" else deploy_type

    groups = {k for k, r in resources.items() if r["Type"] == "AWS::CodeDeploy::DeploymentGroup"}
    assert groups == {f"{function}DeploymentGroup" for function in TRAFFIC}
    for function in TRAFFIC:
        group = resources[f"{function}DeploymentGroup"]["Properties"]
        assert group["AlarmConfiguration"] == {
            "Enabled": True,
            "Alarms": [{"Name": {"Ref": alarm}} for alarm in alarms(function)],
        }
        assert group["AutoRollbackConfiguration"]["Enabled"] is True
        assert set(group["AutoRollbackConfiguration"]["Events"]) >= ROLLBACK_EVENTS
        template_string, variables = group["DeploymentConfigName"]["Fn::Sub"]
        assert (
            template_string.replace("${ConfigName}", variables["ConfigName"])
            == f"CodeDeployDefault.Lambda{wanted}"
        )
        assert group["ServiceRoleArn"] == {"Fn::GetAtt": ["CodeDeployServiceRole", "Arn"]}
        # CloudFormation hands the alias's update to CodeDeploy instead of switching it at once
        alias = resources[f"{function}Aliaslive"]
        assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"] == {
            "Ref": f"{function}DeploymentGroup"
        }


def test_sam_creates_the_role_codedeploy_shifts_lambda_traffic_with(
    expanded: dict[str, dict[str, Any]],
) -> None:
    role = expanded["default"]["CodeDeployServiceRole"]

    assert role["Type"] == "AWS::IAM::Role"
    [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": ["codedeploy.amazonaws.com"]}
    assert [arn.rsplit("/", 1)[-1] for arn in role["Properties"]["ManagedPolicyArns"]] == [
        "AWSCodeDeployRoleForLambda"
    ]


def test_api_routes_and_s3_events_reach_the_live_aliases(expanded: dict[str, dict[str, Any]]) -> None:
    resources = expanded["default"]
    for path_item in resources["Api"]["Properties"]["Body"]["paths"].values():
        for operation in path_item.values():
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            assert any(f"${{{f}Aliaslive}}" in uri for f in ("OnlineFunction", "RegistryFunction")), uri

    # A dropped file invokes the batch function's alias, with its retries and failure queue there
    bucket = resources["ArtifactsBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert [n["Function"] for n in bucket] == [{"Ref": "BatchFunctionAliaslive"}]
    permission = resources["BatchFunctionIncomingPermission"]["Properties"]
    assert permission["FunctionName"] == {"Ref": "BatchFunctionAliaslive"}
    invoke_config = resources["BatchFunctionEventInvokeConfig"]["Properties"]
    assert (invoke_config["Qualifier"], invoke_config["MaximumRetryAttempts"]) == ("live", 2)


def test_provisioned_concurrency_stays_on_the_online_alias_and_snapstart_on_its_versions(
    expanded: dict[str, dict[str, Any]], template: dict[str, Any]
) -> None:
    resources = expanded["default"]

    assert resources["OnlineFunctionAliaslive"]["Properties"]["ProvisionedConcurrencyConfig"] == {
        "Fn::If": [
            "HasProvisionedConcurrency",
            {"ProvisionedConcurrentExecutions": {"Ref": "ProvisionedConcurrency"}},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert resources["OnlineFunction"]["Properties"]["SnapStart"]["Fn::If"][0] == "UseSnapStart"
    # CloudFormation still refuses both at once (Lambda does not allow them on one version)
    rule = template["Rules"]["SnapStartExcludesProvisionedConcurrency"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "EnableSnapStart"}, "true"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "ProvisionedConcurrency"}, "0"]}


def test_state_machine_tasks_call_their_functions_unqualified(expanded: dict[str, dict[str, Any]]) -> None:
    # A run's steps see one version, the latest when the step starts: no weighted alias splits a
    # run (docs/deploy.md, "Code rollouts", what does not roll out).
    resources = expanded["default"]
    for function in STEPS:
        assert f"{function}Aliaslive" not in resources
        assert not any(
            r["Type"] == "AWS::Lambda::Version" and r["Properties"]["FunctionName"] == {"Ref": function}
            for r in resources.values()
        )
