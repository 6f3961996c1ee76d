"""Data quality: a model's policy, a request's findings, and the report of a batch against its baseline."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aimass.contracts.common import ModelRef

QualityAction = Literal["reject", "flag", "ignore"]


class QualityPolicy(BaseModel):
    """What a violated constraint (range, category, unknown feature) or an anomalous instance does:
    reject the request (422), flag the prediction, or nothing. Wrong types and missing required
    features are always rejected: the model cannot run on them."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"violations": "reject", "anomalies": "flag"}]}
    )

    violations: QualityAction = "flag"
    anomalies: QualityAction = "flag"


class Violation(BaseModel):
    """One instance's value that breaks a constraint of the signature or the baseline."""

    feature: str
    check: Literal["range", "category", "completeness", "unknown_feature"]
    message: str


class AnomalyScore(BaseModel):
    score: float
    threshold: float
    anomalous: bool


class QualityCheckRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"instances": [{"mean_radius": 17.99}]}]}
    )

    instances: list[Any] = Field(min_length=1)


class ConstraintViolation(BaseModel):
    """An item of SageMaker Model Monitor's constraint_violations.json."""

    feature_name: str
    constraint_check_type: str
    description: str


class FeatureDrift(BaseModel):
    """A feature's distribution in the batch against the baseline. Numeric: PSI over the baseline's
    deciles and two-sample KS; categorical: chi-square goodness of fit. The test's p-value adjusted
    by Holm's step-down over the model's features (aimass.quality.drift) is what is judged."""

    feature: str
    method: Literal["psi+ks", "chi_square"]
    psi: float | None = None
    ks_statistic: float | None = None
    ks_p_value: float | None = None
    chi_square: float | None = None
    chi_square_p_value: float | None = None
    p_value_adjusted: float | None = None
    drifted: bool


class AnomalySummary(BaseModel):
    count: int
    rate: float
    threshold: float


class QualityReport(BaseModel):
    model: ModelRef
    item_count: int
    completeness: dict[str, float]
    violations: list[ConstraintViolation]
    drift: list[FeatureDrift]
    anomalies: AnomalySummary | None
    thresholds: dict[str, float]
