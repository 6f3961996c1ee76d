"""Heavy training on SageMaker: the pipeline's second training branch (docs/pipeline.md).

Validate picks the backend (`choosing_backend`, its `backend` is what the ChooseBackend Choice
reads). On the SageMaker branch, PrepareTraining (`prepare`) writes the job's channels under
`staging/pipeline/<model>/<run>/sagemaker/input/` and returns the CreateTrainingJob request; the
definition's `createTrainingJob.sync` task runs the job (aimass.pipeline.job in the training image)
and waits for it; CollectModel (`collect`) takes the model out of the job's `model.tar.gz`, checks it
again on the held-out rows, and stages it where Train stages its own, with a `training` result of
Train's shape. Evaluate and everything after it cannot tell the branches apart, except by the
result's `backend` and `training_job`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any

import numpy as np

from aimass import artifacts
from aimass.errors import ValidationFailed, field_error
from aimass.pipeline import job, train
from aimass.pipeline.config import TrainingConfig

if TYPE_CHECKING:
    from aimass.pipeline.steps import Run

Step = Callable[["Run"], dict[str, Any]]

# SageMaker's training job names: letters, digits and dashes, starting and ending with a letter or
# digit, at most 63 characters. Lowercase: SageMaker lowercases the name in the job's ARN, which the
# state machine's policy matches by the stack's prefix.
JOB_NAME_MAX = 63
_NOT_NAME = re.compile(r"[^a-z0-9]+")
# Tag values SageMaker accepts: anything else becomes "_".
_NOT_TAG = re.compile(r"[^\w.:/=+\-@ ]")


class BackendUnavailable(ValidationFailed):
    """The run asks for SageMaker, and the stack has no training image (or role) to train with."""

    code = "backend_unavailable"


@dataclass(frozen=True)
class SageMakerTraining:
    """The stack's SageMaker training settings: its stage (the job names' prefix), the training
    image (unset or empty: no SageMaker branch), the role the job runs as, its instance, volume and
    how long it may run."""

    stage: str
    image: str | None
    role_arn: str | None
    instance_type: str
    volume_gb: int
    max_runtime_s: int


class CandidateRejected(Exception):
    """The training job's model is not from this run's channels, or does not answer as its estimator did."""


def unavailable(training: SageMakerTraining) -> str | None:
    """Why this stack cannot train on SageMaker, or None when it can."""
    if not training.image:
        return "the stack has no training image (the TrainingImageUri parameter is empty)"
    if not training.role_arn:
        return "the stack has no role for training jobs (AIMASS_TRAINING_ROLE_ARN is not set)"
    return None


def choose_backend(config: TrainingConfig, rows: int, missing: str | None) -> dict[str, str]:
    """Where a snapshot of `rows` rows trains: the settings' `backend`, or with `auto` SageMaker
    from `sagemaker_min_rows` rows on. `missing` is why SageMaker is not available (None when it
    is): then `auto` trains on Lambda and says why, and `sagemaker` fails the run."""
    if config.backend == "lambda":
        return {"backend": "lambda", "backend_reason": "backend lambda in the settings"}
    if config.backend == "sagemaker":
        if missing:
            raise BackendUnavailable(
                f"the settings ask for SageMaker training, but {missing}",
                [field_error(["parameters", "backend"], missing, "backend_unavailable")],
            )
        return {"backend": "sagemaker", "backend_reason": "backend sagemaker in the settings"}
    least = config.sagemaker_min_rows
    if rows < least:
        return {"backend": "lambda", "backend_reason": f"{rows} rows, under sagemaker_min_rows ({least})"}
    if missing:
        return {
            "backend": "lambda",
            "backend_reason": f"{rows} rows would train on SageMaker (sagemaker_min_rows {least}), "
            f"but {missing}: trained on Lambda",
        }
    return {"backend": "sagemaker", "backend_reason": f"{rows} rows, at least sagemaker_min_rows ({least})"}


def choosing_backend(validate: Step) -> Step:
    """Validate's step, its findings with the training backend for the rows that passed."""

    @wraps(validate)
    def step(run: Run) -> dict[str, Any]:
        found = validate(run)
        return {**found, **choose_backend(run.config, found["rows"], unavailable(run.settings.sagemaker))}

    return step


def prefix(model: str, run: str) -> str:
    """Where a run's training job reads its channels (`input/`) and writes its model (`output/`)."""
    return f"staging/pipeline/{model}/{run}/sagemaker/"


def job_name(stage: str, model: str, run: str) -> str:
    """`aimass-<stage>-<model>-<run>-<hash>`: the stack's prefix (what the state machine may create),
    then the model and run as far as 63 characters allow, then 8 hex of their hash, so that two runs
    cut to the same name still differ. The same for a retried PrepareTraining."""
    head = f"aimass-{_slug(stage)}-"
    digest = hashlib.sha256(f"{model}\n{run}".encode()).hexdigest()[:8]
    body = f"{_slug(model)}-{_slug(run)}"[: JOB_NAME_MAX - len(head) - len(digest) - 1].strip("-")
    return f"{head}{body}-{digest}" if body else f"{head}{digest}"


def _slug(text: str) -> str:
    return _NOT_NAME.sub("-", text.lower()).strip("-")


