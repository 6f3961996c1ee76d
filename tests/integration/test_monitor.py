"""Monitor runs against moto (aimass.monitoring): predictions sent through the API are captured by
the real capture writer, then a run reads them, judges each version against its baseline, writes
Model Monitor's files and its summary, and acts on drift (a notice on the pipeline topic, retraining
through the drift trigger's cooldown)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import aws, wiring
from aimass.api.app import create_app
from aimass.config import settings
from aimass.local.lambda_runtime import LambdaContext, load_handler
from aimass.local.resources import create_table
from aimass.monitoring import actions, runs
from aimass.monitoring.judge import PII_SKIP
from aimass.registration import register_version
from tests.conftest import drained, subscribed_queue
from tests.integration.test_drift_retraining import Bus
from tests.support import event

BUCKET = "aimass-test"
MODEL = "breast-cancer"
TABLE = "aimass-test-idempotency"


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def rows(demos: dict[str, Any], shift: dict[str, float] | None = None) -> list[dict[str, float]]:
    """The demo's holdout rows (143, unseen by its baseline), with `shift` added to some features."""
    names = [f.name for f in demos[MODEL].enrichment.features]
    found = [dict(zip(names, map(float, row), strict=True)) for row in demos[MODEL].holdout]
    for row in found:
        for feature, by in (shift or {}).items():
            row[feature] += by
    return found


def send(client: TestClient, instances: list[dict[str, Any]], model: str = MODEL) -> None:
    for start in range(0, len(instances), 50):
        answer = client.post(f"/v1/models/{model}:predict", json={"instances": instances[start : start + 50]})
        assert answer.status_code == 200, answer.text
    wiring.flush_capture()


def monitor() -> dict[str, Any]:
    """A run of the demo's monitor over the last hour, with the actions it takes on drift."""
    act = partial(actions.act, wiring.monitor_actions())
    return runs.run(wiring.registry(), wiring.monitor_settings(), MODEL, 3600, act)


