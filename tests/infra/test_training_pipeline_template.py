"""The retraining pipeline in template.yaml and statemachines/training_pipeline.asl.json: the path
from Ingest to the release gate and on to Notify, every task retried and caught, the placeholders,
and what the pipeline function and the state machine may touch."""

from __future__ import annotations

import json
import re
from itertools import pairwise
from typing import Any

import pytest

from .conftest import REPO, sub_strings, walk

pytestmark = pytest.mark.infra

BUCKET_ARN = "arn:${AWS::Partition}:s3:::aimass-${Stage}-artifacts-${AWS::AccountId}-${AWS::Region}"
MACHINE_NAME = "aimass-${Stage}-training-pipeline"
FUNCTION_ARN = "${PipelineFunctionArn}"
TOPIC_ARN = "${PipelineTopicArn}"
TRANSIENT = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
PASSES = {"Variable": "$.evaluation.passes_thresholds", "BooleanEquals": True}


def resource(template: dict[str, Any], logical_id: str, kind: str) -> dict[str, Any]:
    found = template["Resources"][logical_id]
    assert found["Type"] == kind, logical_id
    return dict(found["Properties"])


def machine(template: dict[str, Any]) -> dict[str, Any]:
    return resource(template, "TrainingPipelineStateMachine", "AWS::Serverless::StateMachine")


def function(template: dict[str, Any]) -> dict[str, Any]:
    return resource(template, "PipelineFunction", "AWS::Serverless::Function")


def definition(template: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads((REPO / machine(template)["DefinitionUri"]).read_text()))


def statements(properties: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for p in properties["Policies"] if "Statement" in p for s in p["Statement"]}


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def objects(statement: dict[str, Any]) -> set[str]:
    """The object key patterns a statement's resources name inside the artifacts bucket."""
    return {
        text.removeprefix(f"{BUCKET_ARN}/")
        for text in sub_strings(statement["Resource"])
        if text.startswith(f"{BUCKET_ARN}/")
    }


def pipeline_tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in states.items() if state.get("Resource") == FUNCTION_ARN}


def test_the_state_machine_is_standard_named_traced_and_logs_no_execution_data(
    template: dict[str, Any],
) -> None:
    properties = machine(template)

    assert properties["Type"] == "STANDARD"
    assert sub_strings(properties["Name"]) == [MACHINE_NAME]
    assert properties["Tracing"] == {"Enabled": True}
    # Its errors are logged without the rows of the training data
    assert properties["Logging"]["IncludeExecutionData"] is False
    assert properties["Logging"]["Destinations"] == [
        {
            "CloudWatchLogsLogGroup": {
                "LogGroupArn": {"Fn::GetAtt": ["TrainingPipelineStateMachineLogGroup", "Arn"]}
            }
        }
    ]
    log_group = resource(template, "TrainingPipelineStateMachineLogGroup", "AWS::Logs::LogGroup")
    assert sub_strings(log_group["LogGroupName"]) == [f"/aws/vendedlogs/states/{MACHINE_NAME}"]


