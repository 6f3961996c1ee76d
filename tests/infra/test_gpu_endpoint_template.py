"""The GPU endpoint in template.yaml: a SageMaker real-time endpoint that exists only when both
GpuImageUri and GpuModelDataUrl are given, with its autoscaling, alarms, data capture and blue/green
rollback, and the only functions that may call it. Conditions, Fn::If and parameter-only intrinsics
are evaluated here as CloudFormation evaluates them at deploy time."""

from __future__ import annotations

import re
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from aimass.capacity import GPU_TARGET_INVOCATIONS
from aimass.contracts.common import MODEL_NAME_PATTERN

from .conftest import resource_references, sam_translate
from .test_retraining_triggers_template import as_list, evaluate, parameters

pytestmark = pytest.mark.infra

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/aimass-gpu:1f2e3d4"
BUCKET = "aimass-dev-artifacts-${AWS::AccountId}-${AWS::Region}"
MODEL_DATA = "s3://aimass-dev-artifacts-123456789012-us-east-1/models/digits-cnn/3/model.tar.gz"
ON = {"GpuImageUri": IMAGE, "GpuModelDataUrl": MODEL_DATA}
CONDITION = "HasGpuEndpoint"
GPU_RESOURCES = {
    "GpuEndpointRole",
    "GpuEndpointLogGroup",
    "GpuModel",
    "GpuEndpointConfig",
    "GpuEndpoint",
    "GpuScalableTarget",
    "GpuScalingPolicy",
    "GpuEndpointErrorsAlarm",
    "GpuEndpointLatencyAlarm",
}
ALARMS = ["GpuEndpointErrorsAlarm", "GpuEndpointLatencyAlarm"]
ROUTERS = {"OnlineFunction", "BatchFunction", "BatchStepsFunction"}
ENDPOINT_ARN = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/aimass-${Stage}-gpu"
ENDPOINT_NAME_VARIABLE = {"Fn::If": [CONDITION, {"Fn::Sub": "aimass-${Stage}-gpu"}, ""]}
NO_VALUE = {"Ref": "AWS::NoValue"}
INVOKE = [
    "sagemaker:InvokeEndpoint",
    "sagemaker:InvokeEndpointAsync",
    "sagemaker:InvokeEndpointWithResponseStream",
]


def resolve_ifs(value: Any, template: dict[str, Any], values: dict[str, str]) -> Any:
    """`value` with every Fn::If replaced by its branch, and AWS::NoValue removed where it stands."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        condition, when_true, when_false = value["Fn::If"]
        chosen = when_true if evaluate({"Condition": condition}, template, values) else when_false
        return resolve_ifs(chosen, template, values)
    if isinstance(value, dict):
        resolved = {key: resolve_ifs(item, template, values) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item != NO_VALUE}
    if isinstance(value, list):
        return [item for item in (resolve_ifs(v, template, values) for v in value) if item != NO_VALUE]
    return value


def deployed(template: dict[str, Any], **given: str) -> dict[str, dict[str, Any]]:
    """The resources a deploy with these parameters creates, their properties evaluated."""
    values = parameters(template, **given)
    return {
        logical_id: {
            "Type": resource["Type"],
            **evaluate(resolve_ifs(resource.get("Properties", {}), template, values), template, values),
        }
        for logical_id, resource in template["Resources"].items()
        if "Condition" not in resource or evaluate({"Condition": resource["Condition"]}, template, values)
    }


def is_on(template: dict[str, Any], condition: str = CONDITION, **given: str) -> bool:
    return bool(evaluate({"Condition": condition}, template, parameters(template, **given)))


def properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id]["Properties"])


def variant(template: dict[str, Any]) -> str:
    [production_variant] = properties(template, "GpuEndpointConfig")["ProductionVariants"]
    return str(production_variant["VariantName"])


def statements_with_conditions(value: Any, conditions: tuple[str, ...] = ()) -> Iterator[tuple[dict, tuple]]:
    """Every IAM statement in value, with the Fn::If conditions it sits under (`!Name` for the
    false branch)."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        condition, when_true, when_false = value["Fn::If"]
        yield from statements_with_conditions(when_true, (*conditions, condition))
        yield from statements_with_conditions(when_false, (*conditions, f"!{condition}"))
    elif isinstance(value, dict):
        if "Effect" in value and "Action" in value:
            yield value, conditions
        for item in value.values():
            yield from statements_with_conditions(item, conditions)
    elif isinstance(value, list):
        for item in value:
            yield from statements_with_conditions(item, conditions)


