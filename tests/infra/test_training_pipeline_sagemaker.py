"""The retraining pipeline's SageMaker branch in template.yaml and the definition: the Choice that
picks it, the `createTrainingJob.sync` task fed by PrepareTraining and read by CollectModel, and the
IAM each side needs (the state machine's, and the role the training jobs run as), no more."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Any

import pytest

from aimass.config import Settings
from aimass.pipeline import job, sagemaker

from .conftest import REPO, sub_strings
from .test_training_pipeline_template import (
    BUCKET_ARN,
    actions,
    definition,
    function,
    machine,
    objects,
    resource,
    statements,
)

pytestmark = pytest.mark.infra

SYNC = "arn:aws:states:::sagemaker:createTrainingJob.sync"
JOBS_ARN = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:training-job/aimass-${Stage}-*"
EVENTS_RULE = (
    "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/"
    "StepFunctionsGetEventsForSageMakerTrainingJobsRule"
)


def states(template: dict[str, Any]) -> dict[str, Any]:
    return dict(definition(template)["States"])


def role(template: dict[str, Any]) -> dict[str, Any]:
    return resource(template, "SageMakerTrainingRole", "AWS::IAM::Role")


def role_statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for p in role(template)["Policies"] for s in p["PolicyDocument"]["Statement"]}


def sample_request() -> dict[str, Any]:
    return sagemaker.training_job_request(
        name="aimass-dev-m-r-0123abcd",
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/aimass-training:1",
        role="arn:aws:iam::123456789012:role/r",
        hyperparameters={},
        input_uri="s3://b/in/",
        output_uri="s3://b/out/",
        instance_type="ml.m5.xlarge",
        volume_gb=30,
        max_runtime_s=3600,
        tags={},
    )


# ---------------------------------------------------------------------------------------------
# The definition
# ---------------------------------------------------------------------------------------------


def test_validate_chooses_the_backend_and_lambda_is_the_default(template: dict[str, Any]) -> None:
    found = states(template)

    assert found["Validate"]["Next"] == "ChooseBackend"
    choice = found["ChooseBackend"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {"Variable": "$.validation.backend", "StringEquals": "sagemaker", "Next": "PrepareTraining"}
    ]
    assert choice["Default"] == "Train"


def test_both_branches_leave_the_training_result_where_evaluate_reads_it(template: dict[str, Any]) -> None:
    found = states(template)

    assert found["Train"]["Next"] == "Evaluate"
    assert found["PrepareTraining"]["Next"] == "TrainOnSageMaker"
    assert found["TrainOnSageMaker"]["Next"] == "CollectModel"
    assert found["CollectModel"]["Next"] == "Evaluate"
    assert found["Train"]["ResultPath"] == found["CollectModel"]["ResultPath"] == "$.training"
    # PrepareTraining's request and the job's result each under a key of their own
    assert found["PrepareTraining"]["ResultPath"] == "$.sagemaker"
    assert found["TrainOnSageMaker"]["ResultPath"] == "$.training_job"


def test_the_training_job_is_created_and_waited_for(template: dict[str, Any]) -> None:
    found = states(template)

    [name] = [n for n, s in found.items() if s.get("Resource") == SYNC]
    assert name == "TrainOnSageMaker" and found[name]["Type"] == "Task"


def test_the_job_is_created_from_every_field_of_prepare_trainings_request(template: dict[str, Any]) -> None:
    parameters = states(template)["TrainOnSageMaker"]["Parameters"]

    assert set(parameters) == {f"{field}.$" for field in sample_request()}
    for key, path in parameters.items():
        assert path == f"$.sagemaker.job.{key.removesuffix('.$')}", key


def test_the_job_result_keeps_its_name_status_model_and_timings(template: dict[str, Any]) -> None:
    selector = states(template)["TrainOnSageMaker"]["ResultSelector"]

    assert selector == {
        "TrainingJobName.$": "$.TrainingJobName",
        "TrainingJobArn.$": "$.TrainingJobArn",
        "TrainingJobStatus.$": "$.TrainingJobStatus",
        "S3ModelArtifacts.$": "$.ModelArtifacts.S3ModelArtifacts",
        "TrainingStartTime.$": "$.TrainingStartTime",
        "TrainingEndTime.$": "$.TrainingEndTime",
        "TrainingTimeInSeconds.$": "$.TrainingTimeInSeconds",
        "BillableTimeInSeconds.$": "$.BillableTimeInSeconds",
    }


def test_sagemaker_errors_are_retried_but_a_failed_job_is_not_rerun(template: dict[str, Any]) -> None:
    task = states(template)["TrainOnSageMaker"]

    retried = {error for retry in task["Retry"] for error in retry["ErrorEquals"]}
    assert retried == {"SageMaker.AmazonSageMakerException"}  # throttling and other API errors
    for retry in task["Retry"]:
        assert retry["BackoffRate"] > 1 and retry["MaxAttempts"] >= 1
    # A job that fails or is stopped is States.TaskFailed: caught, notified, the run fails
    assert task["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}]


def test_prepare_and_collect_are_pipeline_function_steps(template: dict[str, Any]) -> None:
    from aimass.pipeline.steps import STEPS

    found = states(template)

    for name, step in (("PrepareTraining", "prepare_training"), ("CollectModel", "collect_model")):
        assert found[name]["Resource"] == "${PipelineFunctionArn}", name
        assert found[name]["Parameters"]["step"] == step and step in STEPS, name
        assert found[name]["TimeoutSeconds"] == 900, name  # reads and writes a whole split


# ---------------------------------------------------------------------------------------------
# The state machine's IAM for the .sync task
# ---------------------------------------------------------------------------------------------


def test_the_state_machine_may_run_only_the_stacks_training_jobs(template: dict[str, Any]) -> None:
    found = statements(machine(template))["RunTrainingJobs"]

    assert found["Effect"] == "Allow"
    assert set(actions(found)) == {
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:AddTags",
        "sagemaker:ListTags",
    }
    assert sub_strings(found["Resource"]) == [JOBS_ARN]
    # Every job name PrepareTraining gives falls under that ARN
    for stage in ("dev", "staging", "prod"):
        name = sagemaker.job_name(stage, "breast-cancer", "a" * 80)
        arn = JOBS_ARN.replace("${Stage}", stage).replace("aimass-" + stage + "-*", name)
        assert fnmatchcase(arn, JOBS_ARN.replace("${Stage}", stage)), name


def test_the_state_machine_may_manage_only_the_sagemaker_events_rule(template: dict[str, Any]) -> None:
    found = statements(machine(template))["FollowTrainingJobs"]

    assert set(actions(found)) == {"events:PutTargets", "events:PutRule", "events:DescribeRule"}
    assert sub_strings(found["Resource"]) == [EVENTS_RULE]


def test_the_state_machine_may_pass_only_the_training_role_and_only_to_sagemaker(
    template: dict[str, Any],
) -> None:
    found = statements(machine(template))

    passing = [s for s in found.values() if "iam:PassRole" in actions(s)]
    assert [s["Sid"] for s in passing] == ["PassTrainingRole"]
    [statement] = passing
    assert actions(statement) == ["iam:PassRole"]
    assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerTrainingRole", "Arn"]}
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


# ---------------------------------------------------------------------------------------------
# The role the training jobs run as
# ---------------------------------------------------------------------------------------------


def test_only_sagemaker_may_assume_the_training_role(template: dict[str, Any]) -> None:
    trust = role(template)["AssumeRolePolicyDocument"]["Statement"]

    assert trust == [
        {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    # the bucket's customer key only, when KmsKeyArn is given (test_privacy_template.py)
    assert role(template)["ManagedPolicyArns"] == [
        {"Fn::If": ["HasKmsKey", {"Ref": "ArtifactsKeyAccess"}, {"Ref": "AWS::NoValue"}]}
    ]


def test_a_training_job_reads_only_its_channels_and_writes_only_its_output(template: dict[str, Any]) -> None:
    found = role_statements(template)
    s3 = {sid: s for sid, s in found.items() if any(a.startswith("s3:") for a in actions(s))}

    assert set(s3) == {"ReadChannels", "ListChannels", "WriteModel"}
    assert actions(found["ReadChannels"]) == ["s3:GetObject"]
    assert objects(found["ReadChannels"]) == {"staging/pipeline/*/sagemaker/input/*"}
    assert set(actions(found["WriteModel"])) == {"s3:PutObject", "s3:AbortMultipartUpload"}
    assert objects(found["WriteModel"]) == {"staging/pipeline/*/sagemaker/output/*"}
    assert actions(found["ListChannels"]) == ["s3:ListBucket"]
    assert sub_strings(found["ListChannels"]["Resource"]) == [BUCKET_ARN]
    listed = found["ListChannels"]["Condition"]["StringLike"]["s3:prefix"]
    # ... which are where PrepareTraining writes the channels and SageMaker puts model.tar.gz
    where = sagemaker.prefix("breast-cancer", "run-1")
    for channel in job.CHANNELS:
        assert fnmatchcase(f"{where}input/{channel}/{channel}.csv", "staging/pipeline/*/sagemaker/input/*")
        assert fnmatchcase(f"{where}input/{channel}/", listed)
    assert fnmatchcase(
        f"{where}output/aimass-dev-x/output/model.tar.gz", "staging/pipeline/*/sagemaker/output/*"
    )


def test_a_training_job_pulls_images_and_logs_but_may_do_nothing_else(template: dict[str, Any]) -> None:
    found = role_statements(template)

    granted = {action for s in found.values() for action in actions(s)}
    assert granted == {
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "ecr:BatchCheckLayerAvailability",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchGetImage",
        "ecr:GetAuthorizationToken",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
        "cloudwatch:PutMetricData",
    }
    assert all(s["Effect"] == "Allow" for s in found.values())
    assert sub_strings(found["PullTrainingImage"]["Resource"]) == [
        "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/*"
    ]
    logs = sub_strings(found["WriteJobLogs"]["Resource"])
    assert logs and all(":log-group:/aws/sagemaker/TrainingJobs" in arn for arn in logs)
    # The two actions that take no resource are the only ones on "*", the metrics kept to the jobs'
    unscoped = {a for s in found.values() if s["Resource"] == "*" for a in actions(s)}
    assert unscoped == {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    assert found["PutJobMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}
    }


# ---------------------------------------------------------------------------------------------
# Parameters, the function's settings, the image
# ---------------------------------------------------------------------------------------------


def test_the_training_image_is_optional_and_must_be_an_ecr_image(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["TrainingImageUri"]
    pattern = re.compile(parameter["AllowedPattern"])

    assert parameter["Default"] == ""
    assert pattern.fullmatch("")
    assert pattern.fullmatch("123456789012.dkr.ecr.eu-west-1.amazonaws.com/aimass/training:2025.1")
    assert pattern.fullmatch(
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/aimass-training@sha256:{'a' * 64}"
    )
    assert not pattern.fullmatch("docker.io/library/python:3.12")
    assert not pattern.fullmatch("123456789012.dkr.ecr.us-east-1.amazonaws.com/aimass-training")  # no tag
    assert template["Parameters"]["TrainingInstanceType"]["Default"] == "ml.m5.xlarge"


def test_the_pipeline_function_gets_the_training_settings_it_reads(template: dict[str, Any]) -> None:
    variables = function(template)["Environment"]["Variables"]

    assert variables["AIMASS_TRAINING_IMAGE"] == {"Ref": "TrainingImageUri"}
    assert variables["AIMASS_TRAINING_ROLE_ARN"] == {"Fn::GetAtt": ["SageMakerTrainingRole", "Arn"]}
    assert variables["AIMASS_TRAINING_INSTANCE_TYPE"] == {"Ref": "TrainingInstanceType"}
    assert variables["AIMASS_TRAINING_VOLUME_GB"] == {"Ref": "TrainingVolumeSizeGb"}
    assert variables["AIMASS_TRAINING_MAX_RUNTIME_S"] == {"Ref": "TrainingMaxRuntimeSeconds"}
    for variable in variables:
        assert variable.removeprefix("AIMASS_").lower() in Settings.model_fields, variable


def test_the_training_image_is_built_from_its_own_dockerfile() -> None:
    dockerfile = (REPO / "functions" / "pipeline" / "training.Dockerfile").read_text()

    [base] = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert base.startswith("public.ecr.aws/docker/library/python:3.12") and base.endswith("-slim")
    assert re.search(r"pip install [^\n]*\[train,parquet\]", dockerfile)
    assert re.findall(r"^ENTRYPOINT\s+(.+)$", dockerfile, re.MULTILINE) == [
        '["python", "-m", "aimass.pipeline.job"]'
    ]
