"""The registry's records: a version (its signature, artifact, backend, baseline), a model's summary,
aliases and the audit trail."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from aimass.contracts.common import Contract, utcnow
from aimass.contracts.graph import Graph
from aimass.contracts.quality import QualityPolicy

# Where a version runs: `lambda` (ONNX Runtime inside the function), or a SageMaker real-time
# endpoint, `sagemaker:<endpoint>`, plus `/<target model>` on a multi-model endpoint, or `graph`: its
# members, each where it runs (aimass.graph).
ENDPOINT_NAME_PATTERN = r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
BACKEND_PATTERN = rf"^(lambda|graph|sagemaker:{ENDPOINT_NAME_PATTERN}(/[A-Za-z0-9][A-Za-z0-9._-]{{0,127}})?)$"
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


class TensorSpec(Contract):
    """One graph input or output as ONNX describes it; None marks a dynamic dimension."""

    name: str
    dtype: TensorType
    shape: list[int | None]


class Feature(Contract):
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
    pii: bool = Field(
        default=False,
        description="personal data: what aimass stores of requests and rows (capture, rejected rows, "
        "monitoring) never holds its raw values, only what the model's `pii` protection makes of them "
        "(docs/privacy.md); the model itself still sees them",
    )


class Signature(Contract):
    """What a model version takes and gives: read from the ONNX graph, optionally enriched."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # Columns of the single 2-D input, in order; instances may then be objects keyed by these names.
    features: list[Feature] | None = None
    task: Task = "other"
    class_labels: list[str] | None = None
    label_output: str | None = None
    probabilities_output: str | None = None
    # What the probabilities output gave when the classifier was probed at push time with one
    # synthetic row (aimass.signature.probe): a ZipMap's keys in the order ONNX Runtime answers them
    # (by key), integer classes written as text ("0", "1", ...), as V1 answers without class labels
    # key them; a probability tensor's column indexes "0".."n-1". None when it was not probed (not a
    # classifier, an input with dynamic dimensions, a model that failed on the row, a version
    # registered before probing). Rules are checked against them when there are no class_labels.
    output_classes: list[str] | None = Field(
        default=None,
        description="the classes the probabilities output gave for a probe row at push time: a ZipMap's "
        "keys in order (integer classes as text), or a probability tensor's column indexes; null when "
        "not probed",
    )


class SignatureEnrichment(Contract):
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
    pii: list[str] | None = Field(
        default=None,
        description="names of features that are personal data, as `pii: true` on each of them would say "
        "(for features given by name only, e.g. `aimass models push --features a,b --pii a`)",
    )
    class_labels: list[str] | None = None
    task: Task | None = None
    description: str | None = Field(default=None, max_length=2000)


class BaselineRef(Contract):
    """A version's baseline (`models/<name>/<version>/baseline/`), computed from a reference dataset:
    statistics.json and constraints.json in the SageMaker Model Monitor formats, anomaly.json, and
    background.json: a seeded sample of the reference's rows that `:explain` explains against (none
    for a version registered before it, or with a non-numeric feature)."""

    statistics_uri: str
    constraints_uri: str
    anomaly_uri: str | None = None
    background_uri: str | None = None
    sha256: dict[str, str] = Field(description="file name → sha256, checked before use")
    item_count: int
    source: str = Field(description="where the reference dataset came from")


