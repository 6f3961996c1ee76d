"""The pipeline routes on the real state machine (moto's ASL interpreter, tasks in-process): start a
run, follow it to its decision, list a model's runs however they were started, and the 4xx/503s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import aws, wiring
from aimass.api.app import create_app
from aimass.config import settings
from aimass.local import statemachines
from aimass.local.demo import training_csv
from aimass.registration import register_version
from tests.conftest import running_stack, stopped

MODEL = "bc-api"
STUMP = {"estimator": "decision_tree", "params": {"max_depth": 1}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Iterator[TestClient]:
    # These tests start runs of one model one after another: no minimum interval between them here
    # (test_run_limits... sets its own).
    with running_stack(
        tmp_path_factory.mktemp("pipeline-api"),
        "aimass-pipeline-api",
        environment={"AIMASS_PIPELINE_MIN_RUN_INTERVAL_S": "0"},
    ) as local:
        demo = demos["breast-cancer"]
        register_version(wiring.registry(), local.bucket, MODEL, demo.model, "test", demo.enrichment)
        aws.client("s3").put_object(
            Bucket=local.bucket, Key=f"datasets/{MODEL}/breast_cancer.csv", Body=training_csv()
        )
        yield TestClient(create_app(["registry"]))


def finished(client: TestClient, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while (run := client.get(f"/v1/models/{MODEL}/pipeline/runs/{run_id}").json())["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{run_id}: still running after 120 s"
        time.sleep(0.1)
    return run  # type: ignore[no-any-return]


def test_a_run_started_by_the_api_is_followed_to_its_release(client: TestClient) -> None:
    started = client.post(f"/v1/models/{MODEL}/pipeline:run")
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert run_id.startswith(f"{MODEL}-") and started.json()["execution_arn"].endswith(f":{run_id}")

    run = finished(client, run_id)
    assert run["status"] == "SUCCEEDED" and run["execution_status"] == "SUCCEEDED"
    assert run["decision"] == "promoted" and run["trigger"] == "api"
    passed = [state["name"] for state in run["states"]]
    assert passed == [
        "Ingest",
        "Validate",
        "ChooseBackend",
        "Train",
        "Evaluate",
        "ReleaseGate",
        "Register",
        "Release",
        "Promoted",
        "Notify",
        "Done",
    ]
    assert all(state["exited_at"] >= state["entered_at"] for state in run["states"])
    assert run["current_state"] is None and run["error"] is None
    assert run["metric"] == "roc_auc" and run["candidate"]["roc_auc"] > 0.95
    assert run["champion"] is None  # v1 was only the latest version, no champion to beat
    assert (run["version"], run["alias"]) == (2, "champion")
    assert run["dataset"]["rows"] == 569 and len(run["dataset"]["sha256"]) == 64
    assert (run["backend"], run["training_job"]) == ("lambda", None)

    # The registry's record of the version names the same execution
    assert wiring.registry().get_version(MODEL, 2).lineage["execution"] == run["execution_arn"]


def test_a_rejected_and_a_failed_run_say_why(client: TestClient) -> None:
    rejected = client.post(f"/v1/models/{MODEL}/pipeline:run", json={"parameters": STUMP}).json()["run_id"]
    run = finished(client, rejected)
    assert (run["status"], run["decision"], run["version"]) == ("SUCCEEDED", "rejected", None)
    assert "does not beat the champion" in run["reason"] and run["champion_version"] is not None
    assert "Register" not in [state["name"] for state in run["states"]]

    # An estimator parameter scikit-learn does not know passes the API and fails Train
    failing = client.post(f"/v1/models/{MODEL}/pipeline:run", json={"parameters": {"params": {"nope": 1}}})
    run = finished(client, failing.json()["run_id"])
    assert (run["status"], run["decision"]) == ("FAILED", "failed")
    assert run["error"]["code"] != "FAILED" and "nope" in run["error"]["message"]
    states = [state["name"] for state in run["states"]]
    assert states[-4:] == ["Failed", "DescribeFailure", "NotifyFailure", "Fail"]


def test_a_run_that_fails_validation_shows_each_problem_in_the_api_and_the_cli(
    client: TestClient, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given training data whose mean_radius is "n/a" from its 3rd row on, and a file without the label
    import httpx
    from typer.testing import CliRunner

    from aimass.cli import app

    demo = demos["breast-cancer"]
    register_version(wiring.registry(), settings().bucket, "bc-invalid", demo.model, "test", demo.enrichment)
    lines = [line.split(",") for line in training_csv().decode().splitlines()]
    radius = lines[0].index("mean_radius")
    for row in lines[3:]:
        row[radius] = "n/a"
    s3 = aws.client("s3")
    s3.put_object(
        Bucket=settings().bucket,
        Key="datasets/bc-invalid/broken.csv",
        Body="\n".join(",".join(row) for row in lines).encode(),
    )
    s3.put_object(
        Bucket=settings().bucket,
        Key="datasets/bc-invalid/nolabel.csv",
        Body="\n".join(",".join(row[:-1]) for row in lines[:30]).encode(),
    )

    # When a run starts and stops
    run_id = client.post("/v1/models/bc-invalid/pipeline:run").json()["run_id"]
    deadline = time.monotonic() + 120
    while (run := client.get(f"/v1/models/bc-invalid/pipeline/runs/{run_id}").json())["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{run_id}: still running after 120 s"
        time.sleep(0.1)

    # Then the API names the failed step and each problem, where it is
    assert (run["status"], run["decision"]) == ("FAILED", "failed")
    error = run["error"]
    assert (error["code"], error["step"], error["more"]) == ("DatasetRejected", "Validate", 0)
    assert "failed validation" in error["message"]
    where = {(p["type"], p["file"], p["column"], p["row"]) for p in error["problems"]}
    assert ("missing_column", "datasets/bc-invalid/nolabel.csv", "label", None) in where
    assert ("incomplete", "datasets/bc-invalid/broken.csv", "mean_radius", 3) in where
    assert [s["name"] for s in run["states"] if s["failed"]] == ["Validate"]

    # ... and `aimass pipeline status` prints each problem and crosses the failed step, never a tick
    monkeypatch.setattr(
        httpx, "request", lambda method, url, timeout=None, **kw: client.request(method, url, **kw)
    )
    shown = CliRunner().invoke(
        app, ["pipeline", "status", "bc-invalid", run_id, "--endpoint", "http://aimass.test"]
    )
    assert shown.exit_code == 0, shown.output
    assert "✓ Ingest" in shown.output and "✗ Validate" in shown.output
    assert "✓ Validate" not in shown.output and "✓ Failed" not in shown.output
    assert "now" not in shown.output  # the Fail state it ended in is not one it is still in
    assert "failed in Validate: DatasetRejected" in shown.output
    assert "✗ datasets/bc-invalid/nolabel.csv, column label: column is missing from the file" in shown.output
    assert "✗ datasets/bc-invalid/broken.csv, column mean_radius, row 3:" in shown.output


def test_the_runs_list_has_every_run_newest_first_however_started(client: TestClient) -> None:
    # A run started without the API (as a schedule does) is recorded by its Ingest step
    machine = statemachines.arns()["TrainingPipelineStateMachine"]
    arn = aws.client("stepfunctions").start_execution(
        stateMachineArn=machine, input=json.dumps({"model": MODEL, "trigger": "schedule"})
    )["executionArn"]
    stopped(aws.client("stepfunctions"), arn)
    run_id = arn.rsplit(":", 1)[1]
    assert finished(client, run_id)["trigger"] == "schedule"

    listed = client.get(f"/v1/models/{MODEL}/pipeline/runs").json()["runs"]
    assert listed[0]["run_id"] == run_id and listed[0]["trigger"] == "schedule"
    assert [r["started_at"] for r in listed] == sorted((r["started_at"] for r in listed), reverse=True)
    assert {r["status"] for r in listed} <= {"SUCCEEDED", "FAILED"}
    assert client.get(f"/v1/models/{MODEL}/pipeline/runs", params={"limit": 1}).json()["runs"] == listed[:1]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "loc"),
    [
        ("post", "/v1/models/nope/pipeline:run", None, 404, "not_found", ["path", "name"]),
        ("get", "/v1/models/nope/pipeline/runs", None, 404, "not_found", ["path", "name"]),
        ("get", f"/v1/models/{MODEL}/pipeline/runs/no-such-run", None, 404, "not_found", ["path", "run_id"]),
        (
            "get",
            f"/v1/models/{MODEL}/pipeline/runs/bad%20id",
            None,
            422,
            "validation_error",
            ["path", "run_id"],
        ),
        (
            "post",
            f"/v1/models/{MODEL}/pipeline:run",
            {"parameters": {"estimator": "svm", "margin": -1}},
            422,
            "validation_error",
            ["body", "parameters", "estimator"],
        ),
        (
            "post",
            f"/v1/models/{MODEL}/pipeline:run",
            {"paramters": {}},
            422,
            "validation_error",
            ["body", "paramters"],
        ),
    ],
)
def test_bad_requests_get_field_level_errors(
    client: TestClient, method: str, path: str, body: Any, status: int, code: str, loc: list[str]
) -> None:
    response = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert loc in [detail["loc"] for detail in error["details"]]


def test_a_deployment_without_the_pipeline_answers_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIMASS_PIPELINE_STATE_MACHINE_ARN")
    settings.cache_clear()
    try:
        response = client.post(f"/v1/models/{MODEL}/pipeline:run")
    finally:
        monkeypatch.undo()
        settings.cache_clear()
    assert response.status_code == 503 and response.json()["error"]["code"] == "pipeline_unavailable"


@pytest.fixture
def slow_pipeline(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A pipeline whose runs wait a minute: a run started on it is still running when the next starts."""
    sfn = aws.client("stepfunctions")
    arn = sfn.create_state_machine(
        name=f"slow-{time.monotonic_ns()}",
        definition=json.dumps(
            {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 60, "End": True}}}
        ),
        roleArn="arn:aws:iam::123456789012:role/slow",
    )["stateMachineArn"]
    monkeypatch.setenv("AIMASS_PIPELINE_STATE_MACHINE_ARN", arn)
    settings.cache_clear()
    yield arn
    for execution in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]:
        sfn.stop_execution(executionArn=execution["executionArn"])
    monkeypatch.undo()
    settings.cache_clear()