def read_json(key: str) -> Any:
    return json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_a_run_over_clean_captured_traffic_finds_no_drift_and_writes_model_monitor_files(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given the holdout's rows predicted through the API (captured by the real writer)
    send(client, rows(demos))

    # When the model's monitor runs over the last hour
    summary = monitor()

    # Then its one version is judged clean, from every row sent
    assert summary["status"] == "succeeded" and summary["outcome"] == "no_drift"
    [version] = summary["versions"]
    assert version["status"] == "ok" and version["rows"] == 143 and version["drifted_features"] == []
    assert len(version["features_checked"]) == 30 and version["drift_score"] == 0.0
    assert version["prediction_drift"]["status"] == "judged" and not version["prediction_drift"]["drifted"]
    assert summary["skipped_objects"] == 0 and summary["skipped_lines"] == 0
    # and its files are in Model Monitor's formats, beside the summary, which lists as the newest run
    prefix = f"monitoring/{MODEL}/{summary['run']}/"
    statistics = read_json(prefix + "v1/statistics.json")
    assert statistics["dataset"]["item_count"] == 143
    first = statistics["features"][0]
    assert first["name"] == "mean_radius" and first["inferred_type"] == "Fractional"
    assert first["numerical_statistics"]["common"]["num_present"] == 143
    assert statistics["aimass"]["prediction"]["string_statistics"]["distribution"]["categorical"]["buckets"]
    # (a few holdout values are outside the reference's range: checks, but no drift)
    violations = read_json(prefix + "v1/constraint_violations.json")["violations"]
    assert {v["constraint_check_type"] for v in violations} <= {"value_range_check"}
    assert version["violations"] == len(violations)
    assert read_json(prefix + "summary.json") == summary
    assert [r["run"] for r in client.get(f"/v1/models/{MODEL}/monitor/runs").json()["runs"]] == [
        summary["run"]
    ]
    assert summary["actions"] == {"metrics": [1]}


def test_a_shifted_feature_is_the_one_drifted_and_is_told_and_asks_for_retraining_once(
    client: TestClient, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pipeline topic with a subscriber, the drift trigger's claims and the default bus
    topic = aws.client("sns").create_topic(Name="pipeline")["TopicArn"]
    queue = subscribed_queue(topic, "notices")
    monkeypatch.setenv("AIMASS_PIPELINE_TOPIC_ARN", topic)
    monkeypatch.setenv("AIMASS_IDEMPOTENCY_TABLE", TABLE)
    monkeypatch.setenv("AIMASS_DRIFT_RETRAINING_FRACTION", "0")
    settings.cache_clear()
    create_table(TABLE, "IdempotencyTable")
    bus = Bus()
    # and traffic whose mean_radius is 1.5 standard deviations (about 5.3) above the baseline's
    send(client, rows(demos, {"mean_radius": 5.3}))

    # When the monitor runs twice
    first, second = monitor(), monitor()

    # Then mean_radius, and only it, drifted
    [version] = first["versions"]
    assert first["outcome"] == "drift" and version["status"] == "drift"
    assert version["drifted_features"] == ["mean_radius"]
    violations = read_json(f"monitoring/{MODEL}/{first['run']}/v1/constraint_violations.json")["violations"]
    assert {"mean_radius"} == {
        v["feature_name"] for v in violations if v["constraint_check_type"] == "baseline_drift_check"
    }
    # and each run published a notice, but only the first asked for retraining (the cooldown)
    notices = drained(aws.client("sqs"), queue)
    assert len(notices) == 2
    assert notices[0]["Subject"].startswith(f"aimass monitor {MODEL}: drift in 1 feature")
    assert first["actions"]["retraining"]["decision"] == "requested"
    assert second["actions"]["retraining"]["decision"] == "cooldown"
    [event] = bus.received()
    assert event["detail"]["drifted_features"] == ["mean_radius"]
    assert event["detail"]["report"].endswith(f"monitoring/{MODEL}/{first['run']}/summary.json")


def test_a_version_without_a_baseline_is_said_to_have_none(client: TestClient, demos: dict[str, Any]) -> None:
    # Given a model pushed without a reference dataset, and traffic for it
    demo = demos[MODEL]
    register_version(wiring.registry(), BUCKET, "no-reference", demo.model, "test", demo.enrichment)
    send(client, rows(demos), model="no-reference")

    # When its monitor runs
    summary = runs.run(wiring.registry(), wiring.monitor_settings(), "no-reference", 3600)

    # Then it judges nothing, and says why
    assert summary["outcome"] == "no_baseline"
    [version] = summary["versions"]
    assert version["status"] == "no_baseline" and version["rows"] == 143
    assert "reference" in version["reason"]


def test_a_window_with_too_few_rows_judges_nothing(client: TestClient, demos: dict[str, Any]) -> None:
    # Given fewer rows than a judgement needs (100), shifted as they are
    send(client, rows(demos, {"mean_radius": 5.3})[:60])

    # When the monitor runs
    summary = monitor()

    # Then it says so, and finds no drift
    assert summary["outcome"] == "insufficient_data"
    [version] = summary["versions"]
    assert version["status"] == "insufficient_data" and version["rows"] == 60
    assert "drifted_features" not in version


def test_malformed_and_foreign_capture_lines_are_skipped_and_counted(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given clean traffic, and beside it in the same hour: an object that is not JSON Lines, one that
    # is not UTF-8, and one with a broken line, another model's line and a line without inputs
    send(client, rows(demos))
    [key] = [
        o["Key"]
        for o in aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"capture/{MODEL}/")["Contents"]
    ]
    hour = key.rsplit("/", 1)[0]
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key=f"{hour}/notes.txt", Body=b"hello")
    s3.put_object(Bucket=BUCKET, Key=f"{hour}/binary.jsonl", Body=b"\xff\xfe\x00garbage")
    good = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()[0]
    other = json.loads(good)
    other["eventMetadata"]["model"] = "digits"
    inputless = json.loads(good)
    del inputless["captureData"]["endpointInput"]
    body = "\n".join(["{not json", json.dumps(other), json.dumps(inputless), "[1, 2]"]) + "\n"
    s3.put_object(Bucket=BUCKET, Key=f"{hour}/mixed.jsonl", Body=body.encode())

    # When the monitor runs
    summary = monitor()

    # Then the captured rows are judged as before, and what is not a capture line is counted
    assert summary["outcome"] == "no_drift" and summary["rows"] == 143
    assert summary["skipped_objects"] == 2 and summary["skipped_lines"] == 4


def test_a_failed_run_is_visible_as_failed_and_leaves_the_earlier_run_untouched(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given a finished run
    send(client, rows(demos))
    earlier = monitor()
    # and the version's baseline statistics then altered (its sha256 no longer matches)
    record = wiring.registry().get_version(MODEL, 1)
    assert record.baseline is not None
    key = record.baseline.statistics_uri.removeprefix(f"s3://{BUCKET}/")
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"{}")

    # When the monitor runs again, it fails
    with pytest.raises(Exception, match="sha256"):
        monitor()

    # Then the failed run is listed (newest) with its error, and the earlier run is as it was
    listed = client.get(f"/v1/models/{MODEL}/monitor/runs").json()["runs"]
    assert [r["status"] for r in listed] == ["failed", "succeeded"]
    assert "sha256" in listed[0]["error"]
    assert listed[1] == earlier
    assert client.get(f"/v1/models/{MODEL}/monitor/runs/{earlier['run']}").json() == earlier


def test_the_api_runs_the_monitor_and_refuses_bad_windows_and_unknown_runs(
    client: TestClient, demos: dict[str, Any]
) -> None:
    send(client, rows(demos))

    ran = client.post(f"/v1/models/{MODEL}/monitor:run", json={"since": "2h"})
    assert ran.status_code == 200 and ran.json()["outcome"] == "no_drift"
    assert ran.json()["window"]["seconds"] == 7200

    for since in ("yesterday", -5, "40d", True):
        refused = client.post(f"/v1/models/{MODEL}/monitor:run", json={"since": since})
        assert refused.status_code == 422, since
        assert refused.json()["error"]["details"][0]["loc"][:2] == ["body", "since"]
    assert client.post(f"/v1/models/{MODEL}/monitor:run", json={"window": 3}).status_code == 422
    assert client.post("/v1/models/unknown/monitor:run", json={}).status_code == 404
    assert client.get(f"/v1/models/{MODEL}/monitor/runs/20260101T000000000Z-abcdef").status_code == 404
    assert client.get(f"/v1/models/{MODEL}/monitor/runs/not-a-run").status_code == 422
    assert client.get("/v1/models/unknown/monitor/runs").status_code == 404
    assert client.get(f"/v1/models/{MODEL}/monitor:run").status_code == 405


def test_the_scheduled_function_runs_every_model_and_emits_each_judged_versions_metrics(
    client: TestClient, demos: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given traffic for one of the registered models
    send(client, rows(demos))
    handler = load_handler("monitor")

    # When the schedule invokes the monitor function with its event
    done = handler(event("scheduler_monitor"), LambdaContext())

    # Then every model was run (the one without traffic has no data), and the judged version's
    # figures are an EMF line by model and version (the dashboard's) and by model (DriftAlarm's)
    outcomes = {r["model"]: r["outcome"] for r in done["runs"]}
    assert outcomes == {MODEL: "no_drift", "digits": "no_data"}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [emf] = [line for line in lines if "MonitorDriftScore" in line]
    assert (emf["model"], emf["version"], emf["MonitorDriftedFeatures"]) == (MODEL, "1", [0.0])
    dimensions = emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert sorted(map(sorted, dimensions)) == [["model", "service"], ["model", "version"]]


def test_a_personal_feature_is_skipped_and_its_shift_raises_no_drift(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given mean_radius marked personal by the model's policy (captured as tokens)
    policy = {"pii": "tokenise", "pii_features": ["mean_radius"]}
    marked = client.put(f"/v1/models/{MODEL}/quality", json=policy)
    assert marked.status_code == 200, marked.text
    # and traffic whose mean_radius is shifted far from the baseline's
    send(client, rows(demos, {"mean_radius": 5.3}))

    # When the monitor runs
    [version] = monitor()["versions"]

    # Then it says why mean_radius is not judged, and finds no drift and no violation of it
    assert version["features_skipped"] == [{"feature": "mean_radius", "reason": PII_SKIP}]
    assert version["status"] == "ok" and version["drifted_features"] == []
    run = version["files"]["constraint_violations.json"].split("/", 3)[3]
    violations = read_json(run)["violations"]
    assert "mean_radius" not in {v["feature_name"] for v in violations}