class Backend(Contract):
    """A version's backend, read: `lambda`, `graph`, or a SageMaker endpoint and, on a multi-model
    endpoint, the target model."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["lambda", "sagemaker", "graph"]
    endpoint: str | None = None
    target_model: str | None = None

    @classmethod
    def parse(cls, backend: str) -> Backend:
        if backend == "lambda":
            return cls(kind="lambda")
        if backend == "graph":
            return cls(kind="graph")
        endpoint, _, target = backend.removeprefix("sagemaker:").partition("/")
        return cls(kind="sagemaker", endpoint=endpoint, target_model=target or None)


class ModelVersion(Contract):
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
    graph: Graph | None = Field(
        default=None,
        description="a graph version's graph (backend `graph`): its spec and each member's resolved "
        "version; its artifact is the graph as JSON (docs/composition.md)",
    )
    created_at: str = Field(default_factory=utcnow)
    created_by: str = "anonymous"

    @model_validator(mode="after")
    def _a_graph_runs_on_graph(self) -> ModelVersion:
        if (self.backend == "graph") != (self.graph is not None):
            raise ValueError("a version has a `graph` exactly when its backend is `graph`")
        return self

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


class CanarySplit(Contract):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="the canary version: registered, not archived, not the stable one")
    percent: float = Field(ge=0, le=100, description="the share of requests that name no version it serves")


class ShadowSplit(Contract):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="the shadow version: registered, not archived, not the stable one")
    percent: float = Field(
        ge=0,
        le=100,
        description="the share of the requests the stable version serves that also run on the shadow "
        "version, whose answers are captured and compared, never returned",
    )


STICKY_BY = r"^(header|feature:[A-Za-z0-9_.-]{1,64})$"


class TrafficPolicy(Contract):
    """How the requests that name no version (`:predict`, `/infer`, dropped files) are split between
    the stable version (`champion`, else the latest not archived) and a canary, and which share of
    the stable version's requests a shadow version also runs. `/versions/{v}` and `/labels/{alias}`
    always mean exactly that version."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"canary": {"version": 3, "percent": 10}, "sticky_by": "header"}]},
    )

    canary: CanarySplit | None = None
    shadow: ShadowSplit | None = None
    sticky_by: str | None = Field(
        default=None,
        pattern=STICKY_BY,
        description="`header`: the x-aimass-routing-key header, or `feature:<name>`: that feature of a V1 "
        "request's first instance, picks the version, the same key the same version while the percent "
        "holds; unset: a random draw per request",
    )
    version: int = Field(default=0, description="the policy's version in the registry (0: never set)")
    rollout: int | None = Field(
        default=None,
        description="set by the registry: the rollout this policy belongs to (the policy version that "
        "started it), under which every version's live figures are counted; null: a policy set by hand",
    )

    @property
    def live_key(self) -> int:
        """What live figures are counted under: the rollout, across its steps, else this policy."""
        return self.rollout if self.rollout is not None else self.version

    @property
    def under_way(self) -> bool:
        return self.canary is not None or self.shadow is not None


class Guards(Contract):
    """What a canary (or shadow) must keep to go on, judged against the stable version on the live
    figures counted since the rollout started, each once its minimum sample is reached."""

    model_config = ConfigDict(extra="forbid")

    max_error_rate_increase: float = Field(
        default=0.01, ge=0, le=1, description="the canary's error rate may exceed the stable's by this much"
    )
    max_p99_ratio: float = Field(
        default=2.0, ge=1, description="the canary's p99 latency may be at most this multiple of the stable's"
    )
    min_requests: int = Field(
        default=100,
        ge=1,
        description="requests each version must have served before errors and latency are judged",
    )
    min_agreement: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="the share of shadowed instances whose answer must agree with the stable",
    )
    min_compared: int = Field(
        default=100, ge=1, description="shadowed instances compared before agreement is judged"
    )
    accuracy_confidence: float = Field(
        default=0.95,
        gt=0.5,
        lt=1,
        description="the confidence of the one-sided test that finds the canary's live accuracy below the "
        "stable's",
    )
    min_labelled: int = Field(
        default=50, ge=1, description="labelled predictions each version needs before accuracy is judged"
    )


