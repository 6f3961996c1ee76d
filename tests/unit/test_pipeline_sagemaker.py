"""The SageMaker training branch's pure parts (aimass.pipeline.sagemaker and aimass.pipeline.job):
where a run trains, the training job's name and CreateTrainingJob request, the hyperparameters'
round trip, and the job's output as CollectModel reads it. The job itself, which trains, runs in
tests/integration/test_training_job.py."""

from __future__ import annotations

import io
import re
import tarfile
from typing import Any

import pytest
from botocore.session import get_session
from botocore.validate import ParamValidator
from pydantic import ValidationError

from aimass.pipeline import job, sagemaker
from aimass.pipeline.config import TrainingConfig

JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's TrainingJobName pattern
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/aimass-training:1.0"
ROLE = "arn:aws:iam::123456789012:role/aimass-dev-SageMakerTrainingRole-ABC"


def config(**fields: Any) -> TrainingConfig:
    return TrainingConfig.model_validate(fields)


def training(image: str | None, role: str | None) -> sagemaker.SageMakerTraining:
    """A stack's SageMaker training settings with this image and role."""
    return sagemaker.SageMakerTraining(
        stage="dev",
        image=image,
        role_arn=role,
        instance_type="ml.m5.xlarge",
        volume_gb=30,
        max_runtime_s=14_400,
    )


# ---------------------------------------------------------------------------------------------
# Where a run trains
# ---------------------------------------------------------------------------------------------


def test_by_default_small_snapshots_train_on_lambda_and_large_ones_on_sagemaker() -> None:
    settings = config()
    assert settings.backend == "auto" and settings.sagemaker_min_rows == 100_000

    small = sagemaker.choose_backend(settings, 99_999, None)
    large = sagemaker.choose_backend(settings, 100_000, None)

    assert small["backend"] == "lambda" and "under sagemaker_min_rows (100000)" in small["backend_reason"]
    assert large["backend"] == "sagemaker" and "at least sagemaker_min_rows" in large["backend_reason"]


def test_the_threshold_is_a_setting_of_the_model() -> None:
    assert sagemaker.choose_backend(config(sagemaker_min_rows=500), 569, None)["backend"] == "sagemaker"
    assert sagemaker.choose_backend(config(sagemaker_min_rows=1000), 569, None)["backend"] == "lambda"


def test_without_a_training_image_auto_trains_on_lambda_and_says_why() -> None:
    missing = sagemaker.unavailable(training("", ROLE))
    assert missing and "TrainingImageUri" in missing

    chosen = sagemaker.choose_backend(config(sagemaker_min_rows=10), 569, missing)

    assert chosen["backend"] == "lambda"
    assert (
        "would train on SageMaker" in chosen["backend_reason"]
        and "TrainingImageUri" in chosen["backend_reason"]
    )


def test_asking_for_sagemaker_without_a_training_image_fails_the_run_clearly() -> None:
    missing = sagemaker.unavailable(training(None, ROLE))

    with pytest.raises(sagemaker.BackendUnavailable) as raised:
        sagemaker.choose_backend(config(backend="sagemaker"), 10, missing)

    assert "ask for SageMaker" in str(raised.value) and "TrainingImageUri" in str(raised.value)
    assert raised.value.details[0]["loc"] == ["parameters", "backend"]
    assert raised.value.code == "backend_unavailable"


def test_an_explicit_backend_wins_over_the_row_count() -> None:
    available = sagemaker.unavailable(training(IMAGE, ROLE))
    assert available is None

    assert sagemaker.choose_backend(config(backend="lambda"), 10**9, available)["backend"] == "lambda"
    assert sagemaker.choose_backend(config(backend="sagemaker"), 10, available)["backend"] == "sagemaker"


def test_a_training_image_without_a_role_is_not_a_usable_backend() -> None:
    missing = sagemaker.unavailable(training(IMAGE, None))

    assert missing and "role" in missing


# ---------------------------------------------------------------------------------------------
# The training job's name and request
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "run"),
    [
        ("breast-cancer", "7f9c1e2a-5b7d-4c3e-9a51-3c1d2e4f5a6b"),
        ("m", "r"),
        ("a.very_long.model-name" * 4, "scheduled-2025-01-01T00-00-00Z-" + "x" * 50),
        ("Model.With_Odd--Chars", "--run--"),
    ],
)
def test_a_job_name_fits_sagemakers_rules_and_the_stacks_prefix(model: str, run: str) -> None:
    name = sagemaker.job_name("dev", model, run)

    assert len(name) <= 63 and JOB_NAME.match(name), name
    assert name == name.lower() and name.startswith("aimass-dev-")  # what the state machine may create
    assert name == sagemaker.job_name("dev", model, run)  # a retried PrepareTraining names it alike


def test_every_run_gets_its_own_job_even_when_the_names_are_cut_alike() -> None:
    long_model = "m" * 80
    names = {sagemaker.job_name("prod", long_model, f"run-{i}") for i in range(100)}
    names.add(sagemaker.job_name("prod", "other", "run-0"))

    assert len(names) == 101


