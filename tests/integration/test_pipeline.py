"""The retraining pipeline (statemachines/training_pipeline.asl.json) on moto's ASL interpreter in
the local stack, its tasks on the real handler in-process: runs that promote, reject a worse
candidate, stop at validation, retry a transient failure, and fail for good leaving the registry
as it was; every outcome is published on the pipeline topic."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from aimass import aws, cards, release, rollout, wiring
from aimass.contracts.cards import CardFieldsUpdate
from aimass.contracts.registry import ReleasePolicy
from aimass.local import statemachines
from aimass.local.demo import Demo, training_csv
from aimass.pipeline import runs, steps
from aimass.registration import register_version
from tests.conftest import drained, running_stack, stopped, subscribed_queue

STUMP = {"estimator": "decision_tree", "params": {"max_depth": 1}}


@dataclass
class Stack:
    bucket: str
    sfn: Any
    s3: Any
    sqs: Any
    machine: str
    queue: str
    demo: Demo

    def add_model(self, name: str, champion: bool = False) -> None:
        """The breast-cancer demo registered under `name` (v1, champion or only latest), with the
        whole breast_cancer dataset as its training data."""
        from aimass.registration import set_alias

        record = register_version(
            wiring.registry(),
            self.bucket,
            name,
            self.demo.model,
            "test",
            self.demo.enrichment,
        )
        if champion:
            set_alias(wiring.registry(), name, "champion", record.version, "test")
        self.s3.put_object(Bucket=self.bucket, Key=f"datasets/{name}/breast_cancer.csv", Body=training_csv())

    def run(self, model: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = {"model": model, **({"parameters": parameters} if parameters else {})}
        arn = self.sfn.start_execution(stateMachineArn=self.machine, input=json.dumps(payload))[
            "executionArn"
        ]
        return stopped(self.sfn, arn)

    def notices(self) -> list[dict[str, Any]]:
        """The pipeline topic's notices since the last call, as SNS delivers them (Subject, Message)."""
        return list(drained(self.sqs, self.queue))

    def messages(self) -> list[dict[str, Any]]:
        """The outcomes of the pipeline topic's notices since the last call: each notice's last line."""
        return [json.loads(notice["Message"].splitlines()[-1]) for notice in self.notices()]


def versions(name: str) -> list[int]:
    return [v.version for v in wiring.registry().list_versions(name)]


def assert_report(stack: Stack, model: str, execution: dict[str, Any]) -> str:
    """The run's evaluation report is in the bucket: its page as HTML, and every PNG it links to
    next to it. Returns the page."""
    report = json.loads(execution["output"])["evaluation"]["report"]
    run = execution["executionArn"].rsplit(":", 1)[1]
    assert report["key"] == f"reports/{model}/pipeline/{run}/index.html"
    assert report["uri"] == f"s3://{stack.bucket}/{report['key']}"
    page = stack.s3.get_object(Bucket=stack.bucket, Key=report["key"])
    assert page["ContentType"].startswith("text/html")
    html = page["Body"].read().decode()
    # Each figure is embedded in the page and links to the same PNG beside it
    images = re.findall(r'<figure><a href="([^"]+)"><img src="data:image/png;base64,([^"]+)"', html)
    assert {"confusion_matrix.png", "roc_curve.png"} <= {name for name, _ in images}
    folder = report["key"].rsplit("/", 1)[0]
    for name, embedded in images:
        plot = stack.s3.get_object(Bucket=stack.bucket, Key=f"{folder}/{name}")
        png = plot["Body"].read()
        assert plot["ContentType"] == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"
        assert base64.b64decode(embedded) == png
    return html


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("pipeline")
    with running_stack(root, "aimass-pipeline-test") as local:
        queue = subscribed_queue(local.pipeline_topic_arn, "pipeline-outcomes")
        yield Stack(
            local.bucket,
            aws.client("stepfunctions"),
            aws.client("s3"),
            aws.client("sqs"),
            statemachines.arns()["TrainingPipelineStateMachine"],
            queue,
            demos["breast-cancer"],
        )


