"""Pipeline runs as users see them: start one, read where it is from its Step Functions history, list
a model's runs.

A run's id is its execution's name. The registry records each run when it starts (the API when it
starts one, Ingest for every run, so scheduled and drift-started runs are listed too); Step Functions
stays the one source of a run's status, states and result.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from pydantic import ValidationError

from aimass import artifacts
from aimass.contracts.common import iso_utc
from aimass.contracts.registry import Release
from aimass.errors import AimassError, Conflict, ValidationFailed, field_error
from aimass.gateways import stepfunctions
from aimass.gateways.s3 import Bucket
from aimass.gateways.stepfunctions import Execution
from aimass.pipeline import notices
from aimass.pipeline.config import TrainingConfig, merged
from aimass.registry import Registry, RunRecord

# Step Functions' own words for a stopped execution that did not succeed.
FAILED_STATUSES = {"FAILED", "TIMED_OUT", "ABORTED"}
REPORT_LINK_SECONDS = 3600


# What the pipeline's routes answer, with the fields of their contracts (aimass.contracts.pipeline;
# tests/unit/test_typed_results.py keeps them in step).
class RunStarted(TypedDict):
    run_id: str
    model: str
    execution_arn: str
    started_at: str


class StatePassed(TypedDict):
    name: str
    entered_at: str | None
    exited_at: str | None
    failed: bool


class RunSummary(TypedDict):
    run_id: str
    model: str
    status: str
    execution_status: str
    started_at: str
    stopped_at: str | None
    trigger: str
    decision: str | None


class RunError(TypedDict):
    code: str
    message: str
    step: str | None
    problems: list[dict[str, Any]]
    more: int


class RunRelease(TypedDict):
    mode: str
    version: int
    state: str
    pending_approval: bool
    rollout: dict[str, Any] | None
    follow: str


class RunDetail(RunSummary):
    execution_arn: str
    states: list[StatePassed]
    current_state: str | None
    metric: str | None
    reason: str | None
    candidate: dict[str, float] | None
    champion: dict[str, float] | None
    champion_version: int | None
    version: int | None
    alias: str | None
    release: RunRelease | None
    dataset: dict[str, Any] | None
    backend: str | None
    training_job: str | None
    report: dict[str, str] | None
    error: RunError | None


class PipelineUnavailable(AimassError):
    status = 503
    code = "pipeline_unavailable"


class RunInProgress(Conflict):
    code = "run_in_progress"


class TooSoon(AimassError):
    status = 429
    code = "too_many_runs"


@dataclass(frozen=True)
class RunLimits:
    """How often a model's runs may be started through the API (Settings.pipeline_*)."""

    one_at_a_time: bool = True
    min_interval_s: float = 30.0


def new_run_id(model: str, now: datetime | None = None) -> str:
    """An execution name (1-80 of letters, digits, `-`, `_`) that names the model and sorts by time."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', model)[:50]}-{stamp}-{uuid.uuid4().hex[:8]}"


def training_settings(
    stored: dict[str, Any] | None, overrides: dict[str, Any] | None, loc: tuple[str, ...] = ("parameters",)
) -> TrainingConfig:
    """The settings a run will train with, or a 422 naming each bad override (under `loc`)."""
    try:
        return merged(stored, overrides)
    except ValidationError as error:
        raise ValidationFailed(
            "invalid training settings",
            [
                field_error([*loc, *map(str, e["loc"])], e["msg"], e["type"])
                for e in error.errors(include_url=False)
            ],
        ) from None


def _iso(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return iso_utc(value)


def run_record(run_id: str, execution_arn: str, started_at: str, run_input: dict[str, Any]) -> RunRecord:
    return {
        "run_id": run_id,
        "execution_arn": execution_arn,
        "started_at": started_at,
        "trigger": str(run_input.get("trigger") or "manual"),
    }


def _check_limits(model: str, last: RunRecord | None, limits: RunLimits, now: datetime) -> None:
    """Refuse a start too soon after the model's last one (429) or while that one runs (409)."""
    if last is None:
        return
    since = (now - datetime.fromisoformat(last["started_at"])).total_seconds()
    if since < limits.min_interval_s:
        wait = max(1, math.ceil(limits.min_interval_s - since))
        raise TooSoon(
            f"a run of {model!r} was started {since:.0f} s ago ({last['run_id']}); runs of one model "
            f"start at most once every {limits.min_interval_s:g} s",
            [field_error(["path", "name"], f"retry in {wait} s", "too_many_runs")],
            headers={"Retry-After": str(wait)},
        )
    if limits.one_at_a_time and stepfunctions.status(last["execution_arn"]) == "RUNNING":
        raise RunInProgress(
            f"run {last['run_id']} of {model!r} is still running; one run of a model at a time",
            [field_error(["path", "name"], f"{last['run_id']} is running", "run_in_progress")],
        )


