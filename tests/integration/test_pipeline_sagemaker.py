"""The retraining pipeline's SageMaker branch, run on moto's ASL interpreter in the local stack with a
recorded training job (moto does not run `createTrainingJob.sync` tasks).

The definition is the real one, as the local stack installed it from template.yaml, with only the
`createTrainingJob.sync` state replaced by a Pass state that leaves what Step Functions would:
- a completed job (events/sagemaker_training_job_completed.json, DescribeTrainingJob as the task
  returns it): the recording through the state's own ResultSelector, at its own ResultPath, on to its
  own Next;
- a failed job (events/sagemaker_training_job_failed.json): the error Step Functions raises for it,
  `States.TaskFailed` with the job's description as the cause, through the state's own Catch (which
  the test checks its Retry does not take first).
Every Lambda task runs the real handler in-process. What SageMaker itself would do in between is
done by a hook in front of CollectModel: it takes the request the real `.sync` state's Parameters
make of PrepareTraining's result, copies the channels PrepareTraining wrote into a temporary
/opt/ml, runs the training job's module there, and puts /opt/ml/model as `model.tar.gz` where
SageMaker puts it. So CollectModel, Evaluate, Register and Release run on a real artifact.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.session import get_session
from botocore.validate import ParamValidator

from aimass import artifacts, aws, wiring
from aimass.config import settings
from aimass.local import statemachines
from aimass.local.demo import Demo, training_csv
from aimass.local.lambda_runtime import LambdaContext, load_handler
from aimass.pipeline import job, steps
from aimass.registration import register_version
from tests.conftest import drained, running_stack, stopped, subscribed_queue
from tests.support import event

BUCKET = "aimass-pipeline-sagemaker"
SYNC = "arn:aws:states:::sagemaker:createTrainingJob.sync"
# What the recordings were made with: the stack's training settings, the models and the runs.
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/aimass-training:0.1.0"
ROLE = "arn:aws:iam::123456789012:role/aimass-local-SageMakerTrainingRole-1A2B3C4D5E6F"
COMPLETED = ("bc-sagemaker", "recorded-sagemaker-run", {"sagemaker_min_rows": 100})
FAILED = ("bc-sagemaker-failed", "recorded-sagemaker-failure", {"backend": "sagemaker"})


@dataclass
class Stack:
    sfn: Any
    s3: Any
    sqs: Any
    queue: str
    machine: str  # the template's state machine, as installed
    demo: Demo
    root: Path

    def add_model(self, name: str) -> None:
        """The breast-cancer demo as v1 of `name` (no champion), its dataset as the training data."""
        register_version(wiring.registry(), BUCKET, name, self.demo.model, "test", self.demo.enrichment)
        self.s3.put_object(Bucket=BUCKET, Key=f"datasets/{name}/breast_cancer.csv", Body=training_csv())

    def replaying(self, name: str, recording: str) -> str:
        """The installed definition with its `.sync` state replaced by the recorded job's outcome."""
        described = self.sfn.describe_state_machine(stateMachineArn=self.machine)
        definition = json.loads(described["definition"])
        [state] = [n for n, s in definition["States"].items() if s.get("Resource") == SYNC]
        definition["States"][state] = replay(definition["States"][state], event(recording))
        return str(
            self.sfn.create_state_machine(
                name=name, definition=json.dumps(definition), roleArn=described["roleArn"]
            )["stateMachineArn"]
        )

    def run(
        self, machine: str, model: str, parameters: dict[str, Any], name: str | None = None
    ) -> dict[str, Any]:
        started = self.sfn.start_execution(
            stateMachineArn=machine,
            input=json.dumps({"model": model, "parameters": parameters}),
            **({"name": name} if name else {}),
        )
        return stopped(self.sfn, started["executionArn"])

    def entered(self, execution: dict[str, Any]) -> list[str]:
        history = self.sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]

    def messages(self) -> list[dict[str, Any]]:
        """The outcomes of the pipeline topic's notices since the last call: each notice's last line."""
        return [json.loads(body["Message"].splitlines()[-1]) for body in drained(self.sqs, self.queue)]


