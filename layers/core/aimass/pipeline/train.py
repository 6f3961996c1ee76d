"""The light trainer: a scikit-learn estimator fitted on the training split, exported to ONNX and
checked to answer as the estimator does on the held-out rows before anything uses it. The
candidate is staged at `staging/pipeline/<model>/<run>/model.onnx`; only Register makes it a
version. Needs the `train` extra (the pipeline function's image has it)."""

from __future__ import annotations

import json
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
    # Fitted on the float32 values ONNX Runtime will see, so that a tree's thresholds fall between
    # the same neighbours for both.
    x_train, x_holdout = x_train.astype(np.float32), x_holdout.astype(np.float32)
    fitted = estimator(config, classification)
    fitted.fit(x_train, y_train)
    onnx_model = sklearn_to_onnx(fitted, x_train.shape[1])
    # Differences of float32 against float64 arithmetic; a wrong export is off by far more.
    gap = check_parity(fitted, onnx_model, x_holdout, tolerance=1e-4)
    uri = artifacts.put(bucket, candidate_key(model, run), onnx_model)
    return {
        "backend": "lambda",
        "estimator": config.estimator,
        # Every parameter the estimator ran with, defaults included (what the lineage records)
        "params": json.loads(json.dumps(fitted.steps[-1][1].get_params(), default=str)),
        "train_rows": len(x_train),
        "parity_gap": gap,
        "candidate": {"uri": uri, "sha256": artifacts.sha256(onnx_model), "size_bytes": len(onnx_model)},
    }