def test_candidates_are_promoted_only_when_they_beat_the_champion(stack: Stack) -> None:
    stack.add_model("bc-retrain")  # v1, no champion yet

    # With no champion to beat, a candidate that passes the thresholds becomes champion
    first = stack.run("bc-retrain", STUMP)
    assert first["status"] == "SUCCEEDED", first
    summary = wiring.registry().get_model("bc-retrain")
    assert summary.aliases == {"champion": 2}
    stump = wiring.registry().get_version("bc-retrain", 2)
    assert stump.lineage["execution"] == first["executionArn"]
    assert stump.lineage["parameters"]["estimator"] == "decision_tree"
    assert stump.lineage["dataset"]["sha256"] and stump.metrics["roc_auc"] < 0.95
    assert stump.baseline is not None  # computed from its training split

    # A logistic regression beats the stump on the same holdout: promoted, and released through the
    # model's release policy (by default a canary rollout), the champion serving the rest meanwhile
    better = stack.run("bc-retrain")
    assert better["status"] == "SUCCEEDED"
    summary = wiring.registry().get_model("bc-retrain")
    assert summary.aliases == {"champion": 2}
    assert summary.traffic.canary is not None and summary.traffic.canary.version == 3
    output = json.loads(better["output"])
    assert output["released"]["release"]["rollout"]["state"] == "canary"
    assert output["outcome"]["release"]["mode"] == "canary"  # the notice says how it was released
    rollout.promote(wiring.registry(), "bc-retrain", "test")
    assert output["evaluation"]["champion_version"] == 2
    assert output["evaluation"]["candidate"]["roc_auc"] > output["evaluation"]["champion"]["roc_auc"]
    page = assert_report(stack, "bc-retrain", better)
    assert "Decision: promoted" in page and "champion v2" in page

    # A deliberately worse candidate (the stump again) is measured, and not released
    worse = stack.run("bc-retrain", STUMP)
    assert worse["status"] == "SUCCEEDED"
    assert versions("bc-retrain") == [1, 2, 3]
    assert wiring.registry().get_model("bc-retrain").aliases == {"champion": 3}
    assert "does not beat the champion" in json.loads(worse["output"])["evaluation"]["reason"]
    assert "Decision: rejected" in assert_report(stack, "bc-retrain", worse)

    messages = stack.messages()
    outcomes = [(m["model"], m["decision"], m.get("version")) for m in messages]
    assert outcomes == [
        ("bc-retrain", "promoted", 2),
        ("bc-retrain", "promoted", 3),
        ("bc-retrain", "rejected", None),
    ]
    # Each notice links the run's evaluation report
    assert all(
        m["report"] == f"s3://{stack.bucket}/reports/bc-retrain/pipeline/{m['run']}/index.html"
        for m in messages
    )


def test_a_version_the_pipeline_registers_has_its_card_filled(stack: Stack) -> None:
    # Given a model whose serving version has card fields a person set
    stack.add_model("bc-card")
    fields = CardFieldsUpdate(owner="ana", intended_use="triage", limits="adults only", risk_rating="Medium")
    wiring.registry().set_card_fields("bc-card", 1, fields, "ana")

    # When the pipeline retrains it and registers v2
    run = stack.run("bc-card", STUMP)
    assert run["status"] == "SUCCEEDED"
    stack.messages()

    # Then v2's card has what the run knew (dataset, training, evaluation, the version it retrained)
    # and the fields of v1's card, copied by the pipeline and audited as its write
    card = cards.card(wiring.registry(), "bc-card", 2).model_dump(exclude_none=True)
    output = json.loads(run["output"])
    custom = card["additional_information"]["custom_details"]
    assert custom["lineage.parent_version"] == "1" and custom["lineage.pipeline_run"] == run["executionArn"]
    assert custom["lineage.dataset_sha256"] == output["ingest"]["snapshot"]["sha256"]
    assert custom["evaluation_report"] == output["evaluation"]["report"]["uri"]
    assert card["model_overview"]["algorithm_type"] == "decision_tree"
    [evaluation, baseline] = card["evaluation_details"]
    assert evaluation["metadata"]["report"] == output["evaluation"]["report"]["uri"]
    assert {d["name"] for d in evaluation["metric_groups"][0]["metric_data"]} >= {"roc_auc", "accuracy"}
    assert baseline["name"] == "baseline" and len(baseline["metric_groups"]) == 30
    assert (card["model_overview"]["model_owner"], card["intended_uses"]["risk_rating"]) == ("ana", "Medium")
    assert card["additional_information"]["caveats_and_recommendations"] == "adults only"
    assert output["registered"]["card_fields"] == ["intended_use", "limits", "owner", "risk_rating"]
    audits = [r for r in wiring.registry().audit_page("bc-card", 100).records if r.action == "set_card"]
    assert [(r.details["version"], r.actor) for r in audits] == [
        (1, "ana"),
        (2, f"pipeline/{run['executionArn'].rsplit(':', 1)[1]}"),
    ]