def test_the_pipeline_function_logs_to_its_own_log_group(template: dict[str, Any]) -> None:
    log_group = resource(template, "PipelineFunctionLogGroup", "AWS::Logs::LogGroup")

    assert sub_strings(log_group["LogGroupName"]) == ["/aws/lambda/${PipelineFunction}"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_pipeline_ingests_validates_trains_and_evaluates_before_the_gate(
    template: dict[str, Any],
) -> None:
    machine_definition = definition(template)
    states = machine_definition["States"]

    assert machine_definition["StartAt"] == "Ingest"
    assert states["Ingest"]["Next"] == "Validate" and states["Validate"]["Next"] == "ChooseBackend"
    assert states["ChooseBackend"]["Default"] == "Train"  # SageMaker: test_training_pipeline_sagemaker.py
    path = ["Train", "Evaluate", "ReleaseGate"]
    for here, there in pairwise(path):
        assert states[here]["Type"] == "Task", here
        assert states[here]["Next"] == there, here
    assert states["Evaluate"]["ResultPath"] == "$.evaluation"  # what the gate reads


def test_the_release_gate_promotes_only_a_candidate_that_passes_and_beats_the_champion(
    template: dict[str, Any],
) -> None:
    gate = definition(template)["States"]["ReleaseGate"]

    assert gate["Type"] == "Choice"
    assert gate["Default"] == "Rejected"
    rules = gate["Choices"]
    assert rules and all(rule["Next"] == "Register" for rule in rules)
    # Every way to Register first requires the thresholds to pass
    for rule in rules:
        assert PASSES in rule["And"], rule
    conditions = [[c for c in rule["And"] if c != PASSES] for rule in rules]
    assert sorted(conditions, key=json.dumps) == sorted(
        [
            [{"Variable": "$.evaluation.has_champion", "BooleanEquals": False}],
            [
                {
                    "Variable": "$.evaluation.candidate_score",
                    "NumericGreaterThanPath": "$.evaluation.required_score",
                }
            ],
        ],
        key=json.dumps,
    )


def test_a_promoted_or_rejected_candidate_is_notified_and_the_run_succeeds(template: dict[str, Any]) -> None:
    states = definition(template)["States"]

    path = ["Register", "Release", "Promoted", "Notify", "Done"]
    for here, there in pairwise(path):
        assert states[here]["Next"] == there, here
    assert states["Register"]["Type"] == "Task" and states["Release"]["Type"] == "Task"
    assert states["Promoted"]["Type"] == "Pass" and states["Promoted"]["Parameters"]["decision"] == "promoted"
    assert states["Rejected"]["Type"] == "Pass" and states["Rejected"]["Parameters"]["decision"] == "rejected"
    assert states["Rejected"]["Next"] == "Notify"
    assert states["Done"] == {"Type": "Succeed"}


def test_every_pipeline_task_retries_transient_errors_with_backoff(template: dict[str, Any]) -> None:
    tasks = pipeline_tasks(definition(template)["States"])

    assert {name: task["Parameters"]["step"] for name, task in tasks.items()} == {
        "Ingest": "ingest",
        "Validate": "validate",
        "Train": "train",
        "PrepareTraining": "prepare_training",
        "CollectModel": "collect_model",
        "Evaluate": "evaluate",
        "Register": "register",
        "Release": "release",
        "DescribeFailure": "describe_failure",
    }
    for name, task in tasks.items():
        assert task["Type"] == "Task", name
        retries = [r for r in task["Retry"] if "TransientFailure" in r["ErrorEquals"]]
        assert retries, name
        for retry in retries:
            assert set(retry["ErrorEquals"]) >= {"TransientFailure", *TRANSIENT}, name
            assert retry["BackoffRate"] > 1, name
            assert retry["MaxAttempts"] >= 1, name


def test_every_pipeline_task_failure_is_notified_and_fails_the_run(template: dict[str, Any]) -> None:
    states = definition(template)["States"]
    as_is = {"ErrorEquals": ["States.ALL"], "ResultPath": "$.notice_error", "Next": "NotifyFailureAsIs"}

    for name, task in pipeline_tasks(states).items():
        if name != "DescribeFailure":
            assert task["Catch"] == [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}
            ], name
    assert states["Failed"]["Type"] == "Pass" and states["Failed"]["Parameters"]["decision"] == "failed"
    assert states["Failed"]["Next"] == "DescribeFailure"
    # The readable notice is made by the pipeline function; should that or its publishing fail, the
    # outcome is published as it is: a failure is never left unnotified
    describe = states["DescribeFailure"]
    assert describe["Parameters"]["step"] == "describe_failure" and describe["ResultPath"] == "$.notice"
    assert describe["Next"] == "NotifyFailure" and describe["Catch"] == [as_is]
    assert states["NotifyFailure"]["Catch"] == [as_is]
    assert states["NotifyFailure"]["Next"] == states["NotifyFailureAsIs"]["Next"] == "Fail"
    assert states["Fail"]["Type"] == "Fail" and states["Fail"]["CausePath"] == "$.error.Cause"


def test_the_notifications_publish_to_the_pipeline_topic(template: dict[str, Any]) -> None:
    states = definition(template)["States"]
    publishing = {
        name: state for name, state in states.items() if "sns" in str(state.get("Resource", "")).lower()
    }

    assert set(publishing) == {"Notify", "NotifyFailure", "NotifyFailureAsIs"}
    for name, state in publishing.items():
        assert state["Type"] == "Task", name
        assert state["Resource"] == "arn:aws:states:::sns:publish", name
        assert state["Parameters"]["TopicArn"] == TOPIC_ARN, name
    for name in ("Notify", "NotifyFailureAsIs"):
        assert publishing[name]["Parameters"]["Message.$"] == "States.JsonToString($.outcome)", name
    readable = publishing["NotifyFailure"]["Parameters"]
    assert (readable["Subject.$"], readable["Message.$"]) == ("$.notice.subject", "$.notice.message")


def test_every_placeholder_in_the_definition_is_substituted(template: dict[str, Any]) -> None:
    properties = machine(template)
    text = (REPO / properties["DefinitionUri"]).read_text()

    assert set(re.findall(r"\$\{([^}]+)\}", text)) == set(properties["DefinitionSubstitutions"])
    assert properties["DefinitionSubstitutions"]["PipelineFunctionArn"] == {
        "Fn::GetAtt": ["PipelineFunction", "Arn"]
    }
    assert properties["DefinitionSubstitutions"]["PipelineTopicArn"] == {"Ref": "PipelineTopic"}