def grants(action: str, statement: dict[str, Any]) -> bool:
    return statement["Effect"] == "Allow" and any(
        fnmatchcase(action, pattern) for pattern in as_list(statement["Action"])
    )


def invokes(statement: dict[str, Any]) -> bool:
    """Whether the statement lets its holder call an endpoint, in any way (wildcards included)."""
    return any(grants(action, statement) for action in INVOKE)


def role_statements(resources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    role = resources["GpuEndpointRole"]
    return {s["Sid"]: s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]}


def arn(text: str, **values: str) -> str:
    """An ARN as deployed: the pseudo parameters replaced."""
    values = {"Partition": "aws", "Region": "us-east-1", "AccountId": "123456789012", **values}
    return re.sub(r"\$\{AWS::([^}]+)\}", lambda m: values[m.group(1)], text)


def test_a_stack_without_gpu_parameters_has_no_gpu_resource_and_nothing_refers_to_one(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    gpu = {logical_id for logical_id in resources if logical_id.startswith("Gpu")}

    assert gpu == GPU_RESOURCES
    for logical_id in gpu:
        assert resources[logical_id].get("Condition") == CONDITION, logical_id
    assert template["Outputs"]["GpuEndpointName"]["Condition"] == CONDITION
    # Given the defaults, when deployed: none of them, and no other resource names one of them
    assert template["Parameters"]["GpuImageUri"]["Default"] == ""
    assert template["Parameters"]["GpuModelDataUrl"]["Default"] == ""
    assert not is_on(template)
    assert not gpu & set(deployed(template))
    for logical_id, resource in resources.items():
        if logical_id not in gpu:
            assert not gpu & resource_references(resource), f"{logical_id} depends on a GPU resource"


def test_image_and_model_data_together_deploy_the_endpoint_and_one_alone_is_refused(
    template: dict[str, Any],
) -> None:
    rule = template["Rules"]["GpuEndpointNeedsImageAndModelData"]

    def refused(**given: str) -> bool:
        values = parameters(template, **given)
        applies = evaluate(rule["RuleCondition"], template, values)
        return applies and not all(evaluate(a["Assert"], template, values) for a in rule["Assertions"])

    assert is_on(template, **ON) and set(deployed(template, **ON)) >= GPU_RESOURCES
    assert not refused(**ON) and not refused()
    for alone in ({"GpuImageUri": IMAGE}, {"GpuModelDataUrl": MODEL_DATA}):
        assert not is_on(template, **alone)
        assert refused(**alone), alone


def test_the_parameters_take_ecr_images_model_archives_under_models_and_ml_instances(
    template: dict[str, Any],
) -> None:
    params = template["Parameters"]

    def accepts(name: str, value: str) -> bool:
        return re.fullmatch(params[name]["AllowedPattern"], value) is not None

    assert accepts("GpuImageUri", IMAGE) and accepts("GpuImageUri", "")
    assert accepts("GpuImageUri", f"{IMAGE.split(':')[0]}@sha256:{'a' * 64}")
    assert not accepts("GpuImageUri", "nvidia/cuda:12.6.3") and not accepts("GpuImageUri", IMAGE + " ")
    # The role reads models/* only: a model.tar.gz elsewhere is refused before anything deploys
    assert accepts("GpuModelDataUrl", MODEL_DATA) and accepts("GpuModelDataUrl", "")
    for bad in ("s3://b/datasets/m/model.tar.gz", "s3://b/models/m/model.zip", "https://b/models/m.tar.gz"):
        assert not accepts("GpuModelDataUrl", bad), bad
    assert params["GpuInstanceType"]["Default"] == "ml.g5.xlarge"
    for good in ("ml.g5.xlarge", "ml.g6.2xlarge", "ml.p4d.24xlarge"):
        assert accepts("GpuInstanceType", good), good
    for bad in ("g5.xlarge", "ml.g5", "ml.g5.xlarge "):
        assert not accepts("GpuInstanceType", bad), bad
    defaults = {name: params[name]["Default"] for name in params if name.startswith("Gpu")}
    assert defaults["GpuInitialInstanceCount"] == 1
    assert (defaults["GpuMinInstances"], defaults["GpuMaxInstances"]) == (1, 4)
    assert defaults["GpuCaptureSamplePercent"] == 10
    assert defaults["GpuLatencyAlarmMs"] > 0
    # The target comes from a measurement, which its description names (aimass.capacity)
    assert defaults["GpuTargetInvocationsPerInstance"] == GPU_TARGET_INVOCATIONS
    assert "bench/RESULTS.md" in params["GpuTargetInvocationsPerInstance"]["Description"]
    # The target is per minute, and its description says so (and why the default)
    assert "PER MINUTE" in params["GpuTargetInvocationsPerInstance"]["Description"]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_variant_is_named_the_same_in_the_config_autoscaling_alarms_and_server(
    template: dict[str, Any], stage: str
) -> None:
    resources = deployed(template, Stage=stage, **ON)
    name = variant(template)
    endpoint = f"aimass-{stage}-gpu"
    errors, latency = (resources[alarm] for alarm in ALARMS)
    [watched] = [m["MetricStat"]["Metric"] for m in latency["Metrics"] if "MetricStat" in m]

    assert name == "primary"
    assert resources["GpuEndpoint"]["EndpointName"] == endpoint
    assert resources["GpuScalableTarget"]["ResourceId"] == f"endpoint/{endpoint}/variant/{name}"
    for dimensions in (errors["Dimensions"], watched["Dimensions"]):
        assert {d["Name"]: d["Value"] for d in dimensions} == {"EndpointName": endpoint, "VariantName": name}
    environment = resources["GpuModel"]["PrimaryContainer"]["Environment"]
    assert environment["AIMASS_GPU_PRODUCTION_VARIANT"] == name
    assert resources["GpuEndpoint"]["EndpointConfigName"] == {
        "Fn::GetAtt": ["GpuEndpointConfig", "EndpointConfigName"]
    }


def test_the_server_runs_the_front_ends_the_parameter_asks_for(template: dict[str, Any]) -> None:
    from gpu_endpoints.settings import Settings

    params = template["Parameters"]["GpuFrontends"]
    environment = template["Resources"]["GpuModel"]["Properties"]["PrimaryContainer"]["Environment"]

    assert environment["AIMASS_GPU_FRONTENDS"] == {"Ref": "GpuFrontends"}
    # The default comes from a measurement, which its description names
    assert params["Default"] == 2 and "bench/RESULTS.md" in params["Description"]
    # Every value the parameter allows is one the server starts with (SageMaker passes it as text)
    for count in (params["MinValue"], params["Default"], params["MaxValue"]):
        assert Settings.from_env({"AIMASS_GPU_FRONTENDS": str(count)}).frontends == count


def test_autoscaling_tracks_invocations_per_instance_between_the_parameters(
    template: dict[str, Any],
) -> None:
    target = template["Resources"]["GpuScalableTarget"]
    policy = properties(template, "GpuScalingPolicy")
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]

    assert target["Properties"]["ServiceNamespace"] == "sagemaker"
    assert target["Properties"]["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert target["Properties"]["MinCapacity"] == {"Ref": "GpuMinInstances"}
    assert target["Properties"]["MaxCapacity"] == {"Ref": "GpuMaxInstances"}
    # Application Auto Scaling's service-linked role, not one of ours
    assert "RoleARN" not in target["Properties"]
    # Registered once the endpoint exists, deregistered before it is deleted
    assert target["DependsOn"] == "GpuEndpoint"
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ScalingTargetId"] == {"Ref": "GpuScalableTarget"}
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["TargetValue"] == {"Ref": "GpuTargetInvocationsPerInstance"}
    assert 0 < tracking["ScaleOutCooldown"] < tracking["ScaleInCooldown"]
    resources = deployed(template, GpuMinInstances="2", GpuMaxInstances="8", **ON)
    assert (resources["GpuScalableTarget"]["MinCapacity"], resources["GpuScalableTarget"]["MaxCapacity"]) == (
        "2",
        "8",
    )


def test_requests_and_answers_are_captured_under_capture_endpoints_as_json(template: dict[str, Any]) -> None:
    resources = deployed(template, GpuCaptureSamplePercent="25", **ON)
    capture = resources["GpuEndpointConfig"]["DataCaptureConfig"]
    found = role_statements(resources)

    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == "25"
    assert capture["DestinationS3Uri"] == f"s3://{BUCKET}/capture/_endpoints/"
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    assert "application/json" in capture["CaptureContentTypeHeader"]["JsonContentTypes"]
    # Where SageMaker writes (<destination><endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl) is what the
    # role may write, and never a model's own capture/<model>/ folder
    key = "capture/_endpoints/aimass-dev-gpu/primary/2026/01/31/23/a.jsonl"
    written = f"arn:${{AWS::Partition}}:s3:::{BUCKET}/{key}"
    assert as_list(found["WriteDataCapture"]["Action"]) == ["s3:PutObject"]
    assert fnmatchcase(arn(written), arn(found["WriteDataCapture"]["Resource"]))
    assert not re.fullmatch(MODEL_NAME_PATTERN, "_endpoints")


def test_a_deployment_shifts_traffic_blue_green_and_rolls_back_on_the_two_alarms(
    template: dict[str, Any],
) -> None:
    endpoint = template["Resources"]["GpuEndpoint"]
    deployment = endpoint["Properties"]["DeploymentConfig"]

    assert deployment["AutoRollbackConfiguration"]["Alarms"] == [{"AlarmName": {"Ref": a}} for a in ALARMS]
    # The alarms name the endpoint (!Sub): with a Ref or GetAtt, endpoint and alarms would wait on
    # each other
    for alarm in ALARMS:
        assert not GPU_RESOURCES & resource_references(template["Resources"][alarm]), alarm
    policy = deployment["BlueGreenUpdatePolicy"]
    assert policy["TerminationWaitInSeconds"] > 0  # the blue fleet stays, to roll back to
    assert policy["MaximumExecutionTimeoutInSeconds"] > (
        policy["TerminationWaitInSeconds"] + 600  # + the canary's wait
    )
    # A canary of one instance when autoscaling keeps two or more (SageMaker: at most half the fleet)
    canary = deployed(template, GpuMinInstances="2", **ON)["GpuEndpoint"]["DeploymentConfig"]
    routing = canary["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert is_on(template, "GpuFleetAllowsCanary", GpuMinInstances="2", **ON)
    assert routing["Type"] == "CANARY"
    assert routing["CanarySize"] == {"Type": "INSTANCE_COUNT", "Value": 1}
    assert routing["WaitIntervalInSeconds"] > 0
    # With one instance a canary would be the whole fleet: all at once, still baked and rolled back
    single = deployed(template, **ON)["GpuEndpoint"]["DeploymentConfig"]
    assert not is_on(template, "GpuFleetAllowsCanary", **ON)
    assert single["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert single["AutoRollbackConfiguration"] == deployment["AutoRollbackConfiguration"]
    assert not is_on(template, "GpuFleetAllowsCanary", GpuMinInstances="2")
    # A new config keeps autoscaling's instance count, but takes its own data capture settings
    assert endpoint["Properties"]["RetainAllVariantProperties"] is True
    assert endpoint["Properties"]["ExcludeRetainedVariantProperties"] == [
        {"VariantPropertyType": "DataCaptureConfig"}
    ]


def test_the_alarms_watch_5xx_and_p99_model_latency_in_milliseconds_and_notify(
    template: dict[str, Any],
) -> None:
    errors, latency = (properties(template, alarm) for alarm in ALARMS)
    [stat] = [m for m in latency["Metrics"] if "MetricStat" in m]
    [shown] = [m for m in latency["Metrics"] if m.get("ReturnData", True)]

    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/SageMaker", "Invocation5XXErrors")
    assert errors["Statistic"] == "Sum" and errors["Threshold"] >= 1
    metric = stat["MetricStat"]["Metric"]
    assert (metric["Namespace"], metric["MetricName"], stat["MetricStat"]["Stat"]) == (
        "AWS/SageMaker",
        "ModelLatency",
        "p99",
    )
    # ModelLatency is reported in microseconds; the threshold parameter is in milliseconds
    assert stat["ReturnData"] is False
    assert shown["Expression"].replace(" ", "") == f"{stat['Id']}/1000"
    assert latency["Threshold"] == {"Ref": "GpuLatencyAlarmMs"}
    assert latency["ComparisonOperator"] == "GreaterThanThreshold"
    notify = properties(template, "OnlineFunctionErrorsAlarm")["AlarmActions"]
    assert notify == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], NO_VALUE]}
    for alarm in (errors, latency):
        assert alarm["AlarmActions"] == notify
        assert alarm["TreatMissingData"] == "notBreaching"  # an idle endpoint is not failing


