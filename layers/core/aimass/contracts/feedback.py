"""Ground truth: labels for captured predictions, and the live accuracy they add up to."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, FiniteFloat, Strict, StrictInt, StrictStr

from aimass.contracts.common import Contract, utcnow
from aimass.contracts.registry import Task

# <model>:<UTC yyyymmddHH>:<request uuid4 hex>:<instance index>; the capture object's key is derived
# from it (aimass.capture.PredictionId).
PREDICTION_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}:[0-9]{10}:[0-9a-f]{32}:[0-9]{1,6}$"
# DynamoDB writes each label in a transaction with its version's counters (aimass.registry).
MAX_FEEDBACK_LABELS = 100


class FeedbackLabel(Contract):
    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(pattern=PREDICTION_ID_PATTERN, description="from a prediction's response")
    label: StrictStr | StrictInt | Annotated[FiniteFloat, Strict()] = Field(
        description="the true class (its name, or its index) or, for a regression model, the true value"
    )


class FeedbackRequest(Contract):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "labels": [
                        {
                            "prediction_id": "breast-cancer:2026112312:3f2a9c0d6b8e4e0f9d1c2b3a4f5e6d7c:0",
                            "label": "benign",
                        }
                    ]
                }
            ]
        },
    )

    labels: list[FeedbackLabel] = Field(min_length=1, max_length=MAX_FEEDBACK_LABELS)


class VersionAccuracy(Contract):
    """A version's labelled predictions so far: accuracy for a classifier, MAE for a regressor."""

    version: int
    task: Task
    labelled: int
    correct: int | None = None
    accuracy: float | None = None
    mae: float | None = None


class LiveAccuracy(Contract):
    model: str
    versions: list[VersionAccuracy]


class FeedbackResponse(LiveAccuracy):
    accepted: int
    rejected: list[dict[str, Any]] = Field(
        default_factory=list, description="field-level details of the labels not recorded, as in errors"
    )
    files: list[str] = Field(default_factory=list, description="the training data files written")


class LabelRecord(Contract):
    """A recorded label (registry: FEEDBACK#<model> / LABEL#<prediction id>); a prediction has one."""

    prediction_id: str
    version: int
    label: str
    correct: bool | None = None
    abs_error: float | None = None
    file: str
    created_at: str = Field(default_factory=utcnow)
    created_by: str = "anonymous"