def replay(task: dict[str, Any], recording: dict[str, Any]) -> dict[str, Any]:
    """A Pass state that leaves the state as the `.sync` task would have with this job's outcome."""
    if recording["TrainingJobStatus"] == "Completed":
        return {
            "Type": "Pass",
            "Comment": "recorded createTrainingJob.sync result, through the task's ResultSelector",
            "Result": selected(recording, task["ResultSelector"]),
            "ResultPath": task["ResultPath"],
            "Next": task["Next"],
        }
    # A job that failed (or was stopped) fails the task with States.TaskFailed, its description as
    # the cause. The task's Retry must not take it (a failed job is not rerun); its Catch does.
    assert not [r for r in task.get("Retry", []) if catches(r["ErrorEquals"], "States.TaskFailed")]
    catcher = next(c for c in task["Catch"] if catches(c["ErrorEquals"], "States.TaskFailed"))
    return {
        "Type": "Pass",
        "Comment": "recorded createTrainingJob.sync failure, through the task's Catch",
        "Result": {"Error": "States.TaskFailed", "Cause": json.dumps(recording)},
        "ResultPath": catcher["ResultPath"],
        "Next": catcher["Next"],
    }


def catches(errors: list[str], error: str) -> bool:
    return error in errors or "States.ALL" in errors


def at(document: Any, path: str) -> Any:
    """A plain JSONPath (`$.a.b`, the only kind the `.sync` state uses) in a document."""
    assert re.fullmatch(r"\$(\.\w+)*", path), f"not a plain path: {path}"
    for part in path.split(".")[1:]:
        document = document[part]
    return document