def training_job_request(
    *,
    name: str,
    image: str,
    role: str,
    hyperparameters: dict[str, str],
    input_uri: str,
    output_uri: str,
    instance_type: str,
    volume_gb: int,
    max_runtime_s: int,
    tags: dict[str, str],
) -> dict[str, Any]:
    """The CreateTrainingJob request (the `.sync` task's Parameters take each field from it)."""
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "RoleArn": role,
        "HyperParameters": hyperparameters,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"{input_uri}{channel}/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
                "CompressionType": "None",
            }
            for channel in job.CHANNELS
        ],
        "OutputDataConfig": {"S3OutputPath": output_uri},
        # One instance: the trainer is scikit-learn on one machine; a second would train the same
        # model again.
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": volume_gb},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
        "Tags": [{"Key": key, "Value": _NOT_TAG.sub("_", value)[:256]} for key, value in tags.items()],
    }


def prepare(run: Run) -> dict[str, Any]:
    """PrepareTraining: the channels (the training and held-out rows Train would use) and the request."""
    current = run.settings.sagemaker
    missing = unavailable(current)
    if missing:  # Validate chose SageMaker on other settings than this function has
        raise BackendUnavailable(
            f"cannot train {run.model} on SageMaker: {missing}",
            [field_error(["parameters", "backend"], missing, "backend_unavailable")],
        )
    assert current.image and current.role_arn
    x_train, x_holdout, y_train, y_holdout = run.split()
    features = [column.name for column in run.columns()]
    where = prefix(run.model, run.name)
    channels = {}
    for channel, x, y in (("train", x_train, y_train), ("holdout", x_holdout, y_holdout)):
        body = job.channel_csv(features, run.config.label, x, y)
        uri = artifacts.put(run.bucket, f"{where}input/{channel}/{channel}.csv", body, "text/csv")
        channels[channel] = {"uri": uri, "rows": len(x), "sha256": artifacts.sha256(body)}
    request = training_job_request(
        name=job_name(current.stage, run.model, run.name),
        image=current.image,
        role=current.role_arn,
        hyperparameters=job.hyperparameters(run.config, run.state["ingest"]["task"]),
        input_uri=f"s3://{run.bucket}/{where}input/",
        output_uri=f"s3://{run.bucket}/{where}output/",
        instance_type=current.instance_type,
        volume_gb=current.volume_gb,
        max_runtime_s=current.max_runtime_s,
        tags={"aimass:model": run.model, "aimass:run": run.name},
    )
    return {"job": request, "channels": channels}


def collect(run: Run) -> dict[str, Any]:
    """CollectModel: the job's model, checked and staged as Train stages its own; Train's result shape."""
    from aimass.pipeline.evaluate import predictions
    from aimass.serving.backends.onnx import new_session

    ended = run.state["training_job"]
    name = ended["TrainingJobName"]
    if ended["TrainingJobStatus"] != "Completed":  # .sync fails the task first; never trust a result
        raise CandidateRejected(f"training job {name} ended {ended['TrainingJobStatus']}, not Completed")
    files = model_files(artifacts.get(ended["S3ModelArtifacts"]))
    found = json.loads(files[job.METADATA_FILE])
    written = {
        channel: {"rows": c["rows"], "sha256": c["sha256"]}
        for channel, c in run.state["sagemaker"]["channels"].items()
    }
    if found.get("channels") != written:
        raise CandidateRejected(
            f"training job {name} did not train on this run's channels: it read {found.get('channels')}, "
            f"PrepareTraining wrote {written}"
        )
    model = files[job.MODEL_FILE]
    _, x_holdout, _, _ = run.split()
    answered = predictions(new_session(model), x_holdout, run.classification)
    expected = np.load(io.BytesIO(files[job.OUTPUTS_FILE]), allow_pickle=False)
    if expected.shape != answered.shape:
        raise CandidateRejected(
            f"training job {name}: its estimator answered {expected.shape}, the ONNX model {answered.shape}"
        )
    gap = float(np.max(np.abs(expected - answered))) if answered.size else 0.0
    if gap > train.PARITY_TOLERANCE:
        raise CandidateRejected(
            f"training job {name}: the ONNX model differs from its estimator by {gap:.3g} on the held-out "
            f"rows (> {train.PARITY_TOLERANCE})"
        )
    uri = artifacts.put(run.bucket, train.candidate_key(run.model, run.name), model)
    request = run.state["sagemaker"]["job"]
    return train.result(
        "sagemaker",
        found["estimator"],
        found["params"],
        found["train_rows"],
        gap,
        uri,
        model,
        training_job={
            "name": name,
            "arn": ended["TrainingJobArn"],
            "status": ended["TrainingJobStatus"],
            "model_artifacts": ended["S3ModelArtifacts"],
            "image": request["AlgorithmSpecification"]["TrainingImage"],
            "instance_type": request["ResourceConfig"]["InstanceType"],
            "training_seconds": ended.get("TrainingTimeInSeconds"),
            "billable_seconds": ended.get("BillableTimeInSeconds"),
            "versions": found.get("versions"),
        },
    )


def model_files(archive: bytes) -> dict[str, bytes]:
    """The files the job wrote, read from its model.tar.gz (nothing is extracted to disk)."""
    wanted = {job.MODEL_FILE, job.OUTPUTS_FILE, job.METADATA_FILE}
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./")
            if member.isfile() and name in wanted and (content := tar.extractfile(member)) is not None:
                found[name] = content.read()
    if missing := sorted(wanted - set(found)):
        raise CandidateRejected(f"the training job's model.tar.gz has no {', '.join(missing)}")
    return found
