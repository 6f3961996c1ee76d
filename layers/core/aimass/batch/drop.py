"""S3 drop-to-predict: a file put under `incoming/<model>/` is predicted into `predictions/<model>/`,
its bad rows go to `rejected/<model>/` and its report to `reports/<model>/`.

The S3 side of aimass.batch.job: a CSV or JSON Lines object is read as it arrives (a thread reads
ahead) and its outputs are uploaded in parts as they are written, memory bounded whatever its size;
a Parquet object is staged on local disk (Lambda's ephemeral storage) first, as it is read by
seeking, and its predictions uploaded once written. S3 delivers an event at
least once: the batch function (functions/batch/app.py) processes each object version once, so a
duplicate delivery writes nothing twice.

Per-file options are the object's user metadata, set by `aimass batch` or any uploader:
`aimass-id-column`, `aimass-carry` (comma-separated columns), `aimass-alias`, `aimass-version`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from aimass.batch.formats import FileFormat
from aimass.batch.job import Options, Outputs, predict_file
from aimass.batch.results import FileReport, FileSummary
from aimass.errors import AimassError, ValidationFailed, field_error
from aimass.gateways import stepfunctions
from aimass.gateways.s3 import Bucket
from aimass.pipeline import triggers
from aimass.serving.pipeline import RequestPipeline

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import S3Event
    from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord

log = logging.getLogger(__name__)

INCOMING = "incoming/"
# Where the report of a file dropped straight under incoming/ goes: no model's name starts with "_".
NO_MODEL = "_no-model"
CONTENT_TYPES = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


@dataclass(frozen=True)
class BatchSettings:
    """What the batch takes from the settings (aimass.config, built by aimass.wiring): the stack's
    bucket, the rows predicted per call, the drift sample, where files are staged, when and how a
    file goes through the batch state machine instead, and the drift trigger's settings."""

    bucket: str
    chunk_rows: int
    drift_sample_rows: int
    work_dir: Path
    # Files larger than this go through the state machine (unset ARN: every file in one invocation),
    # in parts of part_rows rows, at most map_concurrency at once.
    map_threshold_bytes: int
    part_rows: int
    map_concurrency: int
    state_machine_arn: str | None
    retraining: triggers.DriftRetraining


@dataclass(frozen=True)
class Drop:
    """One object version dropped under incoming/: what an S3 event record names."""

    bucket: str
    key: str
    etag: str
    version_id: str | None = None

    @classmethod
    def from_record(cls, record: S3EventRecord) -> Drop:
        found = record.s3.get_object
        # Keys arrive URL-encoded in S3 events (a space is '+'); the record's `key` is as it arrived.
        return cls(record.s3.bucket.name, unquote_plus(found.key), found.etag, found.version_id)

    @property
    def model(self) -> str:
        """The model the file is for; NO_MODEL for a file dropped straight under incoming/."""
        parts = self.key[len(INCOMING) :].split("/", 1)
        return parts[0] if len(parts) == 2 else NO_MODEL

    @property
    def relative(self) -> str:
        """The file's name under incoming/<model>/, kept in every output's key."""
        return self.key[len(INCOMING) :].split("/", 1)[-1]

    def output_keys(self) -> dict[str, str]:
        model, relative = self.model, self.relative
        return {
            "predictions": f"predictions/{model}/{relative}",
            "rejected": f"rejected/{model}/{relative}.jsonl",
            "report": f"reports/{model}/{relative}.json",
        }


def is_drop(key: str) -> bool:
    """Whether a key names a file dropped under incoming/: incoming/<model>/<file>, or a file with no
    model folder (incoming/<file>, which gets a failed report). Folder markers (a key ending in /)
    are not files."""
    if not key.startswith(INCOMING) or key.endswith("/"):
        return False
    parts = key[len(INCOMING) :].split("/", 1)
    return all(parts)


