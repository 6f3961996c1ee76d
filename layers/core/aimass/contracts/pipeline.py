"""Retraining runs: starting one, and a run as the API reports it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from aimass.contracts.common import Contract

RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,80}$"
RunStatus = Literal["RUNNING", "SUCCEEDED", "FAILED"]


class PipelineRunRequest(Contract):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{}, {"parameters": {"estimator": "random_forest", "margin": 0.01}}]},
    )

    parameters: dict[str, Any] | None = Field(
        default=None, description="this run's overrides of the model's training settings (docs/pipeline.md)"
    )


class PipelineRunStarted(Contract):
    run_id: str
    model: str
    execution_arn: str
    started_at: str


class PipelineState(Contract):
    name: str
    entered_at: str
    exited_at: str | None = Field(None, description="null while the run is in this state")
    failed: bool = Field(False, description="the run failed in this state (its error is the run's `error`)")


class DatasetProblem(Contract):
    file: str | None = Field(None, description="the data file's S3 key, where the problem is in one file")
    column: str | None = None
    row: int | None = Field(None, description="the first row it is seen in (1: the first after the header)")
    message: str
    type: str = Field(
        description="missing_column, too_few_rows, incomplete, type_error, unknown_label, drifted"
    )


class PipelineRunError(Contract):
    code: str = Field(description="the error's type (DatasetRejected, States.Timeout, ...) or status")
    message: str
    step: str | None = Field(None, description="the state the run failed in")
    problems: list[DatasetProblem] = Field(
        default_factory=list, description="why Validate rejected the training data, in order"
    )
    more: int = Field(0, description="how many more problems there were than are listed")


class PipelineRunSummary(Contract):
    run_id: str
    model: str
    status: RunStatus
    execution_status: str = Field(description="Step Functions' own status (TIMED_OUT and ABORTED are FAILED)")
    started_at: str
    stopped_at: str | None = None
    trigger: str = Field(description="api, schedule, drift, or manual (started outside aimass)")
    decision: Literal["promoted", "rejected", "failed"] | None = Field(None, description="null while running")


class PipelineRelease(Contract):
    mode: Literal["direct", "canary", "shadow-then-canary"]
    version: int
    state: Literal["pending_approval", "scheduled", "released", "rejected", "failed"]
    pending_approval: bool
    rollout: dict[str, Any] | None = Field(
        None, description="the rollout it started: its `state` then and its traffic `policy_version`"
    )
    follow: str = Field(description="the command that shows where it stands now")


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
    release: PipelineRelease | None = Field(
        None,
        description="a `champion` release: how the model's release policy released the version (a "
        "rollout, an approval first, or directly), where it stands, and the command to follow it",
    )
    dataset: dict[str, Any] | None = Field(None, description="the snapshot: uri, sha256, rows")
    backend: Literal["lambda", "sagemaker"] | None = Field(None, description="where the candidate trains")
    training_job: str | None = Field(None, description="the SageMaker training job's name, on that branch")
    report: dict[str, str] | None = Field(None, description="the evaluation report: S3 uri and a link")
    error: PipelineRunError | None = Field(None, description="why a failed run failed")


class PipelineRunList(Contract):
    runs: list[PipelineRunSummary]