def selected(document: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """A ResultSelector or Parameters template applied to a document."""
    return {
        key.removesuffix(".$"): at(document, value) if key.endswith(".$") else value
        for key, value in template.items()
    }


def train_as_sagemaker_does(request: dict[str, Any], root: Path) -> str:
    """What SageMaker does with a CreateTrainingJob request for this image: the channels' objects
    into /opt/ml/input/data/<channel>/, the hyperparameters into input/config, `train` run, and
    /opt/ml/model packed as <S3OutputPath><job>/output/model.tar.gz. Returns that URI."""
    s3 = aws.client("s3")
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    for channel in request["InputDataConfig"]:
        bucket, prefix = artifacts.parse_uri(channel["DataSource"]["S3DataSource"]["S3Uri"])
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            target = root / "input" / "data" / channel["ChannelName"] / item["Key"].removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    assert job.run_job(root) == 0, (root / "output" / "failure").read_text()
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        for path in sorted((root / "model").iterdir()):
            tar.add(path, arcname=path.name)
    uri = f"{request['OutputDataConfig']['S3OutputPath']}{request['TrainingJobName']}/output/model.tar.gz"
    bucket, key = artifacts.parse_uri(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=packed.getvalue())
    return uri


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("pipeline-sagemaker")
    environment = {"AIMASS_STAGE": "local", "AIMASS_TRAINING_IMAGE": IMAGE, "AIMASS_TRAINING_ROLE_ARN": ROLE}
    with running_stack(root, BUCKET, environment=environment) as local:
        queue = subscribed_queue(local.pipeline_topic_arn, "pipeline-sagemaker-outcomes")
        yield Stack(
            aws.client("stepfunctions"),
            aws.client("s3"),
            aws.client("sqs"),
            queue,
            statemachines.arns()["TrainingPipelineStateMachine"],
            demos["breast-cancer"],
            root,
        )


@dataclass
class SageMakerRun:
    execution: dict[str, Any]
    requests: list[dict[str, Any]]  # what the `.sync` state would have sent SageMaker
    artifacts: list[str]  # where the hook put model.tar.gz
    messages: list[dict[str, Any]]


@pytest.fixture(scope="module")
def sagemaker_run(stack: Stack) -> Iterator[SageMakerRun]:
    """The recorded run: bc-sagemaker's 569 rows over its sagemaker_min_rows of 100 train on SageMaker."""
    model, run, parameters = COMPLETED
    stack.add_model(model)
    machine = stack.replaying("TrainingPipelineRecordedSageMakerJob", "sagemaker_training_job_completed")
    definition = json.loads(stack.sfn.describe_state_machine(stateMachineArn=stack.machine)["definition"])
    [sync] = [s for s in definition["States"].values() if s.get("Resource") == SYNC]
    real = steps.STEPS["collect_model"]
    requests: list[dict[str, Any]] = []
    uris: list[str] = []

    def sagemaker_then_collect(run: steps.Run) -> dict[str, Any]:
        request = selected(run.state, sync["Parameters"])  # what the real task sends
        requests.append(request)
        uris.append(train_as_sagemaker_does(request, stack.root / f"opt-ml-{len(requests)}"))
        return real(run)

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(steps.STEPS, "collect_model", sagemaker_then_collect)
        execution = stack.run(machine, model, parameters, name=run)
    yield SageMakerRun(execution, requests, uris, stack.messages())


def test_a_large_enough_snapshot_is_trained_on_sagemaker_and_promoted(
    stack: Stack, sagemaker_run: SageMakerRun
) -> None:
    execution = sagemaker_run.execution
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    recording = event("sagemaker_training_job_completed")

    # Validate chose SageMaker for its rows; Train (the Lambda trainer) never ran
    assert output["validation"]["backend"] == "sagemaker"
    assert output["validation"]["backend_reason"] == "569 rows, at least sagemaker_min_rows (100)"
    entered = stack.entered(execution)
    assert entered[:6] == [
        "Ingest",
        "Validate",
        "ChooseBackend",
        "PrepareTraining",
        "TrainOnSageMaker",
        "CollectModel",
    ]
    assert "Train" not in entered and entered[-1] == "Done"
    # The model the job wrote is the candidate, staged where Train stages its own
    training = output["training"]
    assert training["backend"] == "sagemaker" and training["estimator"] == "logistic_regression"
    assert (
        training["candidate"]["uri"]
        == f"s3://{BUCKET}/staging/pipeline/bc-sagemaker/recorded-sagemaker-run/model.onnx"
    )
    assert training["parity_gap"] <= 1e-4
    assert training["training_job"]["name"] == recording["TrainingJobName"]
    assert training["training_job"]["model_artifacts"] == recording["ModelArtifacts"]["S3ModelArtifacts"]
    assert training["training_job"]["billable_seconds"] == recording["BillableTimeInSeconds"]
    # ... and it won: the new champion, its lineage naming the training job
    assert wiring.registry().get_model("bc-sagemaker").aliases == {"champion": 2}
    version = wiring.registry().get_version("bc-sagemaker", 2)
    assert version.lineage["execution"] == execution["executionArn"]
    trained = version.lineage["trained"]
    assert trained["backend"] == "sagemaker"
    assert trained["training_job"]["name"] == recording["TrainingJobName"]
    assert trained["training_job"]["arn"] == recording["TrainingJobArn"]
    assert [(m["decision"], m.get("version")) for m in sagemaker_run.messages] == [("promoted", 2)]


def test_the_recorded_job_is_the_one_prepare_training_asked_for(sagemaker_run: SageMakerRun) -> None:
    recording = event("sagemaker_training_job_completed")
    [request] = sagemaker_run.requests

    # A request SageMaker's API takes (botocore's model of CreateTrainingJob, offline)
    shape = get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    # The recording is this run's job: if PrepareTraining's names change, record the job again
    for field in ("TrainingJobName", "RoleArn", "InputDataConfig", "ResourceConfig", "StoppingCondition"):
        assert request[field] == recording[field], field
    assert (
        request["AlgorithmSpecification"]["TrainingImage"]
        == recording["AlgorithmSpecification"]["TrainingImage"]
    )
    assert request["OutputDataConfig"]["S3OutputPath"] == recording["OutputDataConfig"]["S3OutputPath"]
    assert sagemaker_run.artifacts == [recording["ModelArtifacts"]["S3ModelArtifacts"]]
    # Its hyperparameters are the run's settings, which the job reads back
    config, task = job.parse_hyperparameters(request["HyperParameters"])
    assert task == "classification" and config.sagemaker_min_rows == 100
    assert {tag["Key"]: tag["Value"] for tag in request["Tags"]} == {
        "aimass:model": "bc-sagemaker",
        "aimass:run": "recorded-sagemaker-run",
    }


def test_the_model_trained_on_sagemaker_serves_predictions(sagemaker_run: SageMakerRun) -> None:
    assert sagemaker_run.execution["status"] == "SUCCEEDED"
    request = json.loads(
        json.dumps(event("v1_predict_breast_cancer")).replace("models/breast-cancer:", "models/bc-sagemaker:")
    )

    response = load_handler("online")(request, LambdaContext())

    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["model"] == {"name": "bc-sagemaker", "version": 2, "backend": "lambda"}
    assert len(body["predictions"]) == len(json.loads(request["body"])["instances"])


def test_lambda_trains_the_same_model_into_the_same_layout(stack: Stack, sagemaker_run: SageMakerRun) -> None:
    on_sagemaker = json.loads(sagemaker_run.execution["output"])

    # The same settings but the backend, on the same rows: the Lambda trainer
    done = stack.run(stack.machine, "bc-sagemaker", {"backend": "lambda", "sagemaker_min_rows": 100})

    assert done["status"] == "SUCCEEDED", done
    output = json.loads(done["output"])
    assert output["validation"]["backend"] == "lambda" and "PrepareTraining" not in stack.entered(done)
    assert set(output["training"]) == set(on_sagemaker["training"])
    assert output["training"]["training_job"] is None and output["training"]["backend"] == "lambda"
    run = done["executionArn"].rsplit(":", 1)[1]
    assert (
        output["training"]["candidate"]["uri"]
        == f"s3://{BUCKET}/staging/pipeline/bc-sagemaker/{run}/model.onnx"
    )
    assert output["training"]["params"] == on_sagemaker["training"]["params"]
    assert output["evaluation"]["candidate"] == pytest.approx(on_sagemaker["evaluation"]["candidate"])
    # As good as the champion it trained on SageMaker, so not better: not released
    assert "does not beat the champion" in output["evaluation"]["reason"]
    assert wiring.registry().get_model("bc-sagemaker").aliases == {"champion": 2}
    stack.messages()


def test_a_failed_training_job_fails_the_run_and_leaves_the_registry_unchanged(stack: Stack) -> None:
    model, run, parameters = FAILED
    stack.add_model(model)
    before = wiring.registry().get_model(model)
    recording = event("sagemaker_training_job_failed")
    machine = stack.replaying("TrainingPipelineRecordedFailedJob", "sagemaker_training_job_failed")

    failed = stack.run(machine, model, parameters, name=run)

    assert failed["status"] == "FAILED"
    entered = stack.entered(failed)
    assert entered[3:] == [
        "PrepareTraining",
        "TrainOnSageMaker",
        "Failed",
        "DescribeFailure",
        "NotifyFailure",
        "Fail",
    ]
    assert wiring.registry().get_model(model) == before
    assert [v.version for v in wiring.registry().list_versions(model)] == [1]
    candidate = f"staging/pipeline/{model}/{run}/model.onnx"
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=candidate)
    # The notice carries Step Functions' error and the job's description, with its FailureReason
    [message] = stack.messages()
    assert message["decision"] == "failed" and message["error"] == "States.TaskFailed"
    cause = json.loads(message["cause"])
    assert cause["TrainingJobName"] == recording["TrainingJobName"]
    assert cause["FailureReason"].startswith("AlgorithmError: MemoryError")


def test_sagemaker_asked_for_without_a_training_image_fails_at_validation(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.add_model("bc-no-image")
    monkeypatch.setenv("AIMASS_TRAINING_IMAGE", "")  # a stack deployed without TrainingImageUri
    settings.cache_clear()

    try:
        failed = stack.run(stack.machine, "bc-no-image", {"backend": "sagemaker"})
        fallback = stack.run(stack.machine, "bc-no-image", {"sagemaker_min_rows": 100})
    finally:
        monkeypatch.undo()
        settings.cache_clear()

    assert failed["status"] == "FAILED"
    assert stack.entered(failed)[-5:] == ["Validate", "Failed", "DescribeFailure", "NotifyFailure", "Fail"]
    # backend auto trains on Lambda instead, and says why
    assert fallback["status"] == "SUCCEEDED", fallback
    validation = json.loads(fallback["output"])["validation"]
    assert validation["backend"] == "lambda" and "TrainingImageUri" in validation["backend_reason"]
    failure, promoted = stack.messages()
    assert failure["error"] == "BackendUnavailable" and "TrainingImageUri" in failure["cause"]
    assert promoted["decision"] == "promoted"
