"""An S3 object read ahead as it arrives and written in parts as it comes (moto): the bytes read and
written are the object's, a committed object appears whole at once, an aborted one not at all."""

from __future__ import annotations

import os
from typing import Any

import pytest

from aimass import aws
from aimass.gateways import s3 as s3_gateway
from aimass.gateways.s3 import Bucket

BUCKET = "aimass-test"


def uploads(key: str) -> list[Any]:
    return list(aws.client("s3").list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", []))


def test_an_object_read_ahead_gives_its_bytes_in_order(moto_aws: None) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    Bucket(BUCKET).put("in/blob", data)
    with Bucket(BUCKET).reading("in/blob") as body:
        pieces = []
        while piece := body.read(100_003):
            pieces.append(piece)
    assert b"".join(pieces) == data


def test_an_object_written_in_parts_appears_whole_on_commit(moto_aws: None) -> None:
    data = os.urandom(s3_gateway.PART_BYTES * 2 + 12345)
    writer = Bucket(BUCKET).writing("out/big.csv", "text/csv")
    for at in range(0, len(data), 1_000_003):
        writer.write(data[at : at + 1_000_003])
    # Two parts are uploaded (or on their way) before the end: nothing at the key yet
    assert uploads("out/big.csv") and not Bucket(BUCKET).exists("out/big.csv")
    assert writer.commit() == f"s3://{BUCKET}/out/big.csv"
    found = aws.client("s3").get_object(Bucket=BUCKET, Key="out/big.csv")
    assert found["Body"].read() == data and found["ContentType"] == "text/csv"
    assert uploads("out/big.csv") == []


def test_a_small_object_is_one_put_and_an_empty_one_is_empty(moto_aws: None) -> None:
    for key, data in (("out/small.jsonl", b'{"a": 1}\n'), ("out/empty.jsonl", b"")):
        writer = Bucket(BUCKET).writing(key)
        writer.write(data)
        writer.commit()
        assert Bucket(BUCKET).get(key) == data and uploads(key) == []


def test_an_aborted_object_leaves_nothing_at_its_key_nor_its_parts(moto_aws: None) -> None:
    writer = Bucket(BUCKET).writing("out/failed.csv")
    writer.write(os.urandom(s3_gateway.PART_BYTES + 10))
    writer.abort()
    assert not Bucket(BUCKET).exists("out/failed.csv") and uploads("out/failed.csv") == []


def test_a_part_that_fails_to_upload_is_raised_to_the_writer(moto_aws: None) -> None:
    writer = Bucket(BUCKET).writing("out/refused.csv")
    writer.write(os.urandom(s3_gateway.PART_BYTES))
    # The upload goes away under the writer (aborted elsewhere): its next part is refused
    [upload] = uploads("out/refused.csv")
    aws.client("s3").abort_multipart_upload(Bucket=BUCKET, Key="out/refused.csv", UploadId=upload["UploadId"])
    with pytest.raises(Exception) as raised:  # on the next write or at the latest on commit
        writer.write(os.urandom(s3_gateway.PART_BYTES))
        writer.commit()
    assert upload["UploadId"] in str(raised.value) or "NoSuchUpload" in str(raised.value)
    writer.abort()  # what the batch does after any error: the upload already gone, nothing raised
    assert not Bucket(BUCKET).exists("out/refused.csv") and uploads("out/refused.csv") == []
