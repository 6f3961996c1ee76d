"""A file over the size threshold, dropped through S3 in the local stack, goes through the template's
batch state machine (statemachines/batch_predict.asl.json on moto's ASL interpreter, its tasks on
the real handlers in-process) and comes out as the same outputs and one report."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from aimass import aws, wiring
from aimass.batch import drop, parts
from aimass.local import notifications, statemachines
from aimass.local.demo import register
from tests.conftest import running_stack, stopped
from tests.integration.test_batch_job import csv_bytes, holdout

THRESHOLD = 4000  # bytes: the breast-cancer rows below are about 400 bytes each
PART_ROWS = 25


@dataclass
class Stack:
    bucket: str
    s3: Any
    sfn: Any
    machine: str

    def drop(self, key: str, body: bytes, **metadata: str) -> dict[str, Any]:
        """Put a file under incoming/, let the S3 event run, wait for the run it started to end;
        the execution."""
        put = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata)
        notifications.drain(timeout=30)
        name = drop.run_name(drop.Drop(self.bucket, key, put["ETag"].strip('"'), put.get("VersionId")))
        arn = f"{self.machine.replace(':stateMachine:', ':execution:')}:{name}"
        return stopped(self.sfn, arn)

    def read(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def report(self, key: str) -> dict[str, Any]:
        return json.loads(self.read(key))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, Any]) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("batch-state-machine")
    settings = {
        "AIMASS_BATCH_MAP_THRESHOLD_BYTES": str(THRESHOLD),
        "AIMASS_BATCH_PART_ROWS": str(PART_ROWS),
        "AIMASS_BATCH_WORK_DIR": str(root / "work"),
    }
    with running_stack(root, "aimass-batch-sfn", environment=settings) as local:
        register(wiring.registry(), local.bucket, demos["breast-cancer"], "test")
        yield Stack(
            local.bucket,
            aws.client("s3"),
            aws.client("stepfunctions"),
            statemachines.arns()["BatchPredictStateMachine"],
        )


def rows_csv(demos: dict[str, Any], count: int) -> bytes:
    """Held-out rows with an id, one value that is not a number (row 31) and one short row (72)."""
    rows = [{"case": f"c{i}", **r} for i, r in enumerate(holdout(demos, count))]
    lines = csv_bytes(rows).decode().splitlines()
    cells = lines[31].split(",")
    lines[31] = ",".join([cells[0], "oops", *cells[2:]])
    lines[72] = ",".join(lines[72].split(",")[:5])
    return ("\n".join(lines) + "\n").encode()


def test_a_file_over_the_threshold_is_predicted_in_parts_into_one_set_of_outputs(
    stack: Stack, demos: dict[str, Any]
) -> None:
    body = rows_csv(demos, 110)
    assert len(body) > THRESHOLD

    execution = stack.drop("incoming/breast-cancer/large.csv", body, **{"aimass-id-column": "case"})

    assert execution["status"] == "SUCCEEDED", execution
    report = stack.report("reports/breast-cancer/large.csv.json")
    assert report["status"] == "succeeded"
    assert report["rows"] == {"in": 110, "predicted": 108, "rejected": 2}
    assert report["parts"]["count"] == 5 and report["parts"]["run"] == execution["name"]
    assert report["model"]["version"] == 1 and report["drift"]["sample_rows"] == 108
    # The rows come out in the file's order, each kept under its id; the rejects with the file's
    # row numbers
    predicted = list(csv.DictReader(io.StringIO(stack.read("predictions/breast-cancer/large.csv").decode())))
    expected = [f"c{i}" for i in range(110) if i not in (30, 71)]
    assert [row["case"] for row in predicted] == expected
    rejected = [
        json.loads(line) for line in stack.read("rejected/breast-cancer/large.csv.jsonl").splitlines()
    ]
    # (a short row has no columns to take an id from)
    assert [(r["row"], r.get("case"), r["type"]) for r in rejected] == [
        (31, "c30", "type_error"),
        (72, None, "unreadable_row"),
    ]
    # The run's parts are gone (the Map's own results stay under staging/map-results/, which the
    # bucket's lifecycle expires)
    assert stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="staging/breast-cancer/")["KeyCount"] == 0
    assert stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="staging/map-results/")["KeyCount"] >= 1


def test_a_duplicate_delivery_does_not_start_a_second_run(stack: Stack, demos: dict[str, Any]) -> None:
    body = rows_csv(demos, 80)
    execution = stack.drop("incoming/breast-cancer/twice.csv", body)
    assert execution["status"] == "SUCCEEDED"
    put = stack.s3.head_object(Bucket=stack.bucket, Key="incoming/breast-cancer/twice.csv")
    again = drop.Drop(
        stack.bucket, "incoming/breast-cancer/twice.csv", put["ETag"].strip('"'), put.get("VersionId")
    )

    # The same event once more past the idempotency layer (its record expired): the execution's
    # name is the object version's, so Step Functions gives back the first run
    summary = drop.start_run(again, stack.machine)

    assert summary["execution"] == execution["executionArn"]
    runs = stack.sfn.list_executions(stateMachineArn=stack.machine)["executions"]
    assert [r["name"] for r in runs].count(execution["name"]) == 1


def test_a_file_for_an_unknown_model_ends_in_a_failed_report(stack: Stack, demos: dict[str, Any]) -> None:
    execution = stack.drop("incoming/no-such-model/rows.csv", rows_csv(demos, 80))

    assert execution["status"] == "FAILED"
    report = stack.report("reports/no-such-model/rows.csv.json")
    assert report["status"] == "failed" and report["error"]["code"] == "not_found"
    assert "no-such-model" in report["error"]["message"]
    assert report["rows"] == {"in": 0, "predicted": 0, "rejected": 0}


def test_a_part_that_fails_fails_the_file_with_the_reason_and_writes_no_outputs(
    stack: Stack, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_part = parts.part

    def part_two_breaks(
        planned: dict[str, Any], item: dict[str, Any], serving: Any, settings: Any
    ) -> dict[str, Any]:
        if item["index"] == 2:
            raise parts.PartFailed("part 2: the disk was full")  # what the part's Lambda raises
        return real_part(planned, item, serving, settings)

    monkeypatch.setattr(parts, "part", part_two_breaks)

    execution = stack.drop("incoming/breast-cancer/broken.csv", rows_csv(demos, 110))

    assert execution["status"] == "FAILED"
    report = stack.report("reports/breast-cancer/broken.csv.json")
    assert report["status"] == "failed" and report["error"]["code"] == "part_failed"
    # In AWS the Map fails (no failure is tolerated); on moto the part is null and Merge refuses
    assert "part" in report["error"]["message"]
    listed = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="predictions/breast-cancer/broken")
    assert listed["KeyCount"] == 0
    assert stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="staging/breast-cancer/")["KeyCount"] == 0


def test_a_file_under_the_threshold_stays_in_one_invocation(stack: Stack, demos: dict[str, Any]) -> None:
    body = rows_csv(demos, 80)[:THRESHOLD]
    body = body[: body.rindex(b"\n") + 1]
    runs = len(stack.sfn.list_executions(stateMachineArn=stack.machine)["executions"])

    stack.s3.put_object(Bucket=stack.bucket, Key="incoming/breast-cancer/small.csv", Body=body)
    notifications.drain(timeout=30)

    report = stack.report("reports/breast-cancer/small.csv.json")
    assert report["status"] == "succeeded" and "parts" not in report
    assert len(stack.sfn.list_executions(stateMachineArn=stack.machine)["executions"]) == runs
