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
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aimass import aws
from aimass.batch.drop import Drop, options_from, upload_outputs, workdir, write_report
from aimass.batch.formats import BadRecord, FileFormat, gunzipped, read_chunks
from aimass.batch.job import Options, Outputs, drift, predict_file
from aimass.config import settings
from aimass.inference.predictor import Predictor


def staging(drop: Drop, run: str) -> str:
    return f"staging/{drop.model}/{run}/"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def plan(drop: Drop, run: str, predictor: Predictor) -> dict[str, Any]:
    """Split the object into parts; the manifest's location and what every part needs to know."""
    s3 = aws.client("s3")
    started = _now()
    fmt = FileFormat.of(drop.relative)
    version = {"VersionId": drop.version_id} if drop.version_id else {}
    head = s3.head_object(Bucket=drop.bucket, Key=drop.key, **version)
    options = options_from(head.get("Metadata", {}))
    # The version is fixed for the whole file here; a missing model or alias fails the run now.
    model = predictor.load(drop.model, options.version, None if options.version else options.alias)
    prefix = staging(drop, run)
    manifest: list[dict[str, Any]] = []
    with workdir() as work:
        source = work / Path(drop.relative).name
        s3.download_file(drop.bucket, drop.key, str(source), ExtraArgs=version or None)
        readable = FileFormat(fmt.kind, False)
        if fmt.gzipped:
            source = gunzipped(source, work / "plain")
        for index, (path, first_row, rows) in enumerate(_split(source, readable, work)):
            key = f"{prefix}in/part-{index:05d}.{fmt.kind}"
            s3.upload_file(str(path), drop.bucket, key)
            path.unlink()
            manifest.append({"index": index, "key": key, "first_row": first_row, "rows": rows})
    manifest_key = f"{prefix}manifest.json"
    s3.put_object(Bucket=drop.bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    return {
        "drop": asdict(drop),
        "run": run,
        "started_at": started,
        "parts": len(manifest),
        "manifest": {"Bucket": drop.bucket, "Key": manifest_key},
        "options": {**asdict(options), "carry": list(options.carry), "version": model.version.version},
    }


def _split(source: Path, fmt: FileFormat, work: Path) -> Iterator[tuple[Path, int, int]]:
    """Part files of at most batch_part_rows records each, in the file's format: (path, number of
    its first row, rows). Records are copied as they were read; bad ones stay bad for the part."""
    size = settings().batch_part_rows
    if fmt.kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        first = 1
        for index, batch in enumerate(pq.ParquetFile(source).iter_batches(batch_size=size)):
            path = work / f"part-{index}.parquet"
            pq.write_table(pa.Table.from_batches([batch]), path)
            yield path, first, batch.num_rows
            first += batch.num_rows
        return
    for index, chunk in enumerate(read_chunks(source, fmt, size)):
        path = work / f"part-{index}.{fmt.kind}"
        with open(path, "w", encoding="utf-8", newline="") as out:
            if fmt.kind == "csv":
                writer = csv.writer(out)
                writer.writerow(chunk.columns or [])
                writer.writerows(r.raw if isinstance(r, BadRecord) else r for r in chunk.records)
            else:
                for record in chunk.records:
                    if isinstance(record, BadRecord):
                        raw = record.raw
                        line = raw.rstrip("\n") if isinstance(raw, str) else json.dumps(raw)
                    else:
                        line = json.dumps(record)
                    out.write(line + "\n")
        yield path, chunk.first_row, len(chunk.records)


def part(planned: dict[str, Any], item: dict[str, Any], predictor: Predictor) -> dict[str, Any]:
    """Predict one part into staging; its report (with its drift sample) goes there too."""
    drop = Drop(**planned["drop"])
    s3 = aws.client("s3")
    fmt = FileFormat.of(drop.relative)
    part_fmt = FileFormat(fmt.kind, False)
    options = Options(**{**planned["options"], "carry": tuple(planned["options"]["carry"])})
    options = replace(options, first_row=item["first_row"], keep_sample=True)
    prefix = staging(drop, planned["run"])
    index = item["index"]
    with workdir() as work:
        source = work / f"part.{fmt.kind}"
        s3.download_file(drop.bucket, item["key"], str(source))
        outputs = Outputs(work / f"predictions.{fmt.kind}", work / "rejected.jsonl")
        report = predict_file(predictor, drop.model, source, part_fmt, outputs, options)
        if report["status"] == "succeeded":
            s3.upload_file(str(outputs.predictions), drop.bucket, f"{prefix}out/part-{index:05d}.{fmt.kind}")
            s3.upload_file(str(outputs.rejected), drop.bucket, f"{prefix}rejected/part-{index:05d}.jsonl")
    s3.put_object(
        Bucket=drop.bucket, Key=f"{prefix}reports/part-{index:05d}.json", Body=json.dumps(report).encode()
    )
    if report["status"] != "succeeded":
        raise PartFailed(f"part {index}: {report['error']}")
    return {"index": index, "rows": report["rows"]}


class PartFailed(Exception):
    """A part could not be processed (its report says why); the run fails and says so."""


def merge(planned: dict[str, Any], predictor: Predictor) -> dict[str, Any]:
    """The parts' outputs joined in order into the file's outputs, their reports into its report."""
    drop = Drop(**planned["drop"])
    s3 = aws.client("s3")
    fmt = FileFormat.of(drop.relative)
    prefix = staging(drop, planned["run"])
    count = planned["parts"]
    reports = [
        json.loads(s3.get_object(Bucket=drop.bucket, Key=f"{prefix}reports/part-{i:05d}.json")["Body"].read())
        for i in range(count)
    ]
    with workdir() as work:
        predictions = work / "predictions"
        rejected = work / "rejected.jsonl"
        parts = []
        for i in range(count):
            part_path = work / f"part-{i}.{fmt.kind}"
            s3.download_file(drop.bucket, f"{prefix}out/part-{i:05d}.{fmt.kind}", str(part_path))
            parts.append(part_path)
        _join(parts, fmt, predictions)
        with open(rejected, "wb") as out:
            for i in range(count):
                out.write(
                    s3.get_object(Bucket=drop.bucket, Key=f"{prefix}rejected/part-{i:05d}.jsonl")[
                        "Body"
                    ].read()
                )
        outputs = upload_outputs(drop, fmt, Outputs(predictions, rejected))
    report = _merged_report(planned, reports, predictor)
    report["outputs"] = outputs
    write_report(drop, report)
    _remove(drop.bucket, prefix)
    return {"key": drop.key, "status": report["status"], "rows": report["rows"]}


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
    planned: dict[str, Any], reports: list[dict[str, Any]], predictor: Predictor
) -> dict[str, Any]:
    drop = Drop(**planned["drop"])
    rows = {k: sum(r["rows"][k] for r in reports) for k in ("in", "predicted", "rejected")}
    violations: Counter[tuple[str, str]] = Counter()
    rejected_by: Counter[str] = Counter()
    for r in reports:
        violations.update({(v["feature"], v["check"]): v["rows"] for v in r["quality"]["violations"]})
        rejected_by.update(r["quality"]["rejected_by"])
    started = datetime.fromisoformat(planned["started_at"])
    finished = datetime.now(UTC)
    seconds = (finished - started).total_seconds()
    model = reports[0]["model"] if reports else None
    record = predictor.load(drop.model, planned["options"]["version"]).version
    return {
        "status": "succeeded",
        "error": None,
        "model": model,
        "rows": rows,
        "timing": {
            "started_at": planned["started_at"],
            "finished_at": finished.isoformat(timespec="milliseconds"),
            "seconds": round(seconds, 3),
            "rows_per_second": round(rows["in"] / seconds, 1) if seconds > 0 else None,
        },
        "quality": {
            "rows_flagged": sum(r["quality"]["rows_flagged"] for r in reports),
            "anomalies": sum(r["quality"]["anomalies"] for r in reports),
            "violations": [
                {"feature": feature, "check": check, "rows": n}
                for (feature, check), n in sorted(violations.items())
            ],
            "rejected_by": dict(sorted(rejected_by.items())),
        },
        "drift": drift(predictor, record, _pooled_sample(reports)),
        "parts": {"count": len(reports), "run": planned["run"]},
    }


def _pooled_sample(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One uniform sample of the whole file from the parts' samples: each part contributes in
    proportion to the rows it predicted (seeded)."""
    total = sum(r["rows"]["predicted"] for r in reports)
    size = settings().batch_drift_sample_rows
    sampler = random.Random(0)
    pooled: list[dict[str, Any]] = []
    for r in reports:
        sample = r.get("sample") or []
        share = round(size * r["rows"]["predicted"] / total) if total else 0
        pooled += sampler.sample(sample, min(share, len(sample)))
    return pooled


def fail(planned: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    """The report of a run that could not finish: what the Step Functions Catch passed."""
    drop = Drop(**planned["drop"])
    cause = error.get("Cause") or ""
    try:
        message = json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        message = cause
    report = {
        "status": "failed",
        "error": {"code": error.get("Error", "run_failed"), "message": str(message)[:2000]},
        "rows": {"in": 0, "predicted": 0, "rejected": 0},
        "parts": {"run": planned.get("run")},
    }
    write_report(drop, report)
    if planned.get("run"):
        _remove(drop.bucket, staging(drop, planned["run"]))
    return {"key": drop.key, "status": "failed"}


def _remove(bucket: str, prefix: str) -> None:
    s3 = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if found:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": found, "Quiet": True})
