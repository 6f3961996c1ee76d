"""Files beyond one invocation: the steps of statemachines/batch_predict.asl.json.

`plan` splits the dropped object into part files of `batch_part_rows` rows under
`staging/<model>/<run>/in/` and writes their manifest (a JSON array the Distributed Map reads with
its ItemReader); `part` predicts one part with the same job as a single file, its rows numbered as
in the whole file, into `staging/<model>/<run>/out/`; `merge` joins the parts' predictions and
rejected rows, in order, into the usual outputs and their reports into one report, then removes the
staging objects; `fail` writes the report of a run that could not finish.

Each part is processed by the same model version: `plan` resolves it once for the whole file.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from aimass.batch.drop import (
    BatchSettings,
    Drop,
    options_from,
    report_uri,
    upload_outputs,
    workdir,
    write_report,
)
from aimass.batch.formats import BadRecord, FileFormat, UnreadableFile, gunzipped, read_chunks
from aimass.batch.job import Options, Outputs, Tally, drift, now, predict_file
from aimass.batch.results import FileReport, FileSummary, PartDone, PartItem, Planned
from aimass.errors import AimassError
from aimass.gateways.s3 import Bucket, KeyMissing
from aimass.pipeline import triggers
from aimass.serving.pipeline import RequestPipeline


def staging(drop: Drop, run: str) -> str:
    return f"staging/{drop.model}/{run}/"


def plan(drop: Drop, run: str, serving: RequestPipeline, settings: BatchSettings) -> Planned:
    """Split the object into parts; the manifest's location and what every part needs to know.

    CSV and JSON Lines are split as the object's body arrives, so the object is never on disk
    whole; Parquet is staged first (its footer is at the end)."""
    bucket = Bucket(drop.bucket)
    started = now()
    fmt = FileFormat.of(drop.relative)
    head = bucket.head(drop.key, drop.version_id)
    options = options_from(head.metadata, settings)
    # The version is fixed for the whole file here; a missing model or alias fails the run now.
    model, variant = serving.load_for_file(drop.model, options.version, options.alias)
    prefix = staging(drop, run)
    manifest: list[PartItem] = []
    with workdir(settings.work_dir) as work:
        if fmt.kind == "parquet":
            source = work / Path(drop.relative).name
            bucket.download(drop.key, source, drop.version_id)
            if fmt.gzipped:
                source = gunzipped(source, work / "plain")
            parts = _split_parquet(source, work, settings.part_rows)
        else:
            parts = _split_text(bucket.stream(drop.key, drop.version_id), fmt, work, settings.part_rows)
        for index, (path, first_row, rows) in enumerate(parts):
            key = f"{prefix}in/part-{index:05d}.{fmt.kind}"
            bucket.upload(path, key)
            path.unlink()
            manifest.append({"index": index, "key": key, "first_row": first_row, "rows": rows})
    manifest_key = f"{prefix}manifest.json"
    bucket.put(manifest_key, json.dumps(manifest).encode())
    return {
        "drop": asdict(drop),
        "run": run,
        "started_at": started,
        "parts": len(manifest),
        "manifest": {"Bucket": drop.bucket, "Key": manifest_key},
        "max_concurrency": settings.map_concurrency,
        "options": {**asdict(options), "carry": list(options.carry), "version": model.version.version},
        "variant": variant,
    }


def _split_parquet(source: Path, work: Path, size: int) -> Iterator[tuple[Path, int, int]]:
    """Part files of at most `size` rows: (path, number of its first row, rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = 1
    try:
        batches = pq.ParquetFile(source).iter_batches(batch_size=size)
        for index, batch in enumerate(batches):
            path = work / f"part-{index}.parquet"
            pq.write_table(pa.Table.from_batches([batch]), path)
            yield path, first, batch.num_rows
            first += batch.num_rows
    except OSError:
        raise
    except Exception as error:  # pyarrow's ArrowInvalid: not Parquet, or a corrupt page
        raise UnreadableFile(f"not a readable Parquet file: {error}") from error


def _split_text(body: IO[bytes], fmt: FileFormat, work: Path, size: int) -> Iterator[tuple[Path, int, int]]:
    """CSV or JSON Lines parts, uncompressed, of at most `size` records each. Records are copied as
    they were read; bad ones stay bad for the part to reject. A file found broken part way (a
    truncated gzip) says after how many rows: the run's failed report has only the message."""
    read = 0
    try:
        for path, first_row, count in _text_parts(body, fmt, work, size):
            read += count
            yield path, first_row, count
    except UnreadableFile as error:
        raise UnreadableFile(f"{error} ({read} rows read before it)") from error


def _text_parts(body: IO[bytes], fmt: FileFormat, work: Path, size: int) -> Iterator[tuple[Path, int, int]]:
    for index, chunk in enumerate(read_chunks(body, fmt, size)):
        path = work / f"part-{index}.{fmt.kind}"
        with open(path, "w", encoding="utf-8", newline="") as out:
            if fmt.kind == "csv":
                writer = csv.writer(out)
                writer.writerow(chunk.columns or [])
                for record in chunk.records:
                    if isinstance(record, BadRecord) and isinstance(record.raw, str):
                        out.write(
                            record.raw if record.raw.endswith("\n") else record.raw + "\n"
                        )  # a line as read
                    else:
                        writer.writerow(record.raw if isinstance(record, BadRecord) else record)
            else:
                for record in chunk.records:
                    if isinstance(record, BadRecord):
                        raw = record.raw
                        line = raw.rstrip("\n") if isinstance(raw, str) else json.dumps(raw)
                    else:
                        line = json.dumps(record)
                    out.write(line + "\n")
        yield path, chunk.first_row, len(chunk.records)


def part(planned: Planned, item: PartItem, serving: RequestPipeline, settings: BatchSettings) -> PartDone:
    """Predict one part into staging; its report (with its drift sample) goes there too."""
    drop = Drop(**planned["drop"])
    bucket = Bucket(drop.bucket)
    fmt = FileFormat.of(drop.relative)
    part_fmt = FileFormat(fmt.kind, False)
    options = Options(**{**planned["options"], "carry": tuple(planned["options"]["carry"])})
    options = replace(options, first_row=item["first_row"], keep_sample=True)
    prefix = staging(drop, planned["run"])
    index = item["index"]
    with workdir(settings.work_dir) as work:
        source = work / f"part.{fmt.kind}"
        bucket.download(item["key"], source)
        predictions, rejected = work / f"predictions.{fmt.kind}", work / "rejected.jsonl"
        report = predict_file(serving, drop.model, source, part_fmt, Outputs(predictions, rejected), options)
        if report["status"] == "succeeded":
            bucket.upload(predictions, f"{prefix}out/part-{index:05d}.{fmt.kind}")
            bucket.upload(rejected, f"{prefix}rejected/part-{index:05d}.jsonl")
    bucket.put(f"{prefix}reports/part-{index:05d}.json", json.dumps(report).encode())
    if report["status"] != "succeeded":
        raise PartFailed(f"part {index}: {report['error']}")
    return {"index": index, "rows": report["rows"]}


class PartFailed(Exception):
    """A part could not be processed (its report says why); the run fails and says so."""


def merge(planned: Planned, serving: RequestPipeline, settings: BatchSettings) -> FileSummary:
    """The parts' outputs joined in order into the file's outputs, their reports into its report."""
    drop = Drop(**planned["drop"])
    bucket = Bucket(drop.bucket)
    fmt = FileFormat.of(drop.relative)
    prefix = staging(drop, planned["run"])
    count = planned["parts"]
    reports = _part_reports(bucket, prefix, count)
    with workdir(settings.work_dir) as work:
        predictions = work / "predictions"
        rejected = work / "rejected.jsonl"
        parts = []
        for i in range(count):
            part_path = work / f"part-{i}.{fmt.kind}"
            bucket.download(f"{prefix}out/part-{i:05d}.{fmt.kind}", part_path)
            parts.append(part_path)
        _join(parts, fmt, predictions)
        with open(rejected, "wb") as out:
            for i in range(count):
                out.write(bucket.get(f"{prefix}rejected/part-{i:05d}.jsonl"))
        outputs = upload_outputs(drop, fmt, Outputs(predictions, rejected))
    report = _merged_report(planned, reports, serving, settings.drift_sample_rows)
    report["outputs"] = outputs
    # Drift over the threshold asks for retraining (docs/pipeline.md), as for a single invocation
    report["retraining"] = triggers.request_retraining(
        settings.retraining, drop.model, report, report_uri(drop)
    )
    write_report(drop, report)
    bucket.delete_prefix(prefix)
    return {"key": drop.key, "status": report["status"], "rows": report["rows"]}


def _part_reports(bucket: Bucket, prefix: str, count: int) -> list[FileReport]:
    """Every part's report, or PartFailed naming the parts that did not succeed. The Map's own
    outcome is not enough: a part that failed may leave no trace in it (moto's interpreter makes
    it null and succeeds), and a report is the part's own word that its outputs are complete."""
    reports, missing, failed = [], [], []
    for i in range(count):
        try:
            body = bucket.get(f"{prefix}reports/part-{i:05d}.json")
        except KeyMissing:
            missing.append(i)
            continue
        report = json.loads(body)
        if report["status"] != "succeeded":
            failed.append(f"part {i}: {report['error']['message']}")
        reports.append(report)
    if missing or failed:
        problems = ([f"parts {missing} of {count} have no report"] if missing else []) + failed
        raise PartFailed("; ".join(problems))
    return reports


def _join(parts: list[Path], fmt: FileFormat, target: Path) -> None:
    """Part outputs one after the other: a CSV header once, Parquet row groups appended, gzip when
    the input was gzipped."""
    if fmt.kind == "parquet":
        import pyarrow.parquet as pq

        plain = target.with_suffix(".plain") if fmt.gzipped else target
        writer = None
        for path in parts:
            table = pq.read_table(path)
            if writer is None:
                writer = pq.ParquetWriter(plain, table.schema)
            writer.write_table(table.cast(writer.schema))
        if writer is not None:
            writer.close()
        if fmt.gzipped:
            with open(plain, "rb") as source, gzip.open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        return
    opener = gzip.open if fmt.gzipped else open
    with opener(target, "wb") as out:
        for i, path in enumerate(parts):
            with open(path, "rb") as source:
                if fmt.kind == "csv" and i > 0:
                    source.readline()  # each part repeats the header
                shutil.copyfileobj(source, out, 1 << 20)


def _merged_report(
    planned: Planned, reports: list[FileReport], serving: RequestPipeline, sample_rows: int
) -> FileReport:
    drop = Drop(**planned["drop"])
    tally = Tally()
    for r in reports:
        tally.add_report(r)
    started = datetime.fromisoformat(planned["started_at"])
    seconds = (datetime.now(UTC) - started).total_seconds()
    model = reports[0]["model"] if reports else None
    record = serving.store.load(drop.model, planned["options"]["version"]).version
    return {
        "status": "succeeded",
        "error": None,
        "model": model,
        "variant": planned.get("variant", "pinned"),
        **tally.summary(planned["started_at"], seconds),
        "drift": drift(serving, record, _pooled_sample(reports, sample_rows)),
        "parts": {"count": len(reports), "run": planned["run"]},
    }


def _pooled_sample(reports: list[FileReport], size: int) -> list[dict[str, Any]]:
    """One uniform sample of `size` rows of the whole file from the parts' samples: each part
    contributes in proportion to the rows it predicted (seeded)."""
    total = sum(r["rows"]["predicted"] for r in reports)
    sampler = random.Random(0)
    pooled: list[dict[str, Any]] = []
    for r in reports:
        sample = r.get("sample") or []
        share = round(size * r["rows"]["predicted"] / total) if total else 0
        pooled += sampler.sample(sample, min(share, len(sample)))
    return pooled


# Error names a run can fail with that are not one of aimass's errors, and their report codes.
_FAILURE_CODES = {"UnreadableFile": "unreadable_file", "PartFailed": "part_failed"}


def fail(drop: Drop, run: str, error: dict[str, Any]) -> FileSummary:
    """The report of a run that could not finish, from what the state machine's Catch passed
    (`Error`: the exception's or Step Functions' error name; `Cause`: Lambda's error document or
    text); its staging objects are removed."""
    name = str(error.get("Error") or "States.Runtime")
    cause = error.get("Cause") or ""
    try:
        message = json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        message = cause
    report: FileReport = {
        "status": "failed",
        "error": {"code": _failure_code(name), "message": str(message)[:2000], "name": name},
        "rows": {"in": 0, "predicted": 0, "rejected": 0},
        "outputs": None,
        "parts": {"run": run},
    }
    write_report(drop, report)
    Bucket(drop.bucket).delete_prefix(staging(drop, run))
    return {"key": drop.key, "status": "failed", "rows": report["rows"]}


def _failure_code(name: str) -> str:
    """The code a single invocation's report would give the same error (aimass's error codes)."""
    pending: list[type[AimassError]] = [AimassError]
    while pending:
        kind = pending.pop()
        if kind.__name__ == name:
            return kind.code
        pending += kind.__subclasses__()
    return _FAILURE_CODES.get(name, "run_failed")


def step(
    event: dict[str, Any], serving: RequestPipeline, settings: BatchSettings
) -> Planned | PartDone | FileSummary:
    """One task of statemachines/batch_predict.asl.json, named by the event's `step`."""
    name = event.get("step")
    if name == "plan":
        return plan(Drop(**event["drop"]), event["run"], serving, settings)
    if name == "part":
        return part(event["planned"], event["item"], serving, settings)
    if name == "merge":
        return merge(event["planned"], serving, settings)
    if name == "fail":
        return fail(Drop(**event["drop"]), event["run"], event["error"])
    raise ValueError(f"unknown batch step {name!r}: expected plan, part, merge or fail")