def request(hyperparameters: dict[str, str] | None = None) -> dict[str, Any]:
    return sagemaker.training_job_request(
        name=sagemaker.job_name("dev", "breast-cancer", "run-1"),
        image=IMAGE,
        role=ROLE,
        hyperparameters=hyperparameters or job.hyperparameters(config(), "classification"),
        input_uri="s3://bucket/staging/pipeline/breast-cancer/run-1/sagemaker/input/",
        output_uri="s3://bucket/staging/pipeline/breast-cancer/run-1/sagemaker/output/",
        instance_type="ml.m5.xlarge",
        volume_gb=30,
        max_runtime_s=14_400,
        tags={"aimass:model": "breast-cancer", "aimass:run": "run-1"},
    )


def test_the_request_reads_both_channels_and_writes_under_the_runs_output_prefix() -> None:
    found = request()

    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in found["InputDataConfig"]}
    prefix = "s3://bucket/staging/pipeline/breast-cancer/run-1/sagemaker/"
    assert channels == {
        "train": {
            "S3DataType": "S3Prefix",
            "S3Uri": f"{prefix}input/train/",
            "S3DataDistributionType": "FullyReplicated",
        },
        "holdout": {
            "S3DataType": "S3Prefix",
            "S3Uri": f"{prefix}input/holdout/",
            "S3DataDistributionType": "FullyReplicated",
        },
    }
    assert found["OutputDataConfig"] == {"S3OutputPath": f"{prefix}output/"}
    assert found["AlgorithmSpecification"] == {"TrainingImage": IMAGE, "TrainingInputMode": "File"}
    assert found["RoleArn"] == ROLE
    assert found["ResourceConfig"] == {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 30,
    }
    assert found["StoppingCondition"] == {"MaxRuntimeInSeconds": 14_400}


def test_the_request_is_one_sagemakers_api_accepts() -> None:
    # Checked against botocore's model of CreateTrainingJob (offline), as Step Functions would send it
    shape = get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob").input_shape

    report = ParamValidator().validate(request(), shape)

    assert not report.has_errors(), report.generate_report()


def test_the_hyperparameters_are_strings_that_read_back_as_the_same_settings() -> None:
    settings = config(
        estimator="random_forest",
        params={"n_estimators": 50, "max_depth": 4},
        scale=None,
        holdout_fraction=0.2,
        seed=7,
        metric="f1",
        thresholds={"accuracy": 0.9},
        release="challenger",
        backend="auto",
        sagemaker_min_rows=1000,
    )

    encoded = job.hyperparameters(settings, "classification")

    assert all(isinstance(k, str) and isinstance(v, str) for k, v in encoded.items())
    assert encoded["estimator"] == '"random_forest"' and encoded["task"] == '"classification"'
    assert job.parse_hyperparameters(encoded) == (settings, "classification")
    assert "task" not in TrainingConfig.model_fields  # the one extra key cannot clash with a setting


def test_a_hyperparameter_typed_by_hand_reads_as_meant() -> None:
    encoded = {**job.hyperparameters(config(), "regression"), "estimator": "ridge", "seed": "3"}

    settings, task = job.parse_hyperparameters(encoded)

    assert settings.estimator == "ridge" and settings.seed == 3 and task == "regression"


def test_an_unknown_or_bad_hyperparameter_is_refused() -> None:
    base = job.hyperparameters(config(), "classification")

    with pytest.raises(ValidationError, match="no_such_setting"):
        job.parse_hyperparameters({**base, "no_such_setting": "1"})
    with pytest.raises(ValidationError, match="estimator"):
        job.parse_hyperparameters({**base, "estimator": '"xgboost"'})
    with pytest.raises(ValueError, match="task"):
        job.parse_hyperparameters({k: v for k, v in base.items() if k != "task"})


def test_settings_too_long_for_a_hyperparameter_fail_before_the_job_starts() -> None:
    with pytest.raises(ValueError, match=r"params is .* at most 2500"):
        job.hyperparameters(
            config(params={"class_weight": {str(i): 1.0 for i in range(400)}}), "classification"
        )


# ---------------------------------------------------------------------------------------------
# The job's output as CollectModel reads it
# ---------------------------------------------------------------------------------------------


def archive(files: dict[str, bytes], prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{prefix}{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("prefix", ["", "./"])
def test_the_models_files_are_read_from_model_tar_gz(prefix: str) -> None:
    files = {"model.onnx": b"onnx", "holdout_outputs.npy": b"npy", "metadata.json": b"{}", "other.txt": b"x"}

    found = sagemaker.model_files(archive(files, prefix))

    assert found == {"model.onnx": b"onnx", "holdout_outputs.npy": b"npy", "metadata.json": b"{}"}


def test_a_model_tar_gz_without_the_model_is_rejected() -> None:
    with pytest.raises(sagemaker.CandidateRejected, match=r"model\.onnx"):
        sagemaker.model_files(archive({"metadata.json": b"{}", "holdout_outputs.npy": b""}))
