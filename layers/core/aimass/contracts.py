"""Every payload that crosses a boundary: HTTP bodies, registry records, signatures.

The OpenAPI document is generated from these models, and the tests build requests from them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    Strict,
    StrictInt,
    StrictStr,
    model_validator,
)

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
# Where a version runs: `lambda` (ONNX Runtime inside the function), or a SageMaker real-time
# endpoint, `sagemaker:<endpoint>`, plus `/<target model>` on a multi-model endpoint.
ENDPOINT_NAME_PATTERN = r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
BACKEND_PATTERN = rf"^(lambda|sagemaker:{ENDPOINT_NAME_PATTERN}(/[A-Za-z0-9][A-Za-z0-9._-]{{0,127}})?)$"
# The alias whose version answers when a version's endpoint is throttled or down (docs/gpu.md).
FALLBACK_ALIAS = "fallback"

TensorType = Literal[
    "float32",
    "float64",
    "float16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
    "string",
]
FeatureType = Literal["float", "int", "bool", "string"]
Task = Literal["classification", "regression", "other"]


def iso_utc(at: datetime) -> str:
    """A time as every record and answer writes it: UTC, to the millisecond, with a Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> str:
    return iso_utc(datetime.now(UTC))


class TensorSpec(BaseModel):
    """One graph input or output as ONNX describes it; None marks a dynamic dimension."""

    name: str
    dtype: TensorType
    shape: list[int | None]


class Feature(BaseModel):
    """A named column of a tabular model's input, with what valid values look like."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "mean_radius", "dtype": "float", "min": 6.9, "max": 28.1}]}
    )

    name: str = Field(min_length=1, max_length=128)
    dtype: FeatureType = "float"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[str | int | float] | None = None
    description: str | None = None


class Signature(BaseModel):
    """What a model version takes and gives: read from the ONNX graph, optionally enriched."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # Columns of the single 2-D input, in order; instances may then be objects keyed by these names.
    features: list[Feature] | None = None
    task: Task = "other"
    class_labels: list[str] | None = None
    label_output: str | None = None
    probabilities_output: str | None = None


class SignatureEnrichment(BaseModel):
    """What an uploader may add to the graph's own signature."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"features": ["mean_radius", "mean_texture"], "class_labels": ["malignant", "benign"]}
            ]
        },
    )

    features: list[Feature | str] | None = None
    class_labels: list[str] | None = None
    task: Task | None = None
    description: str | None = Field(default=None, max_length=2000)


class BaselineRef(BaseModel):
    """A version's baseline (`models/<name>/<version>/baseline/`), computed from a reference dataset:
    statistics.json and constraints.json in the SageMaker Model Monitor formats, anomaly.json."""

    statistics_uri: str
    constraints_uri: str
    anomaly_uri: str | None = None
    sha256: dict[str, str] = Field(description="file name → sha256, checked before use")
    item_count: int
    source: str = Field(description="where the reference dataset came from")


class Backend(BaseModel):
    """A version's backend, read: `lambda`, or a SageMaker endpoint and, on a multi-model
    endpoint, the target model."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["lambda", "sagemaker"]
    endpoint: str | None = None
    target_model: str | None = None

    @classmethod
    def parse(cls, backend: str) -> Backend:
        if backend == "lambda":
            return cls(kind="lambda")
        endpoint, _, target = backend.removeprefix("sagemaker:").partition("/")
        return cls(kind="sagemaker", endpoint=endpoint, target_model=target or None)


class ModelVersion(BaseModel):
    """An immutable registered version of a model."""

    name: str
    version: int
    artifact_uri: str
    sha256: str
    size_bytes: int
    signature: Signature
    backend: str = Field(default="lambda", pattern=BACKEND_PATTERN)
    description: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    baseline: BaselineRef | None = None
    created_at: str = Field(default_factory=utcnow)
    created_by: str = "anonymous"

    @model_validator(mode="before")
    @classmethod
    def _lambda_was_onnxruntime(cls, data: Any) -> Any:
        # Versions registered before GPU endpoints existed say `onnxruntime` for the Lambda.
        if isinstance(data, dict) and data.get("backend") == "onnxruntime":
            return {**data, "backend": "lambda"}
        return data

    @property
    def runs_on(self) -> Backend:
        return Backend.parse(self.backend)


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


class ModelSummary(BaseModel):
    name: str
    latest_version: int
    aliases: dict[str, int] = Field(default_factory=dict)
    rules_version: int | None = None
    quality_policy: QualityPolicy = Field(default_factory=QualityPolicy)
    updated_at: str


class ModelDetail(ModelSummary):
    versions: list[ModelVersion]


class ModelList(BaseModel):
    models: list[ModelSummary]


class AliasUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 2}]})

    version: int = Field(ge=1)


class Alias(BaseModel):
    name: str
    alias: str
    version: int
    previous_version: int | None = None
    updated_at: str