def drops(event: S3Event, bucket: str) -> list[Drop]:
    """The object versions an S3 event names that are this stack's (in `bucket`) to predict; the
    others are logged and left alone."""
    found = []
    for record in event.records if "Records" in event else ():
        drop = Drop.from_record(record)
        # Lambda's permission for S3 names the account, not the bucket: another bucket could be
        # pointed here. Its files are not this stack's to predict or to write next to.
        if drop.bucket != bucket:
            log.warning("ignoring s3://%s/%s: not this stack's bucket %s", drop.bucket, drop.key, bucket)
            continue
        if not is_drop(drop.key):
            log.warning("ignoring %s: a folder, not a file under incoming/", drop.key)
            continue
        found.append(drop)
    return found


def process(drop: Drop, serving: RequestPipeline, settings: BatchSettings) -> FileSummary:
    """Stage the object, predict it, upload the outputs and the report; the report's summary."""
    bucket = Bucket(drop.bucket)
    with workdir(settings.work_dir) as work:
        try:
            if drop.model == NO_MODEL:
                raise ValidationFailed(
                    f"{drop.key} names no model: drop a file under incoming/<model>/",
                    [field_error(["key"], "no model folder", "no_model")],
                )
            fmt = FileFormat.of(drop.relative)
            head = bucket.head(drop.key, drop.version_id)
            options = options_from(head.metadata, settings)
        except AimassError as error:
            report = _failed(error)
        else:
            machine = settings.state_machine_arn
            if machine and head.size > settings.map_threshold_bytes:
                return start_run(drop, machine)
            report = _predict(drop, fmt, options, work, serving, settings)
    report = write_report(drop, report)
    log.info("batch %s: %s %s", drop.key, report["status"], report.get("rows"))
    return {
        "key": drop.key,
        "status": report["status"],
        "rows": report.get("rows"),
        "report": report_uri(drop),
    }


def _predict(
    drop: Drop,
    fmt: FileFormat,
    options: Options,
    work: Path,
    serving: RequestPipeline,
    settings: BatchSettings,
) -> FileReport:
    """The object predicted as it arrives and its outputs written as they come (docs/batch.md
    "Streaming"); they are at their keys only when it succeeded."""
    bucket = Bucket(drop.bucket)
    keys = drop.output_keys()
    writers = {
        name: bucket.writing(keys[name], CONTENT_TYPES[kind])
        for name, kind in (("predictions", fmt.kind), ("rejected", "jsonl"))
        if kind != "parquet"  # Parquet is written whole, then uploaded
    }
    staged = work / f"predictions-{Path(drop.relative).name}"
    outputs = Outputs(writers.get("predictions", staged), writers["rejected"])
    try:
        if fmt.kind == "parquet":  # read by seeking: staged first
            source = work / Path(drop.relative).name
            bucket.download(drop.key, source, drop.version_id)
            report = predict_file(serving, drop.model, source, fmt, outputs, options)
        else:
            with bucket.reading(drop.key, drop.version_id) as body:
                report = predict_file(serving, drop.model, body, fmt, outputs, options)
        if report["status"] == "succeeded":
            report["outputs"] = {
                "predictions": writers["predictions"].commit()
                if "predictions" in writers
                else bucket.upload(staged, keys["predictions"], CONTENT_TYPES[fmt.kind]),
                "rejected": writers["rejected"].commit(),
            }
    finally:  # a failed file, or an error on the way: its parts removed, nothing at its keys
        for writer in writers.values():
            if not writer.committed:
                writer.abort()
    if report["status"] == "succeeded":
        # Drift over the threshold asks for retraining (docs/pipeline.md)
        report["retraining"] = triggers.request_retraining(
            settings.retraining, drop.model, report, report_uri(drop)
        )
    return report


def report_uri(drop: Drop) -> str:
    return f"s3://{drop.bucket}/{drop.output_keys()['report']}"