def start(
    registry: Registry,
    state_machine_arn: str | None,
    bucket: str,
    model: str,
    parameters: dict[str, Any] | None,
    actor: str,
    limits: RunLimits | None = None,
) -> RunStarted:
    """Start a run of the model's pipeline after checking the model, the run's settings (its stored
    training settings are in `bucket`) and the model's run limits."""
    from aimass.pipeline.data import stored_config

    registry.get_model(model)
    if not state_machine_arn:
        raise PipelineUnavailable("this deployment has no retraining pipeline configured")
    training_settings(stored_config(bucket, model), parameters, ("body", "parameters"))
    now = datetime.now(UTC)
    last = registry.last_started_run(model)
    _check_limits(model, last, limits or RunLimits(), now)
    run_id = new_run_id(model, now)
    run_input: dict[str, Any] = {"model": model, "trigger": "api", "requested_by": actor}
    if parameters:
        run_input["parameters"] = parameters
    arn = f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{run_id}"
    claimed = run_record(run_id, arn, _iso(now) or "", run_input)
    registry.claim_run_gate(model, claimed, last)
    try:
        started = stepfunctions.start(state_machine_arn, run_id, run_input)
    except BaseException:
        registry.release_run_gate(model, claimed, last)
        raise
    record = run_record(run_id, started.execution_arn, _iso(started.started_at) or "", run_input)
    registry.record_run(model, record)
    return {
        "model": model,
        "run_id": record["run_id"],
        "execution_arn": record["execution_arn"],
        "started_at": record["started_at"],
    }


def states_passed(events: list[dict[str, Any]]) -> tuple[list[StatePassed], dict[str, Any] | None]:
    """The states entered in order with their times, and the execution's state as the last one left it."""
    states: list[StatePassed] = []
    latest: dict[str, Any] | None = None
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        if entered:
            at = _iso(event["timestamp"])
            states.append({"name": entered["name"], "entered_at": at, "exited_at": None, "failed": False})
        elif exited:
            left = next(
                (s for s in reversed(states) if s["name"] == exited["name"] and s["exited_at"] is None), None
            )
            if left is not None:
                left["exited_at"] = _iso(event["timestamp"])
            if exited.get("output"):
                latest = json.loads(exited["output"])
                # A task's Catch puts its error at $.error: the first state to leave one is where it failed
                if left is not None and "error" in (latest or {}) and not any(s["failed"] for s in states):
                    left["failed"] = True
    return states, latest


def _status(execution_status: str) -> str:
    if execution_status in FAILED_STATUSES:
        return "FAILED"
    return "SUCCEEDED" if execution_status == "SUCCEEDED" else "RUNNING"


def _decision(execution_status: str, state: dict[str, Any] | None) -> str | None:
    if execution_status in FAILED_STATUSES:
        return "failed"
    decision = ((state or {}).get("outcome") or {}).get("decision")
    return str(decision) if decision else None


def run_summary(record: RunRecord, model: str, execution: Execution) -> RunSummary:
    """What a list of runs shows: describe_execution's answer, with the decision from its output."""
    state = json.loads(execution["output"]) if execution.get("output") else None
    return {
        "run_id": record["run_id"],
        "model": model,
        "status": _status(execution["status"]),
        "execution_status": execution["status"],
        "started_at": _iso(execution.get("startDate")) or record["started_at"],
        "stopped_at": _iso(execution.get("stopDate")),
        "trigger": record.get("trigger", "manual"),
        "decision": _decision(execution["status"], state),
    }