class AuditRecord(BaseModel):
    at: str = Field(default_factory=utcnow)
    actor: str
    action: Literal["register_version", "set_alias", "set_rules", "set_quality_policy"]
    model: str
    details: dict[str, Any] = Field(default_factory=dict)


class ModelRef(BaseModel):
    name: str
    version: int
    backend: str


# --- Rules ---------------------------------------------------------------------------------------

RULE_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


class RuleAction(BaseModel):
    """Exactly one of: set output fields, add a flag with a reason, or reject the request."""

    model_config = ConfigDict(extra="forbid")

    set: dict[str, Any] | None = None
    flag: str | None = Field(default=None, min_length=1, max_length=500)
    reject: str | None = Field(default=None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _exactly_one(self) -> RuleAction:
        given = [k for k in ("set", "flag", "reject") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of set, flag, reject (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> Literal["set", "flag", "reject"]:
        return "set" if self.set is not None else "flag" if self.flag is not None else "reject"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID_PATTERN)
    description: str | None = Field(default=None, max_length=2000)
    stage: Literal["pre", "post"] = "post"
    when: str = Field(min_length=1, max_length=4000, description="a CEL expression that gives a bool")
    then: RuleAction


class Ruleset(BaseModel):
    """A model's business rules, in order; `first` stops each stage at its first match."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "hit_policy": "first",
                    "rules": [
                        {
                            "id": "large-tumour",
                            "stage": "pre",
                            "when": "input.mean_radius > 25.0",
                            "then": {"reject": "outside the population the model was trained on"},
                        },
                        {
                            "id": "refer-uncertain",
                            "stage": "post",
                            "when": "output.probabilities['malignant'] > 0.3 && output.label == 'benign'",
                            "then": {"set": {"decision": "refer"}},
                        },
                    ],
                }
            ]
        },
    )

    hit_policy: Literal["first", "all"] = "first"
    rules: list[Rule] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _unique_ids(self) -> Ruleset:
        ids = [r.id for r in self.rules]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"rule ids must be unique: {', '.join(duplicates)}")
        return self


class FiredRule(BaseModel):
    """A rule that matched an instance, and what it did."""

    id: str
    stage: Literal["pre", "post"]
    action: Literal["set", "flag", "reject"]
    set: dict[str, Any] | None = None
    flag: str | None = None
    reject: str | None = None


class RulesEvaluationRequest(BaseModel):
    """Which rules fire on these instances. Give the predictions you already have to skip the model;
    give a ruleset to try it before saving."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(min_length=1)
    predictions: list[Any] | None = None
    ruleset: Ruleset | None = None


class RuleEvaluation(BaseModel):
    rules: list[FiredRule]
    rejected: bool
    prediction: Any


class RulesEvaluationResponse(BaseModel):
    results: list[RuleEvaluation]
    rules_version: int | None
    model: ModelRef


class RulesetVersion(BaseModel):
    name: str
    version: int
    ruleset: Ruleset
    created_at: str = Field(default_factory=utcnow)
    created_by: str = "anonymous"


# --- Data quality --------------------------------------------------------------------------------


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
    deciles and two-sample KS; categorical: chi-square goodness of fit."""

    feature: str
    method: Literal["psi+ks", "chi_square"]
    psi: float | None = None
    ks_statistic: float | None = None
    ks_p_value: float | None = None
    chi_square: float | None = None
    chi_square_p_value: float | None = None
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


# --- Retraining pipeline runs ------------------------------------------------------------------

RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,80}$"
RunStatus = Literal["RUNNING", "SUCCEEDED", "FAILED"]


class PipelineRunRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{}, {"parameters": {"estimator": "random_forest", "margin": 0.01}}]},
    )

    parameters: dict[str, Any] | None = Field(
        None, description="this run's overrides of the model's training settings (docs/pipeline.md)"
    )


class PipelineRunStarted(BaseModel):
    run_id: str
    model: str
    execution_arn: str
    started_at: str


class PipelineState(BaseModel):
    name: str
    entered_at: str
    exited_at: str | None = Field(None, description="null while the run is in this state")


class PipelineRunSummary(BaseModel):
    run_id: str
    model: str
    status: RunStatus
    execution_status: str = Field(description="Step Functions' own status (TIMED_OUT and ABORTED are FAILED)")
    started_at: str
    stopped_at: str | None = None
    trigger: str = Field(description="api, schedule, drift, or manual (started outside aimass)")
    decision: Literal["promoted", "rejected", "failed"] | None = Field(None, description="null while running")


class PipelineRun(PipelineRunSummary):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "breast-cancer-20261123T101500Z-3f2a9c1d",
                    "model": "breast-cancer",
                    "status": "SUCCEEDED",
                    "execution_status": "SUCCEEDED",
                    "started_at": "2026-11-23T10:15:00.000000Z",
                    "stopped_at": "2026-11-23T10:15:09.000000Z",
                    "trigger": "api",
                    "decision": "promoted",
                    "states": [{"name": "Ingest", "entered_at": "...", "exited_at": "..."}],
                    "current_state": None,
                    "metric": "roc_auc",
                    "reason": "roc_auc 0.9981 beats the champion's 0.9969 by more than 0.0",
                    "candidate": {"accuracy": 0.979, "roc_auc": 0.998},
                    "champion": {"accuracy": 0.972, "roc_auc": 0.997},
                    "champion_version": 1,
                    "version": 2,
                    "alias": "champion",
                }
            ]
        }
    )

    execution_arn: str
    states: list[PipelineState] = Field(description="the states entered so far, in order")
    current_state: str | None = Field(None, description="the state the run is in now (null once stopped)")
    metric: str | None = Field(None, description="what the release gate compared")
    reason: str | None = Field(None, description="why the gate promoted or rejected the candidate")
    candidate: dict[str, float] | None = Field(None, description="the candidate's held-out metrics")
    champion: dict[str, float] | None = Field(None, description="the champion's, on the same rows")
    champion_version: int | None = None
    version: int | None = Field(None, description="the version registered by a promoting run")
    alias: str | None = Field(None, description="the alias that version was given")
    dataset: dict[str, Any] | None = Field(None, description="the snapshot: uri, sha256, rows")
    backend: Literal["lambda", "sagemaker"] | None = Field(None, description="where the candidate trains")
    training_job: str | None = Field(None, description="the SageMaker training job's name, on that branch")
    report: dict[str, str] | None = Field(None, description="the evaluation report: S3 uri and a link")
    error: dict[str, str] | None = Field(None, description="why a failed run failed: code and message")


class PipelineRunList(BaseModel):
    runs: list[PipelineRunSummary]


# --- Feedback: ground truth for captured predictions ---------------------------------------------

# <model>:<UTC yyyymmddHH>:<request uuid4 hex>:<instance index>; the capture object's key is derived
# from it (aimass.capture.PredictionId).
PREDICTION_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}:[0-9]{10}:[0-9a-f]{32}:[0-9]{1,6}$"
# DynamoDB writes each label in a transaction with its version's counters (aimass.registry).
MAX_FEEDBACK_LABELS = 100


class FeedbackLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(pattern=PREDICTION_ID_PATTERN, description="from a prediction's response")
    label: StrictStr | StrictInt | Annotated[FiniteFloat, Strict()] = Field(
        description="the true class (its name, or its index) or, for a regression model, the true value"
    )


class FeedbackRequest(BaseModel):
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


class VersionAccuracy(BaseModel):
    """A version's labelled predictions so far: accuracy for a classifier, MAE for a regressor."""

    version: int
    task: Task
    labelled: int
    correct: int | None = None
    accuracy: float | None = None
    mae: float | None = None


class LiveAccuracy(BaseModel):
    model: str
    versions: list[VersionAccuracy]


class FeedbackResponse(LiveAccuracy):
    accepted: int
    rejected: list[dict[str, Any]] = Field(
        default_factory=list, description="field-level details of the labels not recorded, as in errors"
    )
    files: list[str] = Field(default_factory=list, description="the training data files written")


class LabelRecord(BaseModel):
    """A recorded label (registry: FEEDBACK#<model> / LABEL#<prediction id>); a prediction has one."""

    prediction_id: str
    version: int
    label: str
    correct: bool | None = None
    abs_error: float | None = None
    file: str
    created_at: str = Field(default_factory=utcnow)
    created_by: str = "anonymous"


# --- V1 (TF-Serving / KServe V1 style) ---------------------------------------------------------


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"instances": [{"mean_radius": 17.99, "mean_texture": 10.38}]},
                {"instances": [[0.0, 1.5, 3.2]]},
            ]
        }
    )

    # Each instance is an object keyed by feature (or input) name, or a (nested) list. Their contents
    # are checked against the model's signature, with field-level details, by inference.tensors.
    instances: list[Any] = Field(min_length=1)


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "predictions": [
                        {"label": "benign", "probabilities": {"malignant": 0.02, "benign": 0.98}}
                    ],
                    "model": {"name": "breast-cancer", "version": 1, "backend": "lambda"},
                }
            ]
        }
    )

    predictions: list[Any]
    model: ModelRef
    prediction_ids: list[str] | None = Field(
        default=None,
        description="one per prediction, for POST /v1/models/{name}/feedback; absent when the request "
        "was not captured (capture off, or sampled out)",
    )
    fallback: Fallback | None = Field(
        default=None,
        description="present when the version asked for could not answer (its endpoint throttled or "
        "down) and the `fallback` alias's version answered instead (`model`)",
    )


class Fallback(BaseModel):
    from_: ModelRef = Field(alias="from", description="the version that could not answer")
    reason: str = Field(description="its error code: backend_throttled, backend_unavailable, backend_error")
    message: str


# --- Open Inference Protocol V2 ----------------------------------------------------------------

V2Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]


class InferTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: V2Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferOutputRequest(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [0.1, 0.2, 0.3]}]}
            ]
        }
    )

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[InferOutputRequest] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[InferTensor]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: V2Datatype
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2Ready(BaseModel):
    name: str
    ready: bool


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
