"""`aimass batch` against a bucket: upload a file under incoming/<model>/, wait for its report,
download the outputs. The same S3 contract any uploader uses (aimass.batch.drop)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from aimass.batch.drop import INCOMING, Drop
from aimass.batch.job import Options

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def s3_client(endpoint: str | None, region: str) -> Any:
    """A client for the bucket's S3: the local stack's endpoint (which takes any credentials, so fake
    ones are used when none are set), or AWS's own when `endpoint` is empty."""
    import boto3

    if endpoint and urlparse(endpoint).hostname in LOOPBACK and "AWS_ACCESS_KEY_ID" not in os.environ:
        from aimass.local.stack import FAKE_CREDENTIALS

        session = boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=region,
        )
    else:
        session = boto3.session.Session(region_name=region)
    return session.client("s3", endpoint_url=endpoint or None)


def metadata_of(options: Options) -> dict[str, str]:
    """The per-file options as the object metadata aimass.batch.drop reads."""
    found = {"aimass-alias": options.alias} if options.alias else {}
    if options.id_column:
        found["aimass-id-column"] = options.id_column
    if options.carry:
        found["aimass-carry"] = ",".join(options.carry)
    if options.version is not None:
        found["aimass-version"] = str(options.version)
    return found


def upload(
    s3: Any, bucket: str, model: str, path: Path, options: Options, progress: Callable[[int], None]
) -> Drop:
    """Put the file under incoming/<model>/<its name>; the drop it makes (its ETag names the version
    the report will be about)."""
    key = f"{INCOMING}{model}/{path.name}"
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": metadata_of(options)}, Callback=progress)
    head = s3.head_object(Bucket=bucket, Key=key)
    return Drop(bucket, key, head["ETag"].strip('"'), head.get("VersionId"))


def wait_for_report(s3: Any, drop: Drop, timeout_s: float, poll_s: float = 0.5) -> dict[str, Any]:
    """The report about this very upload (an older report under the same key is not it)."""
    key = drop.output_keys()["report"]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            report: dict[str, Any] = json.loads(s3.get_object(Bucket=drop.bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            report = {}
        if report.get("file", {}).get("etag") == drop.etag:
            return report
        if time.monotonic() > deadline:
            raise TimeoutError(f"no report at s3://{drop.bucket}/{key} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def split_name(filename: str) -> tuple[str, str]:
    """A batch file's name as stem and format suffixes: ("day1", ".csv.gz")."""
    parts = filename.split(".")
    keep = 2 if parts[-1].lower() == "gz" and len(parts) > 2 else 1
    suffix = "." + ".".join(parts[-keep:]) if len(parts) > 1 else ""
    return filename[: len(filename) - len(suffix)], suffix


def local_outputs(out_dir: Path, filename: str) -> dict[str, Path]:
    """Where a batch file's predictions, rejected rows and report go on this machine."""
    stem, suffix = split_name(filename)
    return {
        "predictions": out_dir / f"{stem}.predictions{suffix}",
        "rejected": out_dir / f"{stem}.rejected.jsonl",
        "report": out_dir / f"{stem}.report.json",
    }


def download(s3: Any, report: dict[str, Any], out_dir: Path, filename: str) -> dict[str, Path]:
    """The report and its outputs, next to each other in out_dir; what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = local_outputs(out_dir, filename)
    targets["report"].write_text(json.dumps(report, indent=2))
    written = {"report": targets["report"]}
    for kind, uri in (report.get("outputs") or {}).items():
        bucket, _, key = uri[len("s3://") :].partition("/")
        s3.download_file(bucket, key, str(targets[kind]))
        written[kind] = targets[kind]
    return written
