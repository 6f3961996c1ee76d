"""Retraining triggers in the local stack: the template's schedule for the demo, run on demand as
EventBridge Scheduler runs it, and the drift rule, which turns a drifted dropped file into one
pipeline run however many drifted files follow. The runs are the real pipeline on moto's ASL
interpreter.

This is also the guard on the seam aimass.local.triggers relies on (moto's EventBridge delivering a
rule's targets in `Rule.send_to_targets`, and not Step Functions targets): a moto upgrade that moves
it fails here."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from aimass import aws, wiring
from aimass.cli import pipeline_schedules
from aimass.errors import NotFound
from aimass.local import notifications, statemachines, template
from aimass.local.demo import Demo, training_csv
from aimass.local.statemachines import Resolver
from aimass.registration import Reference, register_version, set_alias
from tests.conftest import drained, running_stack
from tests.integration.test_batch_job import csv_bytes, holdout

BUCKET = "aimass-triggers-test"


@dataclass
class Stack:
    machine: str
    demo: Demo
    queue: str  # where a second rule on the drift pattern delivers (an SQS target: moto's own)

    def add_model(self, name: str, champion: bool) -> None:
        # With its training data as the baseline's reference: batch reports measure drift against it
        reference = Reference(self.demo.reference_csv, "reference.csv", "demo training data")
        record = register_version(
            wiring.registry(),
            BUCKET,
            name,
            self.demo.model,
            "test",
            self.demo.enrichment,
            reference=reference,
        )
        if champion:
            set_alias(wiring.registry(), name, "champion", record.version, "test")
        aws.client("s3").put_object(Bucket=BUCKET, Key=f"datasets/{name}/data.csv", Body=training_csv())

    def finished(self, arn: str) -> dict[str, Any]:
        sfn = aws.client("stepfunctions")
        deadline = time.monotonic() + 180
        while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, f"{arn} still running after 180 s"
            time.sleep(0.1)
        return execution  # type: ignore[no-any-return]

    def runs(self, model: str) -> list[dict[str, Any]]:
        """The pipeline's executions for `model`, with their inputs parsed, oldest first."""
        sfn = aws.client("stepfunctions")
        found = []
        for listed in sfn.list_executions(stateMachineArn=self.machine)["executions"]:
            execution = sfn.describe_execution(executionArn=listed["executionArn"])
            run_input = json.loads(execution["input"])
            if run_input.get("model") == model:
                found.append({**execution, "input": run_input})
        return sorted(found, key=lambda e: e["startDate"])

    def captured(self) -> list[dict[str, Any]]:
        return drained(aws.client("sqs"), self.queue)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("triggers"), BUCKET) as local:
        assert local.retraining_models == "breast-cancer"
        sqs = aws.client("sqs")
        queue = sqs.create_queue(QueueName="drift-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = aws.client("events")
        [rule] = events.list_rules()["Rules"]
        events.put_rule(Name="drift-capture", EventPattern=rule["EventPattern"])
        events.put_targets(Rule="drift-capture", Targets=[{"Id": "queue", "Arn": arn}])
        yield Stack(statemachines.arns()["TrainingPipelineStateMachine"], demos["breast-cancer"], queue)


def test_the_local_stack_schedules_the_demo_model(stack: Stack) -> None:
    found = pipeline_schedules.list_schedules()

    assert found == [
        {
            "name": "breast-cancer",
            "model": "breast-cancer",
            "expression": "rate(1 day)",
            "timezone": "UTC",
            "state": "ENABLED",
            "flexible_window_minutes": 60,
            "target": stack.machine,
            "input": {"model": "breast-cancer", "trigger": "schedule"},
            "arn": "arn:aws:scheduler:us-east-1:123456789012:schedule/aimass-local-retraining/breast-cancer",
        }
    ]


def test_running_a_schedule_starts_a_pipeline_run_that_succeeds(stack: Stack) -> None:
    stack.add_model("breast-cancer", champion=False)  # v1, nothing to beat: the run promotes

    arn = pipeline_schedules.run_schedule("breast-cancer")

    execution = stack.finished(arn)
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["stateMachineArn"] == stack.machine
    assert json.loads(execution["input"]) == {"model": "breast-cancer", "trigger": "schedule"}
    assert wiring.registry().get_model("breast-cancer").aliases == {"champion": 2}
    # The trigger passed through every step into the new version's lineage
    assert wiring.registry().get_version("breast-cancer", 2).lineage["trigger"] == "schedule"
    assert wiring.registry().get_version("breast-cancer", 2).lineage["execution"] == arn


def test_an_unknown_schedule_is_not_found(stack: Stack) -> None:
    with pytest.raises(
        NotFound, match="no retraining schedule 'churn' in schedule group aimass-local-retraining"
    ):
        pipeline_schedules.run_schedule("churn")


def test_a_drifted_file_starts_one_drift_run_however_many_drifted_files_follow(
    stack: Stack, demos: dict[str, Any]
) -> None:
    stack.add_model("bc-drift", champion=True)
    shifted = csv_bytes([{k: v * 1.3 for k, v in row.items()} for row in holdout(demos, 100)])
    s3 = aws.client("s3")

    # Given two drifted files dropped one after the other
    reports = []
    for name in ("monday.csv", "tuesday.csv"):
        s3.put_object(Bucket=BUCKET, Key=f"incoming/bc-drift/{name}", Body=shifted)
        notifications.drain(timeout=120)
        body = s3.get_object(Bucket=BUCKET, Key=f"reports/bc-drift/{name}.json")["Body"].read()
        reports.append(json.loads(body))

    # Then the first asked for retraining, the second found it asked for
    assert [r["retraining"]["decision"] for r in reports] == ["requested", "cooldown"]
    [run] = stack.runs("bc-drift")
    assert run["input"] == {
        "model": "bc-drift",
        "trigger": "drift",
        "report": f"s3://{BUCKET}/reports/bc-drift/monday.csv.json",
        "drift": {
            "version": 1,
            "drifted_fraction": reports[0]["retraining"]["drifted_fraction"],
            "drifted_features": reports[0]["drift"]["drifted"],
            "event": reports[0]["retraining"]["event_id"],
        },
    }
    # and the run, with the extra fields in its input, goes through every step
    execution = stack.finished(run["executionArn"])
    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"])["outcome"]["decision"] in ("promoted", "rejected")
    # A rule's other targets are delivered as moto delivers them: one event, to the queue
    assert [e["detail"]["report"] for e in stack.captured()] == [run["input"]["report"]]


def test_no_model_named_means_no_schedule(stack: Stack) -> None:
    path = template.template_path()

    def slots(models: str) -> list[bool]:
        resolver = Resolver(
            template.load(path),
            path,
            {},
            region="us-east-1",
            account="123456789012",
            machines={},
            parameters={"RetrainingModels": models},
        )
        return [resolver.condition(f"HasRetrainingModel{n}") for n in range(1, 6)]

    assert slots("") == [False] * 5
    assert slots("breast-cancer,churn") == [True, True, False, False, False]


def test_the_schedules_are_in_the_group_the_template_names_for_the_local_stage(stack: Stack) -> None:
    groups = [g["Name"] for g in aws.client("scheduler").list_schedule_groups()["ScheduleGroups"]]

    # RetrainingScheduleGroup, aimass-${Stage}-retraining, with the local stack's stage
    assert pipeline_schedules.schedule_group() == "aimass-local-retraining"
    assert sorted(groups) == ["aimass-local-retraining", "default"]
