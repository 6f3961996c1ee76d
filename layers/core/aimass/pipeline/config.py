"""How a model is retrained: `datasets/<model>/training.json`, overridden per run by the run's
`parameters`. Every field has a default, so a model with data and no file retrains as documented."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Estimator = Literal[
    "logistic_regression",
    "random_forest",
    "gradient_boosting",
    "decision_tree",
    "mlp",
    "linear_regression",
    "ridge",
]
CLASSIFIERS = {"logistic_regression", "random_forest", "gradient_boosting", "decision_tree", "mlp"}
# Trees split on thresholds: scaling changes nothing for them, and ONNX's float32 scaling would move
# rows across a split that scikit-learn's float64 scaling kept on one side.
TREES = {"random_forest", "gradient_boosting", "decision_tree"}
REGRESSORS = {"linear_regression", "ridge", "random_forest", "gradient_boosting", "decision_tree", "mlp"}
# Metrics where lower is better; a threshold on one of them is a maximum, on the others a minimum.
LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}
CLASSIFICATION_METRICS = {"accuracy", "f1", "roc_auc", "log_loss"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}


class TrainingConfig(BaseModel):
    """A model's retraining settings (docs/pipeline.md has each one's meaning)."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field("label", description="the dataset column that holds the target")
    estimator: Estimator = "logistic_regression"
    params: dict[str, Any] = Field(default_factory=dict, description="the estimator's own parameters")
    scale: bool | None = Field(
        None, description="standardise the features first; by default for linear models and MLPs, not trees"
    )
    holdout_fraction: float = Field(0.25, gt=0, lt=1)
    seed: int = 0
    metric: str | None = Field(None, description="what the gate compares; default roc_auc or rmse")
    margin: float = Field(0.0, ge=0, description="how much the candidate must beat the champion by")
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="minimums (maximums for log_loss, rmse, mae) the candidate must pass",
    )
    release: Literal["champion", "challenger"] = "champion"
    min_rows: int = Field(50, ge=10)
    max_missing_fraction: float = Field(0.05, ge=0, le=1, description="per feature, in the snapshot")
    max_drifted_fraction: float = Field(
        0.5, ge=0, le=1, description="of the features, against the serving version's baseline"
    )
    backend: Literal["auto", "lambda", "sagemaker"] = Field(
        "auto",
        description="where the model is trained: `auto` picks SageMaker from sagemaker_min_rows rows on "
        "(when the stack has a training image), Lambda below",
    )
    sagemaker_min_rows: int = Field(
        100_000, ge=1, description="with backend auto, snapshots this large (rows) train on SageMaker"
    )

    @model_validator(mode="after")
    def _known_metrics(self) -> TrainingConfig:
        known = CLASSIFICATION_METRICS | REGRESSION_METRICS
        unknown = sorted({*([self.metric] if self.metric else []), *self.thresholds} - known)
        if unknown:
            raise ValueError(f"unknown metrics {unknown}: expected some of {sorted(known)}")
        return self

    def metric_for(self, task: str) -> str:
        return self.metric or ("roc_auc" if task == "classification" else "rmse")


def merged(stored: dict[str, Any] | None, overrides: dict[str, Any] | None) -> TrainingConfig:
    """The stored settings with a run's overrides on top (shallow: a given `params` replaces)."""
    return TrainingConfig.model_validate({**(stored or {}), **(overrides or {})})