def test_one_run_of_a_model_at_a_time_a_second_start_is_a_409_naming_the_running_one(
    client: TestClient, slow_pipeline: str
) -> None:
    # Given a run of bc-api still running
    first = client.post(f"/v1/models/{MODEL}/pipeline:run")
    assert first.status_code == 202, first.text
    # When another run is asked for
    second = client.post(f"/v1/models/{MODEL}/pipeline:run")
    # Then it is refused with the running run's id, and only the first was started
    assert second.status_code == 409, second.text
    error = second.json()["error"]
    assert error["code"] == "run_in_progress" and first.json()["run_id"] in error["message"]
    running = aws.client("stepfunctions").list_executions(
        stateMachineArn=slow_pipeline, statusFilter="RUNNING"
    )
    assert [e["name"] for e in running["executions"]] == [first.json()["run_id"]]


def test_starts_closer_than_the_minimum_interval_are_a_429_with_retry_after(
    client: TestClient, slow_pipeline: str, monkeypatch: pytest.MonkeyPatch, demos: dict[str, Any]
) -> None:
    # Given a minimum of an hour between two starts of a model's runs, and a run just started
    monkeypatch.setenv("AIMASS_PIPELINE_MIN_RUN_INTERVAL_S", "3600")
    settings.cache_clear()
    demo = demos["breast-cancer"]
    register_version(wiring.registry(), settings().bucket, "bc-limited", demo.model, "test", demo.enrichment)
    assert client.post("/v1/models/bc-limited/pipeline:run").status_code == 202
    # When another start comes a moment later
    again = client.post("/v1/models/bc-limited/pipeline:run")
    # Then it is told when it may try again
    assert again.status_code == 429 and again.json()["error"]["code"] == "too_many_runs"
    assert 3500 < int(again.headers["Retry-After"]) <= 3600
