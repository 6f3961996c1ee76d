"""Data quality: a model's policy, a request's findings, and the report of a batch against its baseline."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from aimass.contracts.common import Contract, ModelRef

QualityAction = Literal["reject", "flag", "ignore"]
# What stored copies of a personal feature's values hold (aimass.privacy): `erase`, the text
# "[erased]"; `tokenise`, "tok:" and a keyed hash of the value (HMAC-SHA256 under the stack's key).
PiiProtection = Literal["erase", "tokenise"]


class QualityPolicy(Contract):
    """What a violated constraint (range, category, unknown feature) or an anomalous instance does:
    reject the request (422), flag the prediction, or nothing. Wrong types and missing required
    features are always rejected: the model cannot run on them. And how the values of personal
    features are kept out of what aimass stores (docs/privacy.md)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"violations": "reject", "anomalies": "flag"},
                {"violations": "flag", "anomalies": "flag", "pii": "tokenise", "pii_features": ["email"]},
            ]
        },
    )

    violations: QualityAction = "flag"
    anomalies: QualityAction = "flag"
    pii: PiiProtection = Field(
        default="erase",
        description="what captured requests, rejected batch rows and monitoring files hold of a personal "
        'feature\'s values: `erase`, the text "[erased]"; `tokenise`, "tok:" and a keyed hash of the '
        "value (the same value, the same token, under this stack's key)",
    )
    pii_features: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="features personal in every version of the model, beside those its versions' "
        "signatures mark `pii` (a registered version's signature never changes); each must be a "
        "feature of one of the model's versions",
    )


class Violation(Contract):
    """One instance's value that breaks a constraint of the signature or the baseline."""

    feature: str
    check: Literal["range", "category", "completeness", "unknown_feature"]
    message: str


class AnomalyScore(Contract):
    score: float
    threshold: float
    anomalous: bool


class QualityCheckRequest(Contract):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"instances": [{"mean_radius": 17.99}]}]}
    )

    instances: list[Any] = Field(min_length=1)


class ConstraintViolation(Contract):
    """An item of SageMaker Model Monitor's constraint_violations.json."""

    feature_name: str
    constraint_check_type: str
    description: str


class FeatureDrift(Contract):
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


class AnomalySummary(Contract):
    count: int
    rate: float
    threshold: float


class QualityReport(Contract):
    model: ModelRef
    item_count: int
    completeness: dict[str, float]
    violations: list[ConstraintViolation]
    drift: list[FeatureDrift]
    anomalies: AnomalySummary | None
    thresholds: dict[str, float]


class BaselineFiles(Contract):
    """A version's baseline as Model Monitor writes it: statistics.json (per feature: numeric
    statistics with a KLL sketch and histogram buckets, or string statistics with category counts) and
    constraints.json. aimass.quality.page draws its distributions against a batch's rows."""

    version: int
    statistics: dict[str, Any]
    constraints: dict[str, Any]
