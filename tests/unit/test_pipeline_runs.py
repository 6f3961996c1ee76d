"""How a run is read from Step Functions' answers: its id, the states passed, and its status while
running, after a decision, and after a failure (aimass.pipeline.runs)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aimass.contracts.pipeline import RUN_ID_PATTERN
from aimass.pipeline import data, runs

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
RECORD = {"run_id": "r1", "execution_arn": "arn:aws:states:us-east-1:1:execution:p:r1", "started_at": "x"}


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def entered(name: str, t: int) -> dict[str, Any]:
    return {"type": "TaskStateEntered", "timestamp": at(t), "stateEnteredEventDetails": {"name": name}}


def exited(name: str, t: int, output: dict[str, Any]) -> dict[str, Any]:
    details = {"name": name, "output": json.dumps(output)}
    return {"type": "TaskStateExited", "timestamp": at(t), "stateExitedEventDetails": details}


def test_run_ids_are_execution_names_that_sort_by_time() -> None:
    first = runs.new_run_id("breast-cancer.v2", at(0))
    later = runs.new_run_id("breast-cancer.v2", at(61))
    assert re.match(RUN_ID_PATTERN, first) and first.startswith("breast-cancer-v2-20261123T100000Z-")
    assert first < later
    assert len(runs.new_run_id("m" * 63)) <= 80


def test_a_running_run_shows_the_states_passed_and_the_one_it_is_in() -> None:
    events = [
        {"type": "ExecutionStarted", "timestamp": at(0)},
        entered("Ingest", 0),
        exited(
            "Ingest", 2, {"model": "m", "ingest": {"snapshot": {"uri": "s3://b/k", "rows": 9, "sha256": "s"}}}
        ),
        entered("Validate", 2),
        exited("Validate", 3, {"model": "m", "validation": {}}),
        entered("Train", 3),
    ]
    states, state = runs.states_passed(events)
    assert [(s["name"], s["exited_at"] is not None) for s in states] == [
        ("Ingest", True),
        ("Validate", True),
        ("Train", False),
    ]
    assert state == {"model": "m", "validation": {}}

    execution = {"status": "RUNNING", "startDate": at(0)}
    states, _ = runs.states_passed(events[:3])
    run = runs.run_detail(
        RECORD, "m", execution, states, json.loads(events[2]["stateExitedEventDetails"]["output"])
    )
    assert (run["status"], run["decision"], run["error"]) == ("RUNNING", None, None)
    assert run["current_state"] is None  # Ingest was left; the next state is not entered yet
    assert run["dataset"] == {"uri": "s3://b/k", "rows": 9, "sha256": "s"}
    assert run["started_at"] == "2026-11-23T10:00:00.000Z" and run["trigger"] == "manual"

    states, _ = runs.states_passed(events)
    assert runs.run_detail(RECORD, "m", execution, states, None)["current_state"] == "Train"


def test_a_state_entered_twice_is_listed_twice() -> None:
    events = [entered("Poll", 0), exited("Poll", 1, {}), entered("Poll", 2), exited("Poll", 4, {})]
    states, _ = runs.states_passed(events)
    assert [(s["entered_at"], s["exited_at"]) for s in states] == [
        ("2026-11-23T10:00:00.000Z", "2026-11-23T10:00:01.000Z"),
        ("2026-11-23T10:00:02.000Z", "2026-11-23T10:00:04.000Z"),
    ]


def test_a_decided_run_carries_its_metrics_decision_and_report_link() -> None:
    state = {
        "model": "m",
        "trigger": "api",
        "evaluation": {
            "metric": "rmse",
            "reason": "rmse 1.0 beats 1.2",
            "candidate": {"rmse": 1.0},
            "champion": {"rmse": 1.2},
            "champion_version": 3,
            "report": {"uri": "s3://b/reports/m/pipeline/r1/index.html"},
        },
        "validation": {"backend": "sagemaker"},
        "training_job": {"TrainingJobName": "aimass-prod-m-r1-0a1b2c3d", "TrainingJobStatus": "Completed"},
        "registered": {"version": 4},
        "released": {"alias": "challenger"},
        "outcome": {"decision": "promoted"},
    }
    execution = {"status": "SUCCEEDED", "startDate": at(0), "stopDate": at(9), "output": json.dumps(state)}
    run = runs.run_detail(RECORD, "m", execution, [], state, link=lambda uri: "https://x/" + uri[5:])
    assert (run["status"], run["decision"], run["version"], run["alias"]) == (
        "SUCCEEDED",
        "promoted",
        4,
        "challenger",
    )
    assert run["candidate"] == {"rmse": 1.0} and run["champion_version"] == 3
    assert (run["backend"], run["training_job"]) == ("sagemaker", "aimass-prod-m-r1-0a1b2c3d")
    assert run["report"] == {
        "uri": "s3://b/reports/m/pipeline/r1/index.html",
        "url": "https://x/b/reports/m/pipeline/r1/index.html",
    }
    assert run["stopped_at"] == "2026-11-23T10:00:09.000Z"
    assert runs.run_summary(RECORD, "m", execution)["decision"] == "promoted"


def test_failed_timed_out_and_aborted_runs_are_failed_with_a_readable_error() -> None:
    cause = json.dumps({"errorMessage": "Train: unknown parameter nope", "errorType": "ValidationFailed"})
    state = {"outcome": {"decision": "failed", "error": "ValidationFailed", "cause": cause}}
    failed = {"status": "FAILED", "startDate": at(0), "error": "PipelineFailed", "cause": cause}
    events = [entered("Train", 0), exited("Train", 1, {"error": {"Error": "ValidationFailed"}})]
    states, _ = runs.states_passed(events)
    run = runs.run_detail(RECORD, "m", failed, states, state)
    assert (run["status"], run["decision"]) == ("FAILED", "failed")
    assert run["error"] == {
        "code": "ValidationFailed",
        "message": "Train: unknown parameter nope",
        "step": "Train",
        "problems": [],
        "more": 0,
    }

    for status in ("TIMED_OUT", "ABORTED"):
        run = runs.run_detail(RECORD, "m", {"status": status, "startDate": at(0)}, [], None)
        assert (run["status"], run["execution_status"], run["decision"]) == ("FAILED", status, "failed")
        assert run["error"]["code"] == status


def rejection_events(cause: str) -> list[dict[str, Any]]:
    """Ingest, then Validate failing: its Catch leaves the error at $.error, and the failure path runs."""
    error = {"error": {"Error": "DatasetRejected", "Cause": cause}}
    outcome = {**error, "outcome": {"decision": "failed", "error": "DatasetRejected", "cause": cause}}
    return [
        entered("Ingest", 0),
        exited("Ingest", 1, {"model": "m"}),
        entered("Validate", 1),
        exited("Validate", 2, {"model": "m", **error}),
        entered("Failed", 2),
        exited("Failed", 2, {"model": "m", **outcome}),
        entered("NotifyFailure", 2),
        exited("NotifyFailure", 3, {"model": "m", **outcome}),
    ]


def test_the_state_a_task_failed_in_is_marked_and_no_other() -> None:
    states, _ = runs.states_passed(rejection_events("{}"))

    assert [(s["name"], s["failed"]) for s in states] == [
        ("Ingest", False),
        ("Validate", True),
        ("Failed", False),
        ("NotifyFailure", False),
    ]


def test_a_rejected_dataset_lists_its_problems_under_the_failed_step() -> None:
    # Given Validate's rejection as the Lambda runtime reports it: its JSON text is the errorMessage
    problems = [
        data.problem("column is missing from the file", "missing_column", "datasets/m/a.csv", "label")
    ]
    rejection = str(data.DatasetRejected("the training data for m failed validation (3 problems)", problems))
    cause = json.dumps({"errorMessage": rejection, "errorType": "DatasetRejected", "stackTrace": []})
    states, state = runs.states_passed(rejection_events(cause))
    execution = {"status": "FAILED", "startDate": at(0), "error": "PipelineFailed", "cause": cause}

    # When the run is read
    run = runs.run_detail(RECORD, "m", execution, states, state)

    # Then its error says where it failed, and each problem
    assert run["error"] == {
        "code": "DatasetRejected",
        "message": "the training data for m failed validation (3 problems)",
        "step": "Validate",
        "problems": problems,
        "more": 0,
    }
