"""S3 drop-to-predict through the batch Lambda handler (moto): outputs under their prefixes, per-file
options from object metadata, and a duplicate S3 delivery that writes nothing twice."""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from aimass import aws, wiring
from aimass.local.lambda_runtime import LambdaContext, load_handler
from aimass.local.resources import create_table
from aimass.registration import register_version
from tests.integration.test_batch_job import csv_bytes, holdout

BUCKET = "aimass-test"


@pytest.fixture
def batch(registered: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AIMASS_IDEMPOTENCY_TABLE", "aimass-test-idempotency")
    from aimass.config import settings

    settings.cache_clear()
    create_table("aimass-test-idempotency", "IdempotencyTable")
    yield load_handler("batch")
    settings.cache_clear()


def s3_event(key: str, etag: str, version_id: str | None) -> dict[str, Any]:
    with open("events/s3_incoming_csv.json") as handle:
        event = json.load(handle)
    record = event["Records"][0]["s3"]
    record["bucket"]["name"] = BUCKET
    record["object"].update({"key": key.replace(" ", "+"), "eTag": etag, "versionId": version_id})
    return dict(event)


def drop(key: str, data: bytes, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    put = aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=data, Metadata=metadata or {})
    return s3_event(key, put["ETag"].strip('"'), put.get("VersionId"))


def read(key: str) -> bytes:
    return bytes(aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_a_dropped_csv_is_predicted_into_its_prefixes(batch: Any, demos: dict[str, Any]) -> None:
    rows = holdout(demos, 8)
    data = csv_bytes(rows, {"patient": [f"x{i}" for i in range(8)], "ward": ["w1"] * 8})
    event = drop(
        "incoming/breast-cancer/2026/day one.csv",
        data,
        {"aimass-id-column": "patient", "aimass-carry": "ward"},
    )

    answer = batch(event, LambdaContext(function_name="aimass-batch"))

    [summary] = answer["files"]
    assert summary["status"] == "succeeded" and summary["rows"] == {"in": 8, "predicted": 8, "rejected": 0}
    predicted = list(csv.DictReader(io.StringIO(read("predictions/breast-cancer/2026/day one.csv").decode())))
    assert [p["patient"] for p in predicted] == [f"x{i}" for i in range(8)]
    assert {p["ward"] for p in predicted} == {"w1"}
    assert read("rejected/breast-cancer/2026/day one.csv.jsonl") == b""
    report = json.loads(read("reports/breast-cancer/2026/day one.csv.json"))
    assert report["file"]["key"] == "incoming/breast-cancer/2026/day one.csv"
    assert report["model"]["version"] == 1
    assert report["outputs"]["predictions"] == f"s3://{BUCKET}/predictions/breast-cancer/2026/day one.csv"


def test_a_duplicate_delivery_writes_nothing_twice(batch: Any, demos: dict[str, Any]) -> None:
    event = drop("incoming/breast-cancer/twice.csv", csv_bytes(holdout(demos, 3)))
    first = batch(event, LambdaContext(function_name="aimass-batch"))
    s3 = aws.client("s3")
    written = {
        key: s3.head_object(Bucket=BUCKET, Key=key)["LastModified"]
        for key in ("predictions/breast-cancer/twice.csv", "reports/breast-cancer/twice.csv.json")
    }
    versions_before = len(s3.list_object_versions(Bucket=BUCKET, Prefix="reports/")["Versions"])

    again = batch(copy.deepcopy(event), LambdaContext(function_name="aimass-batch"))

    assert again == first
    assert len(s3.list_object_versions(Bucket=BUCKET, Prefix="reports/")["Versions"]) == versions_before
    assert all(s3.head_object(Bucket=BUCKET, Key=k)["LastModified"] == t for k, t in written.items())


def test_a_new_version_of_the_same_key_is_processed_again(batch: Any, demos: dict[str, Any]) -> None:
    first = batch(drop("incoming/breast-cancer/daily.csv", csv_bytes(holdout(demos, 2))), LambdaContext())
    second = batch(drop("incoming/breast-cancer/daily.csv", csv_bytes(holdout(demos, 5))), LambdaContext())
    assert first["files"][0]["rows"]["in"] == 2 and second["files"][0]["rows"]["in"] == 5
    report = json.loads(read("reports/breast-cancer/daily.csv.json"))
    assert report["rows"]["in"] == 5


def test_a_file_for_an_unknown_model_gets_a_failed_report(batch: Any, demos: dict[str, Any]) -> None:
    answer = batch(drop("incoming/no-such-model/rows.csv", csv_bytes(holdout(demos, 2))), LambdaContext())
    assert answer["files"][0]["status"] == "failed"
    report = json.loads(read("reports/no-such-model/rows.csv.json"))
    assert report["error"]["code"] == "not_found"


def test_a_file_for_a_model_without_aliases_is_predicted_by_the_version_online_serves(
    batch: Any, demos: dict[str, Any]
) -> None:
    # Given a model pushed without an alias (online answers it with its latest version)
    register_version(
        wiring.registry(),
        BUCKET,
        "no-alias",
        demos["breast-cancer"].model,
        "test",
        demos["breast-cancer"].enrichment,
    )
    # When a file is dropped for it with no per-file options
    answer = batch(drop("incoming/no-alias/rows.csv", csv_bytes(holdout(demos, 3))), LambdaContext())
    # Then it is predicted by that version, as a V1 request would be
    assert answer["files"][0]["status"] == "succeeded", answer
    report = json.loads(read("reports/no-alias/rows.csv.json"))
    assert (
        report["model"]["version"]
        == wiring.serving().predict("no-alias", holdout(demos, 1))["model"]["version"]
    )


def test_a_file_in_another_bucket_is_not_this_stacks_to_predict(batch: Any, demos: dict[str, Any]) -> None:
    event = drop("incoming/breast-cancer/elsewhere.csv", csv_bytes(holdout(demos, 2)))
    event["Records"][0]["s3"]["bucket"]["name"] = "someone-elses-bucket"
    assert batch(event, LambdaContext()) == {"files": []}
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="reports/breast-cancer/elsewhere")
    assert listed["KeyCount"] == 0


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.mark.parametrize(
    ("name", "to_bytes"), [("UPPER.CSV", csv_bytes), ("lines.ndjson", jsonl_bytes), ("Lines.NDJSON.GZ", None)]
)
def test_a_name_in_any_case_and_ndjson_are_predicted(
    batch: Any, demos: dict[str, Any], name: str, to_bytes: Any
) -> None:
    data = to_bytes(holdout(demos, 3)) if to_bytes else gzip.compress(jsonl_bytes(holdout(demos, 3)))
    answer = batch(drop(f"incoming/breast-cancer/{name}", data), LambdaContext())
    assert answer["files"][0]["status"] == "succeeded"
    assert answer["files"][0]["rows"] == {"in": 3, "predicted": 3, "rejected": 0}
    assert read(f"predictions/breast-cancer/{name}")


def test_a_file_of_another_format_gets_a_failed_report_saying_why(batch: Any) -> None:
    answer = batch(drop("incoming/breast-cancer/notes.txt", b"hello\n"), LambdaContext())
    assert answer["files"][0]["status"] == "failed"
    report = json.loads(read("reports/breast-cancer/notes.txt.json"))
    assert report["error"]["code"] == "unsupported_media_type" and ".ndjson" in report["error"]["message"]
    assert report["outputs"] is None


def test_a_file_dropped_without_a_model_folder_gets_a_failed_report_and_a_folder_marker_none(
    batch: Any, demos: dict[str, Any]
) -> None:
    # Given a CSV dropped straight under incoming/, and the marker a console makes for a new folder
    answer = batch(drop("incoming/scores.csv", csv_bytes(holdout(demos, 2))), LambdaContext())
    # Then the file's report says what is wrong, under a name no model can have; nothing is predicted
    assert [f["status"] for f in answer["files"]] == ["failed"]
    report = json.loads(read("reports/_no-model/scores.csv.json"))
    assert report["error"]["code"] == "validation_error" and "incoming/<model>/" in report["error"]["message"]
    assert report["outputs"] is None and report["file"]["key"] == "incoming/scores.csv"
    assert batch(drop("incoming/new-folder/", b""), LambdaContext())["files"] == []


@pytest.mark.parametrize(
    ("metadata", "named"),
    [
        ({"aimass-version": "latest"}, "aimass-version: 'latest' is not a version number"),
        ({"aimass-version": "0"}, "aimass-version: '0' is not a version number"),
        ({"aimass-carry": "ward,,bed"}, "aimass-carry: 'ward,,bed': expected distinct column names"),
        ({"aimass-carry": "ward,ward"}, "aimass-carry: 'ward,ward': expected distinct column names"),
    ],
)
def test_object_metadata_that_is_not_valid_fails_the_file_with_nothing_written(
    batch: Any, demos: dict[str, Any], metadata: dict[str, str], named: str
) -> None:
    data = csv_bytes(holdout(demos, 2), {"ward": ["a", "b"], "bed": [1, 2]})
    answer = batch(drop("incoming/breast-cancer/meta.csv", data, metadata), LambdaContext())
    assert answer["files"][0]["status"] == "failed"
    report = json.loads(read("reports/breast-cancer/meta.csv.json"))
    assert report["error"]["code"] == "validation_error" and named in report["error"]["message"]
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="predictions/breast-cancer/meta")
    assert listed["KeyCount"] == 0