def test_the_state_machine_may_invoke_the_function_and_publish_but_not_touch_data(
    template: dict[str, Any],
) -> None:
    policies = machine(template)["Policies"]

    assert {"LambdaInvokePolicy": {"FunctionName": {"Ref": "PipelineFunction"}}} in policies
    assert {"SNSPublishMessagePolicy": {"TopicName": {"Fn::GetAtt": ["PipelineTopic", "TopicName"]}}} in (
        policies
    )
    # No policy template for S3 or DynamoDB, and no statement with an s3: or dynamodb: action
    templates = [name for policy in policies if isinstance(policy, dict) for name in policy]
    assert not [name for name in templates if re.search(r"s3|dynamodb", name, re.IGNORECASE)]
    granted = [
        action
        for node in walk(policies)
        if isinstance(node, dict) and "Action" in node
        for action in actions(node)
    ]
    assert granted  # the statements are there to check
    assert not [action for action in granted if action.lower().startswith(("s3:", "dynamodb:", "*"))]


def test_the_pipeline_function_is_an_image_built_from_its_dockerfile(template: dict[str, Any]) -> None:
    resource_ = template["Resources"]["PipelineFunction"]
    properties = function(template)

    assert properties["PackageType"] == "Image"
    assert properties["ImageConfig"]["Command"] == ["app.step"]
    assert properties["Timeout"] == 900
    # An image carries its own runtime and code
    for key in ("Runtime", "Layers", "CodeUri", "Handler", "InlineCode"):
        assert key not in properties, key
    assert "Events" not in properties  # only the state machine invokes it
    dockerfile = REPO / resource_["Metadata"]["Dockerfile"]
    assert resource_["Metadata"]["Dockerfile"] == "functions/pipeline/Dockerfile" and dockerfile.is_file()
    commands = re.findall(r"^CMD\s+(.+)$", dockerfile.read_text(), re.MULTILINE)
    assert [json.loads(command) for command in commands] == [["app.step"]]
    app = (REPO / "functions" / "pipeline" / "app.py").read_text()
    assert re.search(r"^def step\(", app, re.MULTILINE)


def test_the_globals_give_the_image_function_no_runtime_or_layers(template: dict[str, Any]) -> None:
    globals_ = template.get("Globals", {}).get("Function", {})

    for key in ("Runtime", "Layers", "CodeUri", "Handler"):
        assert key not in globals_, key


def test_the_pipeline_function_reads_and_writes_only_its_prefixes(template: dict[str, Any]) -> None:
    found = statements(function(template))

    assert set(found) == {
        "ReadTrainingDataAndModels",
        "ListTrainingData",
        "WriteSnapshotsCandidatesVersionsAndReports",
    }
    reading = [s for s in found.values() if any(a.startswith("s3:GetObject") for a in actions(s))]
    assert [objects(s) for s in reading] == [{"datasets/*", "models/*", "staging/pipeline/*"}]
    writing = [s for s in found.values() if "s3:PutObject" in actions(s)]
    assert [objects(s) for s in writing] == [
        {"datasets/*/snapshots/*", "staging/pipeline/*", "models/*", "reports/*/pipeline/*"}
    ]
    # Listing stays inside datasets/
    listing = found["ListTrainingData"]
    assert actions(listing) == ["s3:ListBucket"]
    assert sub_strings(listing["Resource"]) == [BUCKET_ARN]
    assert listing.get("Condition") == {"StringLike": {"s3:prefix": "datasets/*"}}
    # Every statement allows, and none names the bucket's objects outside those prefixes
    assert all(s["Effect"] == "Allow" for s in found.values())


def test_the_pipeline_function_deletes_nothing_and_keeps_the_registry(template: dict[str, Any]) -> None:
    policies = function(template)["Policies"]

    granted = [
        action
        for node in walk(policies)
        if isinstance(node, dict) and "Action" in node
        for action in actions(node)
    ]
    assert "s3:DeleteObject" not in granted and "s3:DeleteObjectVersion" not in granted
    assert not [action for action in granted if action in ("*", "s3:*") or action.startswith("s3:Delete")]
    assert {"DynamoDBCrudPolicy": {"TableName": {"Ref": "RegistryTable"}}} in policies
    templates = [name for policy in policies if isinstance(policy, dict) for name in policy]
    assert not [name for name in templates if name.startswith("S3")]


def test_the_pipeline_topic_is_encrypted(template: dict[str, Any]) -> None:
    topic = resource(template, "PipelineTopic", "AWS::SNS::Topic")

    assert topic.get("KmsMasterKeyId")