def _error(execution: Execution, state: dict[str, Any] | None, states: list[StatePassed]) -> RunError | None:
    if execution["status"] not in FAILED_STATUSES:
        return None
    outcome = (state or {}).get("outcome") or {}
    code = outcome.get("error") or execution.get("error") or execution["status"]
    cause = outcome.get("cause") or execution.get("cause")
    found = notices.failure(cause) if cause else notices.Failure(f"the execution {execution['status']}")
    step = next((s["name"] for s in states if s["failed"]), None)
    if step is None and states and execution["status"] != "FAILED":  # timed out or aborted in it
        step = states[-1]["name"]
    return {
        "code": str(code),
        "message": found.message,
        "step": step,
        "problems": found.problems,
        "more": found.more,
    }


def run_detail(
    record: RunRecord,
    model: str,
    execution: Execution,
    states: list[StatePassed],
    state: dict[str, Any] | None,
    link: Any = None,
) -> RunDetail:
    """The run as `GET .../pipeline/runs/{run_id}` shows it, from describe_execution, the states passed
    and the execution's state (its output once stopped, else the last state's output). `link` turns
    an S3 URI into a URL a person can open."""
    state = state or {}
    evaluation = state.get("evaluation") or {}
    snapshot = (state.get("ingest") or {}).get("snapshot") or {}
    report_uri = (evaluation.get("report") or {}).get("uri")
    running = _status(execution["status"]) == "RUNNING"
    return {
        **run_summary(record, model, execution),
        "execution_arn": record["execution_arn"],
        "states": states,
        "current_state": next((s["name"] for s in reversed(states) if s["exited_at"] is None), None)
        if running
        else None,
        "metric": evaluation.get("metric"),
        "reason": evaluation.get("reason"),
        "candidate": evaluation.get("candidate"),
        "champion": evaluation.get("champion"),
        "champion_version": evaluation.get("champion_version"),
        "version": (state.get("registered") or {}).get("version"),
        "alias": (state.get("released") or {}).get("alias"),
        "release": (state.get("released") or {}).get("release"),
        "dataset": {k: snapshot[k] for k in ("uri", "sha256", "rows") if k in snapshot} or None,
        "backend": (state.get("validation") or {}).get("backend"),
        "training_job": (state.get("training_job") or {}).get("TrainingJobName"),
        "report": {"uri": report_uri, "url": link(report_uri) if link else report_uri}
        if report_uri
        else None,
        "error": _error(execution, state, states),
    }


def release_link(release: Release) -> RunRelease:
    """What a run's status says of the release its Release step asked for, and how to follow it."""
    follow = (
        f"aimass release status {release.name}"
        if release.state in ("pending_approval", "scheduled", "rejected", "failed")
        else f"aimass rollout status {release.name}"
    )
    return {
        "mode": release.mode,
        "version": release.version,
        "state": release.state,
        "pending_approval": release.pending_approval,
        "rollout": release.rollout.model_dump() if release.rollout else None,
        "follow": follow,
    }


def _report_link(uri: str) -> str:
    bucket, key = artifacts.parse_uri(uri)
    return Bucket(bucket).download_link(key, REPORT_LINK_SECONDS)


def describe(registry: Registry, model: str, run_id: str) -> RunDetail:
    record = registry.get_run(model, run_id)
    execution = stepfunctions.describe(record["execution_arn"])
    states, latest = states_passed(stepfunctions.history(record["execution_arn"]))
    state = json.loads(execution["output"]) if execution.get("output") else latest
    detail = run_detail(record, model, execution, states, state, _report_link)
    if detail["release"] is not None:  # where it stands now: approved, rejected, started since
        now = registry.get_release(model, detail["release"]["version"])
        if now is not None:
            detail["release"] = release_link(now)
    return detail


def list_runs(registry: Registry, model: str, limit: int) -> list[RunSummary]:
    registry.get_model(model)
    return [
        run_summary(record, model, stepfunctions.describe(record["execution_arn"]))
        for record in registry.list_runs(model)[:limit]
    ]