def test_a_truncated_gzip_writes_no_predictions_and_its_report_says_so(
    batch: Any, demos: dict[str, Any]
) -> None:
    data = gzip.compress(csv_bytes(holdout(demos, 50) * 100))
    answer = batch(drop("incoming/breast-cancer/cut.csv.gz", data[:-40]), LambdaContext())
    assert answer["files"][0]["status"] == "failed"
    assert answer["files"][0]["rows"] == {"in": 0, "predicted": 0, "rejected": 0}
    report = json.loads(read("reports/breast-cancer/cut.csv.gz.json"))
    assert report["error"]["code"] == "unreadable_file" and report["error"]["rows_read"] >= 2000
    assert report["outputs"] is None
    for prefix in ("predictions/breast-cancer/cut", "rejected/breast-cancer/cut"):
        assert aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)["KeyCount"] == 0


def test_a_file_failing_after_parts_were_uploaded_leaves_no_output_nor_parts(
    batch: Any, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given outputs uploaded in small parts, so that parts are in S3 before the file is found broken
    from aimass.gateways import s3 as s3_gateway

    monkeypatch.setattr(s3_gateway, "PART_BYTES", 4096)
    data = gzip.compress(csv_bytes(holdout(demos, 50) * 100))
    answer = batch(drop("incoming/breast-cancer/parts.csv.gz", data[:-40]), LambdaContext())
    assert answer["files"][0]["status"] == "failed"
    s3 = aws.client("s3")
    for prefix in ("predictions/breast-cancer/parts", "rejected/breast-cancer/parts"):
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["KeyCount"] == 0
        assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []
    report = json.loads(read("reports/breast-cancer/parts.csv.gz.json"))
    assert report["outputs"] is None and report["error"]["rows_read"] >= 2000


def test_a_large_csv_is_predicted_through_a_multipart_upload_alike(
    batch: Any, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given predictions larger than a part (S3's least part, 5 MiB, for all but the last)
    from aimass.gateways import s3 as s3_gateway

    monkeypatch.setattr(s3_gateway, "PART_BYTES", 5 << 20)
    rows = holdout(demos, 50) * 1400
    data = csv_bytes(rows, {"id": [f"patient-{i:06d}-{'x' * 40}" for i in range(len(rows))]})
    answer = batch(drop("incoming/breast-cancer/large.csv", data), LambdaContext())
    assert answer["files"][0]["rows"] == {"in": 70_000, "predicted": 70_000, "rejected": 0}
    predicted = read("predictions/breast-cancer/large.csv")
    assert len(predicted) > 5 << 20
    found = list(csv.DictReader(io.StringIO(predicted.decode())))
    assert [p["id"] for p in found] == [f"patient-{i:06d}-{'x' * 40}" for i in range(len(rows))]