class RolloutStart(Contract):
    """A rollout to start: the version to bring in, as a canary with its share (and steps on a
    schedule), as a shadow first, or both, and the guards that roll it back."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    canary: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="percent of the requests naming no version; default the first step, else 10 (0 with a "
        "shadow: a shadow phase first)",
    )
    shadow: float = Field(
        default=0,
        ge=0,
        le=100,
        description="percent of the stable version's requests also run on this version",
    )
    sticky_by: str | None = Field(default=None, pattern=STICKY_BY)
    steps: list[float] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="canary percents, rising, the last 100: the rollout moves to the next one every "
        "interval while the guards hold, and is promoted after the last; unset: no automatic steps",
    )
    interval_s: float = Field(default=600, ge=1, le=7 * 86400, description="seconds between steps")
    guards: Guards = Field(default_factory=Guards)


class RolloutPlan(Contract):
    """A rollout under way as the registry keeps it beside the traffic policy."""

    id: int = Field(description="the traffic policy version that started it")
    version: int = Field(description="the version rolled out")
    steps: list[float] = Field(default_factory=list, description="canary percents; empty: no automatic steps")
    step: int = Field(default=0, description="index into steps; -1: the shadow phase before them")
    interval_s: float = 600
    step_started_at: str = Field(default_factory=utcnow)
    started_at: str = Field(default_factory=utcnow)
    started_by: str = ""
    guards: Guards = Field(default_factory=Guards)


class LiveFigures(Contract):
    """One version's live traffic under the current rollout, as every container counted it
    (aimass.serving.live): rates per request or per instance, null without any."""

    requests: int
    errors: int
    error_rate: float | None = Field(description="answers that failed (5xx) per request")
    rule_rejection_rate: float | None = Field(description="requests a `reject` rule refused, per request")
    fallback_rate: float | None = Field(description="requests the `fallback` alias answered instead")
    instances: int
    anomaly_rate: float | None
    quality_flag_rate: float | None
    latency_p50_ms: float | None = Field(description="the upper bound of the histogram bucket it falls in")
    latency_p99_ms: float | None
    classes: dict[str, float | None] = Field(description="a classifier's predicted classes, per instance")
    compared: int = Field(
        default=0, description="shadow: instances whose answer was compared with the stable's"
    )
    agreement: float | None = Field(
        default=None,
        description="shadow: the share of compared instances that agreed with the stable's answer",
    )
    skipped: int = Field(
        default=0,
        description="shadow: requests sampled for the shadow but not run, its queue being full",
    )
    labelled: int = Field(default=0, description="predictions given a label by feedback during the rollout")
    accuracy: float | None = Field(
        default=None, description="classifiers: correct labelled predictions' share"
    )
    mae: float | None = Field(
        default=None, description="regressors: mean absolute error of labelled predictions"
    )
    abs_error_sd: float | None = Field(
        default=None,
        description="regressors: the standard deviation of labelled predictions' absolute errors (the "
        "accuracy guard's Welch test reads it)",
    )


GuardName = Literal["error_rate", "latency_p99", "agreement", "accuracy"]


class GuardResult(Contract):
    guard: GuardName
    status: Literal["passed", "tripped", "waiting"] = Field(
        description="`waiting`: too few samples yet to judge"
    )
    detail: str = Field(description="the figures and the threshold, in words")
    figures: dict[str, float | int | None] = Field(default_factory=dict)


class RolloutOutcome(Contract):
    """How the model's last rollout ended."""

    id: int
    version: int
    state: Literal["promoted", "rolled_back", "aborted"]
    at: str = Field(default_factory=utcnow)
    actor: str
    reason: str | None = None
    guard: GuardResult | None = Field(default=None, description="rolled_back: the guard that tripped")
    live: dict[str, LiveFigures] | None = Field(default=None, description="the figures when it ended")


class Rollout(Contract):
    """Where a model's rollout stands: `shadow` or `canary` while one is under way, else how the last
    one ended (`promoted`, `rolled_back`, `aborted`), or `none`."""

    name: str
    state: Literal["none", "shadow", "canary", "promoted", "rolled_back", "aborted"]
    stable: int | None = Field(description="the version requests naming none get outside the canary's share")
    canary: CanarySplit | None = None
    shadow: ShadowSplit | None = None
    sticky_by: str | None = None
    policy_version: int
    plan: RolloutPlan | None = Field(
        default=None, description="the rollout under way, as the registry keeps it"
    )
    next_step_at: str | None = Field(
        default=None, description="when the next step is due, if the guards hold"
    )
    judgement: list[GuardResult] = Field(default_factory=list, description="each guard, as last judged")
    live: dict[str, LiveFigures] | None = Field(
        default=None,
        description="while a rollout is under way: `stable`, `canary` and `shadow`, each version's live "
        "figures",
    )
    outcome: RolloutOutcome | None = Field(default=None, description="how the last rollout ended")