def test_with_approval_required_the_promoted_candidate_waits_and_its_run_says_so(stack: Stack) -> None:
    stack.add_model("bc-approval")
    assert stack.run("bc-approval", STUMP)["status"] == "SUCCEEDED"  # v2: champion, nothing to compare
    registry = wiring.registry()
    release.set_policy(registry, "bc-approval", ReleasePolicy(approval=True), "test")

    # A better candidate is promoted by the gate, then waits for an admin
    done = stack.run("bc-approval")

    assert done["status"] == "SUCCEEDED", done
    summary = registry.get_model("bc-approval")
    assert summary.aliases == {"champion": 2} and summary.traffic.canary is None
    asked = [r for r in registry.audit_page("bc-approval", 100).records if r.action == "request_approval"]
    report = json.loads(done["output"])["evaluation"]["report"]["uri"]
    assert (asked[-1].details["version"], asked[-1].details["report"]) == (3, report)
    run_id = done["executionArn"].rsplit(":", 1)[1]
    waiting = runs.describe(registry, "bc-approval", run_id)["release"]
    assert waiting is not None and waiting["pending_approval"] is True
    assert waiting["follow"] == "aimass release status bc-approval"

    # Approved, its canary rollout starts, and the run's status follows it
    release.approve(registry, "bc-approval", 3, "admin", "report reviewed")

    started = runs.describe(registry, "bc-approval", run_id)["release"]
    assert started is not None and (started["state"], started["pending_approval"]) == ("released", False)
    assert started["rollout"] is not None and started["rollout"]["state"] == "canary"
    assert started["follow"] == "aimass rollout status bc-approval"
    assert registry.get_model("bc-approval").traffic.canary is not None
    stack.messages()


def test_a_challenger_policy_and_thresholds_from_the_stored_settings(stack: Stack) -> None:
    stack.add_model("bc-settings", champion=True)
    stack.s3.put_object(
        Bucket=stack.bucket,
        Key="datasets/bc-settings/training.json",
        Body=json.dumps({"release": "challenger", "thresholds": {"accuracy": 0.99}, "margin": 0.5}).encode(),
    )

    # The stored threshold is out of reach: rejected for it, whatever the champion scores
    strict = stack.run("bc-settings")
    assert strict["status"] == "SUCCEEDED"
    assert "accuracy" in json.loads(strict["output"])["evaluation"]["reason"]
    assert versions("bc-settings") == [1]

    # A run's parameters override the stored ones: no threshold and no margin to beat, but the
    # candidate must still beat the champion strictly; with release "challenger" it never becomes champion
    loose = stack.run("bc-settings", {"thresholds": {}, "margin": 0.0, "estimator": "random_forest"})
    assert loose["status"] == "SUCCEEDED"
    evaluation = json.loads(loose["output"])["evaluation"]
    summary = wiring.registry().get_model("bc-settings")
    if evaluation["candidate_score"] > evaluation["required_score"]:
        assert summary.aliases == {"champion": 1, "challenger": 2}
    else:
        assert summary.aliases == {"champion": 1} and versions("bc-settings") == [1]
    stack.messages()