def test_only_the_online_and_batch_functions_may_invoke_the_endpoint_and_only_with_it(
    template: dict[str, Any],
) -> None:
    functions = {k for k, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    granted = {
        (logical_id, conditions, str(statement["Resource"]))
        for logical_id, resource in template["Resources"].items()
        for statement, conditions in statements_with_conditions(resource.get("Properties", {}))
        if invokes(statement)
    }

    assert functions > ROUTERS
    assert granted == {
        (function, (CONDITION,), str({"Fn::Sub": ENDPOINT_ARN})) for function in sorted(ROUTERS)
    }
    for function in ROUTERS:
        [statement] = [
            s for s, _ in statements_with_conditions(properties(template, function)["Policies"]) if invokes(s)
        ]
        assert as_list(statement["Action"]) == ["sagemaker:InvokeEndpoint"]
        # Deployed without the endpoint, the statement is gone; with it, it names that endpoint
        without = deployed(template)[function]["Policies"]
        assert not [s for s, _ in statements_with_conditions(without) if invokes(s)]
        resources = deployed(template, Stage="staging", **ON)
        [statement] = [
            s for s, _ in statements_with_conditions(resources[function]["Policies"]) if invokes(s)
        ]
        name = resources["GpuEndpoint"]["EndpointName"]
        assert arn(statement["Resource"]) == f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name}"


