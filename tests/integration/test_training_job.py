"""The SageMaker training job (aimass.pipeline.job) run in a temporary /opt/ml layout as SageMaker runs
it: the model it writes, the same model as the Lambda trainer's, a bad hyperparameter's failure file,
and the image's entry point in a process of its own. It trains models, so it is not a unit test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes

from aimass.pipeline import job, train
from aimass.pipeline.config import TrainingConfig
from aimass.pipeline.data import Rows, split
from aimass.pipeline.evaluate import predictions
from aimass.serving.backends.onnx import new_session

REPO = Path(__file__).resolve().parents[2]


def config(**fields: Any) -> TrainingConfig:
    return TrainingConfig.model_validate(fields)


def breast_cancer_split(settings: TrainingConfig) -> tuple[list[str], tuple[np.ndarray, ...]]:
    data = load_breast_cancer()
    rows = Rows(data.data, data.target.astype(np.int64), 0)
    return [str(name).replace(" ", "_") for name in data.feature_names], split(rows, settings, True)


def opt_ml(
    root: Path, settings: TrainingConfig, task: str, features: list[str], parts: tuple[np.ndarray, ...]
) -> Path:
    """The layout SageMaker gives a training container: hyperparameters and the two channels."""
    x_train, x_holdout, y_train, y_holdout = parts
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps(job.hyperparameters(settings, task))
    )
    for channel, x, y in (("train", x_train, y_train), ("holdout", x_holdout, y_holdout)):
        folder = root / "input" / "data" / channel
        folder.mkdir(parents=True)
        (folder / f"{channel}.csv").write_bytes(job.channel_csv(features, settings.label, x, y))
    return root


def test_the_job_writes_an_onnx_model_that_answers_as_its_estimator(tmp_path: Path) -> None:
    settings = config(estimator="random_forest", params={"n_estimators": 20})
    features, parts = breast_cancer_split(settings)
    root = opt_ml(tmp_path / "opt-ml", settings, "classification", features, parts)

    assert job.run_job(root) == 0

    model = root / "model"
    assert sorted(p.name for p in model.iterdir()) == ["holdout_outputs.npy", "metadata.json", "model.onnx"]
    found = json.loads((model / "metadata.json").read_text())
    assert found["estimator"] == "random_forest" and found["params"]["n_estimators"] == 20
    assert found["train_rows"] == len(parts[0]) and found["holdout_rows"] == len(parts[1])
    assert found["features"] == features and found["parity_gap"] <= train.PARITY_TOLERANCE
    # The ONNX model answers the held-out rows as the estimator did (what CollectModel checks again)
    answered = predictions(new_session((model / "model.onnx").read_bytes()), parts[1], True)
    expected = np.load(model / "holdout_outputs.npy", allow_pickle=False)
    assert np.max(np.abs(answered - expected)) <= train.PARITY_TOLERANCE
    assert not (root / "output" / "failure").exists()


def test_the_job_trains_the_same_model_as_the_lambda_trainer(tmp_path: Path) -> None:
    settings = config()  # logistic regression, scaled
    features, parts = breast_cancer_split(settings)
    root = opt_ml(tmp_path / "opt-ml", settings, "classification", features, parts)

    assert job.run_job(root) == 0
    lambda_model = train.fit(settings, parts[0], parts[2], parts[1], True)

    on_sagemaker = predictions(new_session((root / "model" / "model.onnx").read_bytes()), parts[1], True)
    on_lambda = predictions(new_session(lambda_model.onnx), parts[1], True)
    assert np.array_equal(on_sagemaker, on_lambda)
    assert json.loads((root / "model" / "metadata.json").read_text())["params"] == lambda_model.params


def test_the_job_trains_regression_models_too(tmp_path: Path) -> None:
    settings = config(estimator="ridge", metric="rmse")
    data = load_diabetes()
    parts = split(Rows(data.data, data.target, 0), settings, False)
    root = opt_ml(tmp_path / "opt-ml", settings, "regression", list(data.feature_names), parts)

    assert job.run_job(root) == 0

    answered = predictions(new_session((root / "model" / "model.onnx").read_bytes()), parts[1], False)
    expected = np.load(root / "model" / "holdout_outputs.npy", allow_pickle=False)
    assert answered.shape == expected.shape == (len(parts[1]),)
    assert np.max(np.abs(answered - expected)) <= train.PARITY_TOLERANCE


def test_a_bad_hyperparameter_fails_the_job_with_its_reason_in_output_failure(tmp_path: Path) -> None:
    settings = config(params={"no_such_parameter": 1})
    features, parts = breast_cancer_split(settings)
    root = opt_ml(tmp_path / "opt-ml", settings, "classification", features, parts)

    assert job.run_job(root) == 1

    failure = (root / "output" / "failure").read_text()
    assert "no_such_parameter" in failure and len(failure) <= 1024
    assert not (root / "model" / "model.onnx").exists()


def test_the_image_entry_point_runs_train_under_the_given_root(tmp_path: Path) -> None:
    # What `docker run IMAGE train` runs (the training Dockerfile's ENTRYPOINT), on a temporary root
    settings = config(estimator="decision_tree", params={"max_depth": 2})
    features, parts = breast_cancer_split(settings)
    good = opt_ml(tmp_path / "good", settings, "classification", features, parts)
    bad = opt_ml(tmp_path / "bad", config(estimator="decision_tree"), "regression", features, parts)
    (bad / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"estimator": '"nope"'}))
    command = [sys.executable, "-m", "aimass.pipeline.job", "train", "--root"]

    succeeded = subprocess.run(
        [*command, str(good)], capture_output=True, text=True, timeout=120, check=False
    )
    failed = subprocess.run([*command, str(bad)], capture_output=True, text=True, timeout=120, check=False)

    assert succeeded.returncode == 0, succeeded.stderr
    assert (good / "model" / "model.onnx").is_file()
    assert failed.returncode == 1 and "task" in (bad / "output" / "failure").read_text()
    dockerfile = (REPO / "functions" / "pipeline" / "training.Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "aimass.pipeline.job"]' in dockerfile