ReleaseMode = Literal["direct", "canary", "shadow-then-canary"]


class ReleasePolicy(Contract):
    """How a release of a model's version (the pipeline's promoted candidate, or one asked for through
    the API) reaches its traffic (aimass.release): `direct` moves `champion` at once, `canary` starts
    a rollout of it with these settings, `shadow-then-canary` starts one in a shadow phase first; with
    `approval`, the version first waits as `pending_approval` until an admin approves or rejects it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"mode": "canary", "canary": 10, "steps": [10, 50, 100], "interval_s": 600}]
        },
    )

    mode: ReleaseMode = "canary"
    approval: bool = Field(default=False, description="a version waits for an admin's approval first")
    canary: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="the rollout's first canary percent: default the first step, else 10",
    )
    shadow: float = Field(
        default=10,
        ge=0,
        le=100,
        description="`shadow-then-canary`: percent of the stable version's requests also run on the version "
        "in the shadow phase (more than 0); the other modes start no shadow",
    )
    sticky_by: str | None = Field(default=None, pattern=STICKY_BY)
    steps: list[float] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="the rollout's canary percents, rising, the last 100; unset: no automatic steps",
    )
    interval_s: float = Field(default=600, ge=1, le=7 * 86400, description="seconds between steps")
    guards: Guards = Field(default_factory=Guards)
    version: int = Field(default=0, description="the release policy's version in the registry (0: never set)")

    @field_validator("steps")
    @classmethod
    def _steps_rise_to_100(cls, steps: list[float] | None) -> list[float] | None:
        if steps is None:
            return None
        if any(not 0 < step <= 100 for step in steps):
            raise ValueError("each step is a percent above 0 and at most 100")
        if any(b <= a for a, b in pairwise(steps)):
            raise ValueError("steps must rise")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100")
        return steps

    @field_validator("shadow")
    @classmethod
    def _shadow_phase_needs_a_shadow(cls, shadow: float, info: ValidationInfo) -> float:
        if info.data.get("mode") == "shadow-then-canary" and not shadow:
            raise ValueError("shadow-then-canary needs a shadow percent above 0")
        return shadow


ReleaseState = Literal["pending_approval", "scheduled", "released", "rejected", "failed"]


class ReleaseRollout(Contract):
    """The rollout a release started, as it stood then."""

    state: str = Field(
        description="the rollout's state when the release started it (`aimass rollout status`)"
    )
    policy_version: int = Field(description="the traffic policy version it set")


class Release(Contract):
    """A release of one version, as the registry keeps it (`MODEL#<name> / RELEASE#<version>`): waiting
    for approval, scheduled for a time, released, rejected, or failed to start."""

    name: str
    version: int
    state: ReleaseState
    mode: ReleaseMode = Field(description="the release policy's mode when it was asked for or started")
    origin: dict[str, Any] = Field(
        default_factory=dict,
        description="where it came from: `pipeline` (with `run` and the evaluation `report`) or `api`",
    )
    requested_at: str = Field(default_factory=utcnow)
    requested_by: str = ""
    at: str | None = Field(default=None, description="scheduled: when it starts (UTC)")
    decided_by: str | None = Field(default=None, description="who approved or rejected it")
    decided_at: str | None = None
    note: str | None = Field(default=None, description="what the approver or rejecter said")
    started_at: str | None = None
    rollout: ReleaseRollout | None = Field(default=None, description="released: the rollout it started")
    alias: str | None = Field(default=None, description="released directly: the alias it moved")
    reason: str | None = Field(default=None, description="failed: why it could not start; or why direct")

    @property
    def pending_approval(self) -> bool:
        return self.state == "pending_approval"


class ReleaseRequest(Contract):
    """Release a version through the model's release policy, now or at a time."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"at": "2026-12-24T06:00:00Z"}]}
    )

    at: datetime | None = Field(
        default=None, description="when to start it (ISO 8601; without a zone: UTC); unset or past: now"
    )


