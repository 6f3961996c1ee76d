"""A file split into parts, each predicted on its own, and merged (the steps of the batch state
machine, run here one after the other): the same outputs and counts as in one invocation."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest
from botocore.exceptions import ClientError

from aimass import aws, wiring
from aimass.batch import parts
from aimass.batch.drop import Drop, process
from aimass.batch.formats import UnreadableFile
from aimass.errors import NotFound
from tests.integration.test_batch_job import csv_bytes, holdout

BUCKET = "aimass-test"


@pytest.fixture
def small_parts(registered: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from aimass.config import settings

    monkeypatch.setenv("AIMASS_BATCH_PART_ROWS", "16")
    settings.cache_clear()
    yield
    settings.cache_clear()


def put(key: str, data: bytes, carry: str = "site") -> Drop:
    metadata = {"aimass-carry": carry} if carry else {}
    done = aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=data, Metadata=metadata)
    return Drop(BUCKET, key, done["ETag"].strip('"'), done.get("VersionId"))


def read(key: str) -> bytes:
    return bytes(aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def same(a: str, b: str) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except ValueError:
        return a == b


def messy_csv(demos: dict[str, Any]) -> bytes:
    rows = [{"id": f"r{i}", "site": "a", **r} for i, r in enumerate(holdout(demos, 50))]
    text = csv_bytes(rows).decode().splitlines()
    text[7] = text[7].replace(text[7].split(",")[4], "oops", 1)
    text[20] = ",".join(text[20].split(",")[:4])
    text[33] = text[33].replace(text[33].split(",")[5], "", 1)
    return ("\n".join(text) + "\n").encode()


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_parts_merged_give_what_one_invocation_gives(
    small_parts: None, demos: dict[str, Any], suffix: str
) -> None:
    data = messy_csv(demos)
    if suffix.endswith(".gz"):
        data = gzip.compress(data)
    # One invocation, as a small file goes
    whole = put(f"incoming/breast-cancer/whole{suffix}", data)
    process(whole, wiring.serving(), wiring.batch_settings())
    # The state machine's steps, as a large file goes
    split = put(f"incoming/breast-cancer/split{suffix}", data)
    planned = parts.plan(split, "run-1", wiring.serving(), wiring.batch_settings())
    manifest = json.loads(read(planned["manifest"]["Key"]))
    assert planned["parts"] == len(manifest) == 4 and [m["first_row"] for m in manifest] == [1, 17, 33, 49]
    for item in manifest:
        parts.part(planned, item, wiring.serving(), wiring.batch_settings())
    summary = parts.merge(planned, wiring.serving(), wiring.batch_settings())

    assert summary["rows"] == {"in": 50, "predicted": 47, "rejected": 3}
    unzip = gzip.decompress if suffix.endswith(".gz") else (lambda b: b)
    split_rows = list(
        csv.reader(io.StringIO(unzip(read(f"predictions/breast-cancer/split{suffix}")).decode()))
    )
    whole_rows = list(
        csv.reader(io.StringIO(unzip(read(f"predictions/breast-cancer/whole{suffix}")).decode()))
    )
    # The same rows and cells; an anomaly score may differ in its last digits (BLAS sums a matrix
    # of 16 rows in another order than one of 2,000)
    assert len(split_rows) == len(whole_rows) == 48 and split_rows[0] == whole_rows[0]
    for mine, theirs in zip(split_rows[1:], whole_rows[1:], strict=True):
        assert [same(a, b) for a, b in zip(mine, theirs, strict=True)] == [True] * len(mine), (mine, theirs)
    assert read(f"rejected/breast-cancer/split{suffix}.jsonl") == read(
        f"rejected/breast-cancer/whole{suffix}.jsonl"
    )
    one = json.loads(read(f"reports/breast-cancer/whole{suffix}.json"))
    merged = json.loads(read(f"reports/breast-cancer/split{suffix}.json"))
    assert merged["rows"] == one["rows"] and merged["quality"] == one["quality"]
    assert merged["model"] == one["model"] and merged["parts"]["count"] == 4
    assert set(merged["drift"]["drifted"]) == set(one["drift"]["drifted"])
    # And nothing is left in staging
    assert aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="staging/")["KeyCount"] == 0


def test_parquet_parts_keep_their_rows_in_order(small_parts: None, demos: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{"id": i, **r} for i, r in enumerate(holdout(demos, 40))]), buffer)
    drop = put("incoming/breast-cancer/rows.parquet", buffer.getvalue(), carry="")
    planned = parts.plan(drop, "run-2", wiring.serving(), wiring.batch_settings())
    for item in json.loads(read(planned["manifest"]["Key"])):
        parts.part(planned, item, wiring.serving(), wiring.batch_settings())
    assert parts.merge(planned, wiring.serving(), wiring.batch_settings())["rows"]["predicted"] == 40
    table = pq.read_table(io.BytesIO(read("predictions/breast-cancer/rows.parquet")))
    assert table.column("id").to_pylist() == list(range(40))


def test_a_run_that_fails_writes_a_failed_report_and_cleans_up(
    small_parts: None, demos: dict[str, Any]
) -> None:
    drop = put("incoming/breast-cancer/doomed.csv", csv_bytes(holdout(demos, 20)))
    parts.plan(drop, "run-3", wiring.serving(), wiring.batch_settings())
    parts.fail(
        drop,
        "run-3",
        {"Error": "States.Timeout", "Cause": json.dumps({"errorMessage": "part 1 ran out of time"})},
    )
    report = json.loads(read("reports/breast-cancer/doomed.csv.json"))
    assert report["status"] == "failed" and "ran out of time" in report["error"]["message"]
    assert report["error"]["code"] == "run_failed" and report["error"]["name"] == "States.Timeout"
    assert aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="staging/")["KeyCount"] == 0


def test_a_run_failed_by_an_aimass_error_reports_its_code(small_parts: None) -> None:
    drop = put("incoming/no-such-model/rows.csv", b"a,b\n1,2\n")
    with pytest.raises(NotFound) as raised:
        parts.step(
            {"step": "plan", "drop": asdict(drop), "run": "run-4"}, wiring.serving(), wiring.batch_settings()
        )
    # What the Catch passes on when the plan task raised it
    error = {"Error": "NotFound", "Cause": json.dumps({"errorMessage": raised.value.message})}
    parts.step(
        {"step": "fail", "drop": asdict(drop), "run": "run-4", "error": error},
        wiring.serving(),
        wiring.batch_settings(),
    )
    report = json.loads(read("reports/no-such-model/rows.csv.json"))
    assert report["error"]["code"] == "not_found" and "no-such-model" in report["error"]["message"]


def test_merge_refuses_a_run_with_a_part_missing_or_failed(small_parts: None, demos: dict[str, Any]) -> None:
    drop = put("incoming/breast-cancer/gappy.csv", csv_bytes(holdout(demos, 40)), carry="")
    planned = parts.plan(drop, "run-5", wiring.serving(), wiring.batch_settings())
    manifest = json.loads(read(planned["manifest"]["Key"]))
    assert len(manifest) == 3
    parts.part(planned, manifest[0], wiring.serving(), wiring.batch_settings())
    # Part 1 never ran; part 2's file is gone, so it fails and says why
    aws.client("s3").delete_object(Bucket=BUCKET, Key=manifest[2]["key"])
    with pytest.raises(ClientError):
        parts.part(planned, manifest[2], wiring.serving(), wiring.batch_settings())
    with pytest.raises(parts.PartFailed, match=r"parts \[1, 2\] of 3 have no report"):
        parts.merge(planned, wiring.serving(), wiring.batch_settings())
    # Nothing was written for the file
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="predictions/breast-cancer/gappy")
    assert listed["KeyCount"] == 0


def test_an_unknown_step_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown batch step 'split'"):
        parts.step({"step": "split"}, wiring.serving(), wiring.batch_settings())


def test_a_truncated_gzip_fails_the_plan_saying_how_many_rows_were_read(
    small_parts: None, demos: dict[str, Any]
) -> None:
    # 200 rows in parts of 16: the truncation at the end is found after 12 whole parts
    data = gzip.compress(csv_bytes(holdout(demos, 50) * 4))
    drop = put("incoming/breast-cancer/cut.csv.gz", data[:-40], carry="")
    with pytest.raises(UnreadableFile, match=r"\(192 rows read before it\)$"):
        parts.plan(drop, "run-cut", wiring.serving(), wiring.batch_settings())