def test_corrupted_data_stops_the_run_at_validation(stack: Stack) -> None:
    stack.add_model("bc-corrupt", champion=True)
    text = training_csv().decode().splitlines()
    header = text[0].split(",")
    radius = header.index("mean_radius")
    # A second file where a third of mean_radius is not a number, and one without the label column
    broken = [text[0]] + [
        ",".join("n/a" if j == radius and i % 3 == 0 else cell for j, cell in enumerate(line.split(",")))
        for i, line in enumerate(text[1:])
    ]
    stack.s3.put_object(
        Bucket=stack.bucket, Key="datasets/bc-corrupt/broken.csv", Body="\n".join(broken).encode()
    )
    unlabelled = [",".join(line.split(",")[:-1]) for line in text[:50]]
    stack.s3.put_object(
        Bucket=stack.bucket, Key="datasets/bc-corrupt/nolabel.csv", Body="\n".join(unlabelled).encode()
    )

    failed = stack.run("bc-corrupt")

    assert failed["status"] == "FAILED"
    assert versions("bc-corrupt") == [1]
    [notice] = stack.notices()
    run = failed["executionArn"].rsplit(":", 1)[1]
    # A person reads which step failed and each problem where it is, not an escaped stack trace
    assert notice["Subject"] == f"aimass pipeline bc-corrupt: failed in Validate (run {run})"
    summary = notice["Message"].splitlines()[:-1]
    assert summary[0] == f"The aimass pipeline run {run} of bc-corrupt failed in Validate."
    assert summary[2].startswith("DatasetRejected: the training data for bc-corrupt failed validation")
    assert "  datasets/bc-corrupt/nolabel.csv, column label: column is missing from the file" in summary
    assert any(
        line.startswith("  datasets/bc-corrupt/broken.csv, column mean_radius, row 1: ") for line in summary
    )
    assert f"The run's states and every problem: aimass pipeline status bc-corrupt {run}" in summary
    assert not any("stackTrace" in line or '\\"' in line for line in summary)
    # ... and a script the outcome, with the fields it always had, on the last line
    message = json.loads(notice["Message"].splitlines()[-1])
    assert set(message) == {"model", "run", "decision", "error", "cause"} and message["run"] == run
    assert message["decision"] == "failed" and message["error"] == "DatasetRejected"
    cause = json.loads(message["cause"])["errorMessage"]
    assert "failed validation" in cause
    # The notice's cause carries the problems, each where it is
    rejection = json.loads(cause)
    where = {(p["type"], p["file"], p["column"], p["row"]) for p in rejection["problems"]}
    assert ("missing_column", "datasets/bc-corrupt/nolabel.csv", "label", None) in where
    assert ("incomplete", "datasets/bc-corrupt/broken.csv", "mean_radius", 1) in where
    assert rejection["more"] == 0
    history = stack.sfn.get_execution_history(executionArn=failed["executionArn"])["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert "Train" not in entered and entered[-4:] == ["Failed", "DescribeFailure", "NotifyFailure", "Fail"]


def test_a_transient_failure_is_retried_and_the_run_goes_on(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.add_model("bc-flaky", champion=True)
    real = steps.STEPS["evaluate"]
    calls = []

    def throttled_once(run: steps.Run) -> dict[str, Any]:
        calls.append(run.name)
        if len(calls) == 1:  # what DynamoDB answers a burst with
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "Query")
        return real(run)

    monkeypatch.setitem(steps.STEPS, "evaluate", throttled_once)

    done = stack.run("bc-flaky", STUMP)

    assert done["status"] == "SUCCEEDED" and len(calls) == 2
    history = stack.sfn.get_execution_history(executionArn=done["executionArn"])["events"]
    failures = [e for e in history if e["type"] == "TaskFailed" or e["type"] == "LambdaFunctionFailed"]
    assert len(failures) == 1
    stack.messages()


def test_a_task_that_fails_for_good_leaves_the_registry_unchanged(stack: Stack) -> None:
    stack.add_model("bc-doomed", champion=True)
    before = wiring.registry().get_model("bc-doomed")

    # An estimator parameter scikit-learn does not know: Train fails, and is not retried
    failed = stack.run("bc-doomed", {"params": {"no_such_parameter": 1}})

    assert failed["status"] == "FAILED"
    assert wiring.registry().get_model("bc-doomed") == before and versions("bc-doomed") == [1]
    [message] = stack.messages()
    assert message["decision"] == "failed" and "no_such_parameter" in message["cause"]
    history = stack.sfn.get_execution_history(executionArn=failed["executionArn"])["events"]
    scheduled = [e for e in history if e["type"] in ("TaskScheduled", "LambdaFunctionScheduled")]
    assert len(scheduled) <= 6  # ingest, validate, train once, the failure notice: described, published


def test_an_unknown_model_fails_with_its_name(stack: Stack) -> None:
    failed = stack.run("no-such-model")

    assert failed["status"] == "FAILED"
    [message] = stack.messages()
    assert message["error"] == "NotFound" and "no-such-model" in message["cause"]


def test_a_notice_that_cannot_be_described_is_published_as_it_is(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(run: steps.Run) -> dict[str, Any]:
        raise RuntimeError("the notice could not be formatted")

    monkeypatch.setitem(steps.STEPS, "describe_failure", broken)

    failed = stack.run("no-such-model-either")

    # The failure is still notified, with the outcome as it was, and the run still fails
    assert failed["status"] == "FAILED"
    [notice] = stack.notices()
    assert notice["Subject"] == "aimass pipeline no-such-model-either: failed"
    outcome = json.loads(notice["Message"])
    assert outcome["error"] == "NotFound" and "no-such-model-either" in outcome["cause"]
    history = stack.sfn.get_execution_history(executionArn=failed["executionArn"])["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert entered[-4:] == ["Failed", "DescribeFailure", "NotifyFailureAsIs", "Fail"]


def test_a_few_unreadable_cells_are_left_out_of_training_not_fatal(stack: Stack) -> None:
    stack.add_model("bc-messy", champion=True)
    lines = training_csv().decode().splitlines()
    radius = lines[0].split(",").index("mean_radius")
    for i in range(1, 11):  # 10 of 569 rows, under the 5% allowed
        cells = lines[i].split(",")
        cells[radius] = "oops"
        lines[i] = ",".join(cells)
    stack.s3.put_object(
        Bucket=stack.bucket, Key="datasets/bc-messy/breast_cancer.csv", Body="\n".join(lines).encode()
    )

    done = stack.run("bc-messy", STUMP)

    assert done["status"] == "SUCCEEDED", done
    output = json.loads(done["output"])
    assert output["validation"]["missing_fraction"]["mean_radius"] == pytest.approx(10 / 569)
    assert output["training"]["train_rows"] + output["evaluation"]["holdout_rows"] == 559
    stack.messages()