class ReleaseApproval(Contract):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"note": "report reviewed", "at": "2026-12-24T06:00:00Z"}]},
    )

    note: str | None = Field(default=None, max_length=2000)
    at: datetime | None = Field(
        default=None, description="start the release then (ISO 8601; without a zone: UTC); unset or past: now"
    )


class ReleaseRejection(Contract):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"note": "recall dropped"}]})

    note: str = Field(min_length=1, max_length=2000, description="why it is rejected (required)")


class ReleaseView(Contract):
    """A model's release policy and its releases, newest first."""

    name: str
    policy: ReleasePolicy
    releases: list[Release]


class ModelSummary(Contract):
    name: str
    latest_version: int
    aliases: dict[str, int] = Field(default_factory=dict)
    rules_version: int | None = None
    quality_policy: QualityPolicy = Field(default_factory=QualityPolicy)
    traffic: TrafficPolicy = Field(default_factory=TrafficPolicy)
    release_policy: ReleasePolicy = Field(default_factory=ReleasePolicy)
    archived_versions: list[int] = Field(
        default_factory=list,
        description="versions taken out of default serving: they take no alias, and `latest` skips them",
    )
    latest_active_version: int | None = Field(
        default=None,
        description="the latest version not archived, what serves when there is no champion; "
        "null when every version is archived",
    )
    rollout_plan: RolloutPlan | None = Field(
        default=None,
        description="the rollout under way, kept beside the traffic policy (written with it); it belongs "
        "to the policy while its id is the policy's `rollout`",
    )
    last_rollout: RolloutOutcome | None = Field(default=None, description="how the last rollout ended")
    updated_at: str

    @model_validator(mode="after")
    def _latest_active_defaults_to_latest(self) -> ModelSummary:
        if self.latest_active_version is None and self.latest_version not in self.archived_versions:
            self.latest_active_version = self.latest_version
        return self


class ModelDetail(ModelSummary):
    versions: list[ModelVersion]
    ready: bool = Field(
        description="the version `:predict` serves (champion, else the latest not archived) is "
        "registered and its model file is in S3"
    )


class ModelNames(Contract):
    """KServe V1's listing: the names of the models."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"models": ["breast-cancer", "digits"]}]})

    models: list[str]


class ModelList(Contract):
    """The listing with each model's latest version, aliases and last change (`?detail=true`)."""

    models: list[ModelSummary]


class AliasUpdate(Contract):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 2}]})

    version: int = Field(ge=1)


class Alias(Contract):
    name: str
    alias: str
    version: int
    previous_version: int | None = None
    updated_at: str


class AliasRemoved(Contract):
    """What removing an alias did: the version it pointed at."""

    name: str
    alias: str
    previous_version: int
    updated_at: str


class VersionUpdate(Contract):
    """A change to a version's standing; the version itself (its file, signature) never changes."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"archived": True}]})

    archived: bool = Field(
        description="true: the version takes no alias and `latest` skips it, but is still served when "
        "asked for by number; false: back in default serving"
    )


class VersionStanding(Contract):
    """A version's standing after a change, and the model's latest version not archived."""

    name: str
    version: int
    archived: bool
    latest_active_version: int | None
    updated_at: str


class AuditRecord(Contract):
    at: str = Field(default_factory=utcnow)
    actor: str = Field(
        description="who made the change, as authenticated (IAM principal, JWT subject, local key)"
    )
    note: str | None = Field(default=None, description="what the caller said of it (x-aimass-note header)")
    action: Literal[
        "register_version",
        "set_alias",
        "remove_alias",
        "archive_version",
        "unarchive_version",
        "set_rules",
        "set_quality_policy",
        "set_traffic_policy",
        "start_rollout",
        "promote_rollout",
        "abort_rollout",
        "set_release_policy",
        "request_approval",
        "approve_version",
        "reject_version",
        "schedule_release",
        "release_version",
        "release_failed",
        "rollout_step",
        "rollback_rollout",
        "set_card",
    ]
    model: str
    details: dict[str, Any] = Field(default_factory=dict)