@pytest.mark.parametrize(
    "function", ["OnlineFunction", "BatchFunction", "BatchStepsFunction", "RegistryFunction"]
)
def test_the_functions_get_the_endpoint_name_or_nothing(template: dict[str, Any], function: str) -> None:
    # (the registry function only places a version too large for a Lambda on it; it never calls it)
    variables = properties(template, function)["Environment"]["Variables"]

    assert variables["AIMASS_SAGEMAKER_ENDPOINT"] == ENDPOINT_NAME_VARIABLE
    assert deployed(template)[function]["Environment"]["Variables"]["AIMASS_SAGEMAKER_ENDPOINT"] == ""
    resources = deployed(template, Stage="prod", **ON)
    named = resources[function]["Environment"]["Variables"]["AIMASS_SAGEMAKER_ENDPOINT"]
    assert named == resources["GpuEndpoint"]["EndpointName"] == "aimass-prod-gpu"


def test_the_endpoint_role_reads_models_pulls_its_image_and_writes_capture_logs_and_metrics(
    template: dict[str, Any],
) -> None:
    resources = deployed(template, **ON)
    role = resources["GpuEndpointRole"]
    found = role_statements(resources)
    model = resources["GpuModel"]

    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {
        "Effect": "Allow",
        "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    # (the bucket's customer key only when KmsKeyArn is given: test_privacy_template.py)
    assert role.get("ManagedPolicyArns", []) == []
    assert model["ExecutionRoleArn"] == {"Fn::GetAtt": ["GpuEndpointRole", "Arn"]}
    assert (model["PrimaryContainer"]["Image"], model["PrimaryContainer"]["ModelDataUrl"]) == (
        IMAGE,
        MODEL_DATA,
    )
    assert model["EnableNetworkIsolation"] is True
    assert all(s["Effect"] == "Allow" for s in found.values())
    # S3: get models/*, put capture/_endpoints/*, nothing else
    s3 = {(a, s["Resource"]) for s in found.values() for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert s3 == {
        ("s3:GetObject", f"arn:${{AWS::Partition}}:s3:::{BUCKET}/models/*"),
        ("s3:PutObject", f"arn:${{AWS::Partition}}:s3:::{BUCKET}/capture/_endpoints/*"),
    }
    assert fnmatchcase(
        "arn:aws:s3:::" + MODEL_DATA.removeprefix("s3://"), arn(found["ReadModelData"]["Resource"])
    )
    # ECR: the image's own repository; only the token takes "*"
    assert as_list(found["LogInToEcr"]["Action"]) == ["ecr:GetAuthorizationToken"]
    wildcards = [s["Sid"] for s in found.values() if "*" in as_list(s["Resource"])]
    assert sorted(wildcards) == ["LogInToEcr", "PutInstanceMetrics"]
    assert found["PutInstanceMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}
    }
    logs = {arn(r) for r in as_list(found["WriteEndpointLogs"]["Resource"])}
    assert logs and all(":log-group:/aws/sagemaker/Endpoints/aimass-dev-gpu" in r for r in logs)
    log_group = resources["GpuEndpointLogGroup"]
    assert log_group["LogGroupName"] == "/aws/sagemaker/Endpoints/aimass-dev-gpu"
    assert log_group["RetentionInDays"] == str(template["Parameters"]["LogRetentionDays"]["Default"])


@pytest.mark.parametrize(
    ("image", "repositories"),
    [
        (IMAGE, ["aimass-gpu", "aimass-gpu/*"]),
        (
            f"210987654321.dkr.ecr.eu-west-1.amazonaws.com/aimass-gpu@sha256:{'b' * 64}",
            ["aimass-gpu", "aimass-gpu/*"],
        ),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/ml-team/aimass-gpu:v1.2", ["ml-team", "ml-team/*"]),
    ],
)
def test_the_endpoint_may_pull_from_its_images_repository_only(
    template: dict[str, Any], image: str, repositories: list[str]
) -> None:
    found = role_statements(deployed(template, GpuImageUri=image, GpuModelDataUrl=MODEL_DATA))
    account, _, _, region = image.split(".")[:4]

    assert sorted(as_list(found["PullImage"]["Action"])) == [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ]
    assert [arn(r) for r in found["PullImage"]["Resource"]] == [
        f"arn:aws:ecr:{region}:{account}:repository/{repository}" for repository in repositories
    ]


def test_the_sam_transform_keeps_the_endpoint_and_the_conditional_permissions(
    tools: Path, tool_env: dict[str, str], template: dict[str, Any]
) -> None:
    cases = [{"parameters": {}}, {"parameters": ON}]
    for translated in sam_translate(tools, tool_env, cases):
        resources = translated["Resources"]
        for logical_id in GPU_RESOURCES:
            assert resources[logical_id] == template["Resources"][logical_id], logical_id
        assert translated["Conditions"][CONDITION] == template["Conditions"][CONDITION]
        for function in ROUTERS:
            role = resources[f"{function}Role"]["Properties"]
            conditional = [p["Fn::If"] for p in role["Policies"] if "Fn::If" in p]
            [(condition, policy, otherwise)] = conditional
            assert (condition, otherwise) == (CONDITION, NO_VALUE)
            [statement] = policy["PolicyDocument"]["Statement"]
            assert statement["Action"] == "sagemaker:InvokeEndpoint"
            variables = resources[function]["Properties"]["Environment"]["Variables"]
            assert variables["AIMASS_SAGEMAKER_ENDPOINT"] == ENDPOINT_NAME_VARIABLE