def start_run(drop: Drop, machine: str) -> FileSummary:
    """Hand a file too large for one invocation to the batch state machine (aimass.batch.parts
    does the work); its report comes when the run ends. The execution is named after the object
    version, so a second start of the same one finds the first (Step Functions keeps a standard
    execution's name for 90 days)."""
    try:
        execution = stepfunctions.start(machine, run_name(drop), {"drop": asdict(drop)}).execution_arn
    except stepfunctions.ExecutionExists as started:
        execution = started.execution_arn
    log.info("batch %s: too large for one invocation, run %s", drop.key, execution)
    return {
        "key": drop.key,
        "status": "started",
        "rows": None,
        "execution": execution,
        "report": f"s3://{drop.bucket}/{drop.output_keys()['report']}",
    }


def run_name(drop: Drop) -> str:
    """A Step Functions execution name (at most 80 of [A-Za-z0-9_-]) for one object version."""
    digest = hashlib.sha256(
        json.dumps([drop.bucket, drop.key, drop.etag, drop.version_id]).encode()
    ).hexdigest()
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', drop.model)[:40]}-{digest[:32]}"


@contextmanager
def workdir(root: Path) -> Iterator[Path]:
    """A staging folder of its own under `root` (the function's ephemeral storage), removed afterwards."""
    work = root / uuid.uuid4().hex
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def upload_outputs(drop: Drop, fmt: FileFormat, outputs: Outputs) -> dict[str, str]:
    """The staged predictions and rejected rows (local files) to their keys; their URIs."""
    bucket = Bucket(drop.bucket)
    keys = drop.output_keys()
    assert isinstance(outputs.predictions, Path) and isinstance(outputs.rejected, Path)
    return {
        "predictions": bucket.upload(outputs.predictions, keys["predictions"], CONTENT_TYPES[fmt.kind]),
        "rejected": bucket.upload(outputs.rejected, keys["rejected"], CONTENT_TYPES["jsonl"]),
    }


def write_report(drop: Drop, report: FileReport) -> FileReport:
    """The report, naming the file it is about, to reports/<model>/<file>.json; as written."""
    report = {"file": {**asdict(drop), "uri": f"s3://{drop.bucket}/{drop.key}"}, **report}
    Bucket(drop.bucket).put(
        drop.output_keys()["report"], json.dumps(report, indent=2).encode(), "application/json"
    )
    return report


def _failed(error: AimassError) -> FileReport:
    return {
        "status": "failed",
        "error": {"code": error.code, "message": error.message, "rows_read": 0},
        "rows": {"in": 0, "predicted": 0, "rejected": 0},
        "outputs": None,
    }


def options_from(metadata: dict[str, str], settings: BatchSettings) -> Options:
    """Per-file options from the object's user metadata (S3 lower-cases the names); a value that
    cannot be what its name says is refused (ValidationFailed), not ignored: the file would
    otherwise be predicted by another version than asked, or without the columns asked for."""
    carry = tuple(c.strip() for c in metadata.get("aimass-carry", "").split(","))
    if carry == ("",):
        carry = ()
    version = metadata.get("aimass-version", "").strip()
    errors = []
    if version and not re.fullmatch(r"[1-9][0-9]{0,8}", version):
        errors.append(
            field_error(["metadata", "aimass-version"], f"{version!r} is not a version number", "type_error")
        )
    if "" in carry or len(set(carry)) != len(carry):
        errors.append(
            field_error(
                ["metadata", "aimass-carry"],
                f"{metadata['aimass-carry']!r}: expected distinct column names separated by commas",
                "value_error",
            )
        )
    if errors:
        named = "; ".join(f"{d['loc'][1]}: {d['message']}" for d in errors)
        raise ValidationFailed(f"the file's aimass-* metadata is not valid: {named}", errors)
    return Options(
        id_column=metadata.get("aimass-id-column") or None,
        carry=carry,
        alias=metadata.get("aimass-alias") or None,
        version=int(version) if version else None,
        chunk_rows=settings.chunk_rows,
        drift_sample_rows=settings.drift_sample_rows,
    )
