"""Files too large for one invocation in template.yaml and statemachines/batch_predict.asl.json:
the threshold that routes them, the Distributed Map's shape, every task caught, and what the steps
function and the state machine may touch."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .conftest import REPO, sub_strings

pytestmark = pytest.mark.infra

BUCKET_ARN = "arn:${AWS::Partition}:s3:::aimass-${Stage}-artifacts-${AWS::AccountId}-${AWS::Region}"
MACHINE_NAME = "aimass-${Stage}-batch-predict"
TRANSIENT = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def machine(template: dict[str, Any]) -> dict[str, Any]:
    resource = template["Resources"]["BatchPredictStateMachine"]
    assert resource["Type"] == "AWS::Serverless::StateMachine"
    return dict(resource["Properties"])


def definition(template: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads((REPO / machine(template)["DefinitionUri"]).read_text()))


def statements(properties: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for p in properties["Policies"] if "Statement" in p for s in p["Statement"]}


def test_a_file_over_the_threshold_parameter_goes_to_the_state_machine(template: dict[str, Any]) -> None:
    batch = template["Resources"]["BatchFunction"]["Properties"]
    parameter = template["Parameters"]["BatchMapThresholdBytes"]

    assert parameter["Type"] == "Number" and parameter["Default"] == 1 << 30
    assert batch["Environment"]["Variables"]["AIMASS_BATCH_MAP_THRESHOLD_BYTES"] == {
        "Ref": "BatchMapThresholdBytes"
    }
    assert batch["Environment"]["Variables"]["AIMASS_BATCH_STATE_MACHINE_ARN"] == {
        "Ref": "BatchPredictStateMachine"
    }
    # Starting it is all the batch function may do with it
    assert {
        "StepFunctionsExecutionPolicy": {
            "StateMachineName": {"Fn::GetAtt": ["BatchPredictStateMachine", "Name"]}
        }
    } in batch["Policies"]


def test_the_steps_run_the_same_code_as_the_batch_function(template: dict[str, Any]) -> None:
    steps = template["Resources"]["BatchStepsFunction"]["Properties"]
    batch = template["Resources"]["BatchFunction"]["Properties"]

    assert steps["CodeUri"] == batch["CodeUri"] and steps["Handler"] == "app.step"
    assert steps["Layers"] == batch["Layers"]
    assert steps["Timeout"] == 900 and steps["EphemeralStorage"] == {"Size": 10240}
    assert steps["Environment"]["Variables"] == {
        "AIMASS_BATCH_MAP_CONCURRENCY": {"Ref": "BatchMapConcurrency"},
        # Merge's drift may ask for retraining (test_retraining_triggers_template.py)
        "AIMASS_IDEMPOTENCY_TABLE": {"Ref": "IdempotencyTable"},
        "AIMASS_DRIFT_RETRAINING_FRACTION": {"Ref": "DriftRetrainingFraction"},
        "AIMASS_DRIFT_RETRAINING_COOLDOWN_HOURS": {"Ref": "DriftRetrainingCooldownHours"},
        # A part of a file of a model on the GPU endpoint is predicted there (test_gpu_endpoint_template.py)
        "AIMASS_SAGEMAKER_ENDPOINT": batch["Environment"]["Variables"]["AIMASS_SAGEMAKER_ENDPOINT"],
        # A part's rejected rows tokenise personal features with it (test_privacy_template.py)
        "AIMASS_PII_KEY_SECRET": {"Ref": "PiiKeySecret"},
    }
    assert "Events" not in steps  # only the state machine invokes it


def test_the_steps_function_reads_writes_and_removes_only_its_prefixes(template: dict[str, Any]) -> None:
    found = statements(template["Resources"]["BatchStepsFunction"]["Properties"])

    def objects(sid: str) -> set[str]:
        return {
            text.removeprefix(f"{BUCKET_ARN}/")
            for text in sub_strings(found[sid]["Resource"])
            if text.startswith(f"{BUCKET_ARN}/")
        }

    assert set(found) == {
        "ReadDroppedFilesAndModels",
        "StageParts",
        "ListPartsToRemove",
        "WriteResults",
        # drift asks for retraining: test_retraining_triggers_template.py
        "PublishDriftEvents",
        "GuardDriftRetraining",
    }
    assert objects("ReadDroppedFilesAndModels") == {"incoming/*", "models/*"}
    assert objects("StageParts") == {"staging/*"}
    assert "s3:DeleteObject" in found["StageParts"]["Action"]
    assert objects("WriteResults") == {"predictions/*", "rejected/*", "reports/*"}
    # Deleting and listing stay inside staging/
    deleting = [s for s in found.values() if "s3:DeleteObject" in s["Action"]]
    assert [objects(s["Sid"]) for s in deleting] == [{"staging/*"}]
    assert found["ListPartsToRemove"]["Condition"] == {"StringLike": {"s3:prefix": "staging/*"}}


def test_the_state_machine_plans_maps_the_parts_and_merges(template: dict[str, Any]) -> None:
    states = definition(template)["States"]
    start = definition(template)["StartAt"]

    assert start == "Plan" and states["Plan"]["Next"] == "PredictParts"
    assert states["PredictParts"]["Next"] == "Merge" and states["Merge"]["End"] is True
    parts = states["PredictParts"]
    assert parts["Type"] == "Map"
    assert parts["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert parts["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert parts["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert parts["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert (
        "ToleratedFailurePercentage" not in parts and "ToleratedFailureCount" not in parts
    )  # none tolerated
    assert parts["MaxConcurrencyPath"] == "$.plan.planned.max_concurrency"
    template_parameter = template["Parameters"]["BatchMapConcurrency"]
    assert template_parameter["Default"] == 10


def test_every_task_retries_transient_errors_and_failures_end_in_a_report(template: dict[str, Any]) -> None:
    states = definition(template)["States"]
    tasks = {"Plan": states["Plan"], "Merge": states["Merge"]}
    tasks |= states["PredictParts"]["ItemProcessor"]["States"]

    for name, task in tasks.items():
        assert task["Type"] == "Task", name
        assert task["Parameters"]["FunctionName"] == "${BatchStepsFunctionArn}", name
        (retry,) = task["Retry"]
        assert set(retry["ErrorEquals"]) == TRANSIENT, name
    # Whatever fails in the outer machine (a part's failure fails the Map) writes the failed report
    for name in ("Plan", "PredictParts", "Merge"):
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Fail"}
        ]
    assert states["Fail"]["Parameters"]["Payload"]["step"] == "fail"
    assert states["Fail"]["Next"] == "Failed" and states["Failed"]["Type"] == "Fail"


def test_every_placeholder_in_the_definition_is_substituted(template: dict[str, Any]) -> None:
    properties = machine(template)
    text = (REPO / properties["DefinitionUri"]).read_text()

    assert set(re.findall(r"\$\{([^}]+)\}", text)) == set(properties["DefinitionSubstitutions"])
    assert properties["DefinitionSubstitutions"]["BatchStepsFunctionArn"] == {
        "Fn::GetAtt": ["BatchStepsFunction", "Arn"]
    }
    assert sub_strings(properties["DefinitionSubstitutions"]["Bucket"]) == [
        "aimass-${Stage}-artifacts-${AWS::AccountId}-${AWS::Region}"
    ]


def test_the_state_machine_may_run_its_own_children_and_touch_only_staging(template: dict[str, Any]) -> None:
    properties = machine(template)
    found = statements(properties)

    assert properties["Type"] == "STANDARD"
    assert sub_strings(properties["Name"]) == [MACHINE_NAME]
    assert {"LambdaInvokePolicy": {"FunctionName": {"Ref": "BatchStepsFunction"}}} in properties["Policies"]
    assert sub_strings(found["DistributedMapChildExecutions"]["Resource"]) == [
        f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:stateMachine:{MACHINE_NAME}"
    ]
    assert sub_strings(found["DistributedMapChildExecutionControl"]["Resource"]) == [
        f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:execution:{MACHINE_NAME}/*"
    ]
    assert sub_strings(found["ReadManifestWriteResults"]["Resource"]) == [f"{BUCKET_ARN}/staging/*"]
    # Its errors are logged without the rows of users' files
    assert properties["Logging"]["IncludeExecutionData"] is False
    assert properties["Tracing"] == {"Enabled": True}


def test_staging_left_by_a_stopped_run_expires(template: dict[str, Any]) -> None:
    rules = template["Resources"]["ArtifactsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]

    (staging,) = [r for r in rules if r.get("Prefix") == "staging/"]
    assert staging["Status"] == "Enabled" and staging["ExpirationInDays"] == 7
    assert staging["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
