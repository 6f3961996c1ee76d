"""The light trainer: a scikit-learn estimator fitted on the training split, exported to ONNX and
checked to answer as the estimator does on the held-out rows before anything uses it. The
candidate is staged at `staging/pipeline/<model>/<run>/model.onnx`; only Register makes it a
version. Needs the `train` extra (the pipeline function's image has it).

`fit` is the one trainer: the Train step runs it in the pipeline function, and the SageMaker
training job (aimass.pipeline.job) runs it in its container on the same rows. Both branches end
with the candidate at the same key and a `training` result of the same shape (`result`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass import artifacts
from aimass.export import check_parity, sklearn_to_onnx
from aimass.pipeline.config import CLASSIFIERS, REGRESSORS, TREES, TrainingConfig

# Estimators that take a random_state: seeded, so that a run can be repeated.
_SEEDED = {"logistic_regression", "random_forest", "gradient_boosting", "decision_tree", "mlp", "ridge"}


def candidate_key(model: str, run: str) -> str:
    return f"staging/pipeline/{model}/{run}/model.onnx"


def estimator(config: TrainingConfig, classification: bool) -> Any:
    """The configured estimator (after a StandardScaler when `scale`), its parameters as given."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    allowed = CLASSIFIERS if classification else REGRESSORS
    if config.estimator not in allowed:
        raise ValueError(
            f"{config.estimator} does not fit a {'classification' if classification else 'regression'} "
            f"model: use one of {sorted(allowed)}"
        )
    params = dict(config.params)
    if config.estimator in _SEEDED:
        params.setdefault("random_state", config.seed)
    if config.estimator == "logistic_regression":
        params.setdefault("max_iter", 5000)
    kind = _classes(classification)[config.estimator]
    scale = config.scale if config.scale is not None else config.estimator not in TREES
    steps = [StandardScaler(), kind(**params)] if scale else [kind(**params)]
    return make_pipeline(*steps)


def _classes(classification: bool) -> dict[str, Any]:
    from sklearn import ensemble, linear_model, neural_network, tree

    if classification:
        return {
            "logistic_regression": linear_model.LogisticRegression,
            "random_forest": ensemble.RandomForestClassifier,
            "gradient_boosting": ensemble.GradientBoostingClassifier,
            "decision_tree": tree.DecisionTreeClassifier,
            "mlp": neural_network.MLPClassifier,
        }
    return {
        "linear_regression": linear_model.LinearRegression,
        "ridge": linear_model.Ridge,
        "random_forest": ensemble.RandomForestRegressor,
        "gradient_boosting": ensemble.GradientBoostingRegressor,
        "decision_tree": tree.DecisionTreeRegressor,
        "mlp": neural_network.MLPRegressor,
    }


@dataclass(frozen=True)
class Fitted:
    """A fitted estimator, its ONNX export, and how far apart the two answer on the held-out rows."""

    estimator: Any  # the scikit-learn pipeline (scaler and estimator)
    onnx: bytes
    parity_gap: float
    train_rows: int

    @property
    def params(self) -> dict[str, Any]:
        """Every parameter the estimator ran with, defaults included (what the lineage records)."""
        loaded: dict[str, Any] = json.loads(json.dumps(self.estimator.steps[-1][1].get_params(), default=str))
        return loaded


# Differences of float32 against float64 arithmetic; a wrong export is off by far more.
PARITY_TOLERANCE = 1e-4


def fit(
    config: TrainingConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_holdout: np.ndarray,
    classification: bool,
) -> Fitted:
    """Fit the configured estimator, export it to ONNX and check the export on the held-out rows."""
    # Fitted on the float32 values ONNX Runtime will see, so that a tree's thresholds fall between
    # the same neighbours for both.
    x_train, x_holdout = x_train.astype(np.float32), x_holdout.astype(np.float32)
    fitted = estimator(config, classification)
    fitted.fit(x_train, y_train)
    onnx_model = sklearn_to_onnx(fitted, x_train.shape[1])
    gap = check_parity(fitted, onnx_model, x_holdout, tolerance=PARITY_TOLERANCE)
    return Fitted(fitted, onnx_model, gap, len(x_train))


def expected_outputs(fitted: Fitted, x: np.ndarray, classification: bool) -> np.ndarray:
    """What the estimator answers for the rows: class probabilities, or predicted values. The ONNX
    model must answer the same (aimass.pipeline.evaluate.predictions) to PARITY_TOLERANCE."""
    rows = x.astype(np.float32)
    found = fitted.estimator.predict_proba(rows) if classification else fitted.estimator.predict(rows)
    return np.asarray(found, dtype=np.float64)


def result(
    backend: str,
    estimator_name: str,
    params: dict[str, Any],
    train_rows: int,
    parity_gap: float,
    candidate_uri: str,
    onnx_model: bytes,
    training_job: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `training` result, the same on both branches: what was trained, where the candidate is,
    and the SageMaker training job that trained it (None on Lambda)."""
    return {
        "backend": backend,
        "estimator": estimator_name,
        "params": params,
        "train_rows": train_rows,
        "parity_gap": parity_gap,
        "training_job": training_job,
        "candidate": {
            "uri": candidate_uri,
            "sha256": artifacts.sha256(onnx_model),
            "size_bytes": len(onnx_model),
        },
    }


def train(
    bucket: str,
    model: str,
    run: str,
    config: TrainingConfig,
    parts: tuple[np.ndarray, ...],
    classification: bool,
) -> dict[str, Any]:
    """Fit, export, check, stage; what was trained and where the candidate is."""
    x_train, x_holdout, y_train, _ = parts
    fitted = fit(config, x_train, y_train, x_holdout, classification)
    uri = artifacts.put(bucket, candidate_key(model, run), fitted.onnx)
    return result(
        "lambda", config.estimator, fitted.params, fitted.train_rows, fitted.parity_gap, uri, fitted.onnx
    )
