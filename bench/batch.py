"""Benchmark 6: S3 drop-to-predict, end to end and in memory.

- Throughput: a 1M-row breast-cancer CSV put under incoming/ in the embedded S3; the put runs the
  real batch handler (the local stack's S3 notification, in this process), which reads it as it
  arrives, predicts every row, uploads the outputs in parts as they are written, then the report.
  Rows per second from the put to the report, next to pyarrow's own read of the same file (the
  target: at least a third of it) and the ONNX Runtime floor on the same rows in the same run
  (session.run on the ready float32 matrix, in chunks of the batch chunk size and in one call).
- Rules: the job alone on a 200k-row file, the model and its twin with RULES in turn (the target:
  50,000 rows/s with rules).
- Memory: the batch job (aimass.batch.job.predict_file: the file read as a stream, checked,
  predicted and written to streams a chunk at a time, as the function does from and to S3) in a
  fresh process per size, 10k, 1M and 5M rows: its peak RSS, and what it held before the file (the
  model loaded), so that growth with the file size would show. The S3 reader and writers around it
  hold at most 8 blocks of 1 MiB read ahead and 3 parts of 8 MiB per output (aimass.gateways.s3);
  the embedded S3 itself keeps objects in memory and fails to complete a multipart upload of
  several GB, so the largest files are not put through it.

The rows are the demo's held-out rows drawn with replacement, each value times N(1, 0.01), seeded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import aws_env, demo, demo_model
from bench.report import Table

MODEL = "breast-cancer"
THROUGHPUT_ROWS = 1_000_000
MEMORY_ROWS = (10_000, 1_000_000, 5_000_000)
QUICK = {"throughput": 100_000, "memory": (10_000, 100_000, 300_000)}
# The target: end to end at least a third of pyarrow's own read rate, in the same run.
TARGET_SHARE = 1 / 3
BLOCK = 100_000
# The target for models with rules, rows per second of the job, measured on this many rows.
RULES_ROWS = 200_000
RULES_TARGET = 50_000
# A ruleset as a user writes one (the Ruleset contract's example, a flag and a set more): a pre
# rule that rejects, a pre flag, post rules on the model's answer. Every condition has a vector form.
RULES: dict[str, Any] = {
    "hit_policy": "all",
    "rules": [
        {
            "id": "large-tumour",
            "stage": "pre",
            "when": "input.mean_radius > 25.0",
            "then": {"reject": "outside the population the model was trained on"},
        },
        {
            "id": "rough",
            "stage": "pre",
            "when": "input.mean_texture > 25.0 && input.mean_smoothness * 10.0 > 1.1",
            "then": {"flag": "rough, uneven cells"},
        },
        {
            "id": "refer-uncertain",
            "stage": "post",
            "when": "output.probabilities['malignant'] > 0.3 && output.label == 'benign'",
            "then": {"set": {"decision": "refer"}},
        },
        {
            "id": "confirm",
            "stage": "post",
            "when": "output.label == 'malignant' ? output.probabilities['malignant'] > 0.9 : false",
            "then": {"set": {"decision": "confirm", "priority": 1}},
        },
    ],
}

# In a fresh process: the Lambda's processing of one staged object, and its memory.
# The high-water mark is VmHWM (this process image's own), not ru_maxrss: Linux carries ru_maxrss
# over from the parent through fork and exec, and the parent holds the embedded S3's objects.
CHILD = """
import json, sys, time
from pathlib import Path
from aimass import wiring
from aimass.batch.formats import FileFormat
from aimass.batch.job import Options, Outputs, predict_file

def high_water_mb():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

source, folder = Path(sys.argv[1]), Path(sys.argv[2])
serving = wiring.serving()
serving.store.load("breast-cancer", None, "champion")
before = high_water_mb()
started = time.perf_counter()
# Streams in and out, as the function reads and writes S3 objects (aimass.batch.drop).
with open(source, "rb") as body, open(folder / "predictions.csv", "wb") as predictions, open(
    folder / "rejected.jsonl", "wb"
) as rejected:
    outputs = Outputs(predictions, rejected)
    report = predict_file(serving, "breast-cancer", body, FileFormat.of(source.name), outputs, Options())
print(json.dumps({
    "rows_predicted": report["rows"]["predicted"],
    "seconds": time.perf_counter() - started,
    "rss_before_mb": before,
    "peak_rss_mb": high_water_mb(),
}))
"""


def write_rows(path: Path, rows: int, seed: int = 0) -> np.ndarray:
    """A CSV of `rows` rows (an id column and the features), written a block at a time; returns
    its first block's matrix (float32, as the model takes it) for the floor."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    made = demo(MODEL)
    names = [f.name for f in made.enrichment.features]
    rng = np.random.default_rng(seed)
    first: np.ndarray | None = None
    schema = pa.schema([("id", pa.int64()), *[(n, pa.float32()) for n in names]])
    with pa_csv.CSVWriter(path, schema) as out:
        for start in range(0, rows, BLOCK):
            n = min(BLOCK, rows - start)
            block = made.holdout[rng.integers(0, len(made.holdout), n)] * rng.normal(1, 0.01, (n, len(names)))
            block = block.astype(np.float32)  # what the model sees; shorter to write, too
            if first is None:
                first = block
            columns = [
                pa.array(np.arange(start, start + n)),
                *[pa.array(block[:, j]) for j in range(len(names))],
            ]
            out.write_table(pa.Table.from_arrays(columns, names=["id", *names]))
    assert first is not None
    return first


def floor(matrix: np.ndarray, rows: int, chunk: int) -> dict[str, float]:
    """session.run rows per second over `rows` rows (the matrix repeated), in `chunk`-row calls and
    in calls of the whole matrix."""
    from aimass.config import settings
    from aimass.serving.backends.onnx import new_session

    s = settings()
    session = new_session(demo_model(MODEL), s.ort_intra_op_threads, s.ort_inter_op_threads)
    name = session.get_inputs()[0].name
    found = {}
    for label, size in (("chunked", chunk), ("whole", len(matrix))):
        parts = [matrix[i : i + size] for i in range(0, len(matrix), size)]
        done, started = 0, time.perf_counter()
        while done < rows:
            for part in parts:
                session.run(None, {name: part})
                done += len(part)
        found[label] = done / (time.perf_counter() - started)
    return found


def parse_reads(path: Path, runs: int = 3) -> list[float]:
    """Rows per second of reading the CSV into the model's float32 matrix with pyarrow's
    multithreaded C++ reader and nothing else: no checks, no model, no output. A ceiling for any
    CSV job in this process, against which the target can be judged: `runs` reads in a row. The
    first one (the earlier results' figure) pays for starting pyarrow's thread pool and its memory;
    the best is the ceiling the target is judged against."""
    import pyarrow.csv as pa_csv

    found = []
    for _ in range(runs):
        started = time.perf_counter()
        table = pa_csv.read_csv(path)
        matrix = np.column_stack([table.column(i).to_numpy() for i in range(1, table.num_columns)])
        matrix.astype(np.float32)
        found.append(table.num_rows / (time.perf_counter() - started))
    return found


def throughput(stack: Any, rows: int) -> dict[str, Any]:
    from aimass import aws
    from aimass.config import settings
    from aimass.local import notifications

    s3 = aws.client("s3")
    with tempfile.TemporaryDirectory(prefix="aimass-bench-batch-") as folder:
        path = Path(folder) / "rows.csv"
        matrix = write_rows(path, rows)
        size = path.stat().st_size
        key = f"incoming/{MODEL}/bench-{rows}.csv"
        started = time.perf_counter()
        s3.upload_file(str(path), stack.bucket, key)
        uploaded = time.perf_counter() - started
        notifications.drain(timeout=3600)
        seconds = time.perf_counter() - started
        reads = parse_reads(path)
        parsing = max(reads)
    report = json.loads(
        s3.get_object(Bucket=stack.bucket, Key=f"reports/{MODEL}/bench-{rows}.csv.json")["Body"].read()
    )
    if report["status"] != "succeeded" or report["rows"]["predicted"] != rows:
        raise RuntimeError(f"the batch did not predict every row: {report.get('error')} {report['rows']}")
    floors = floor(matrix, rows, settings().batch_chunk_rows)
    ruled = with_rules(stack, min(rows, RULES_ROWS))
    return {
        "rows": rows,
        "file_bytes": size,
        "end_to_end_s": seconds,
        "end_to_end_rows_per_s": rows / seconds,
        "upload_s": uploaded,
        "job_rows_per_s": report["timing"]["rows_per_second"],
        "floor_rows_per_s": floors,
        "parse_ceiling_rows_per_s": parsing,
        "parse_first_read_rows_per_s": reads[0],
        "share_of_chunked_floor": rows / seconds / floors["chunked"],
        "share_of_parse_ceiling": rows / seconds / parsing,
        "with_rules": ruled,
    }


def with_rules(stack: Any, rows: int) -> dict[str, Any]:
    """The job alone (staged file to staged outputs, in this process) on the same kind of file: the
    model as registered, and its twin (the same ONNX file and baseline) with RULES, interleaved."""
    import dataclasses

    from aimass import wiring
    from aimass.batch.formats import FileFormat
    from aimass.batch.job import Options, Outputs, predict_file
    from aimass.contracts.rules import Ruleset
    from aimass.local.demo import register
    from aimass.registration import save_ruleset

    twin = f"{MODEL}-rules"
    register(wiring.registry(), stack.bucket, dataclasses.replace(demo(MODEL), name=twin), "bench")
    save_ruleset(wiring.registry(), twin, Ruleset.model_validate(RULES), "bench")
    serving = wiring.serving()
    found: dict[str, list[float]] = {MODEL: [], twin: []}
    with tempfile.TemporaryDirectory(prefix="aimass-bench-batch-") as folder:
        path = Path(folder) / "rows.csv"
        write_rows(path, rows, seed=1)
        for _ in range(2):
            for name in found:
                outputs = Outputs(Path(folder) / "predictions.csv", Path(folder) / "rejected.jsonl")
                report = predict_file(serving, name, path, FileFormat.of(path.name), outputs, Options())
                if report["status"] != "succeeded" or report["rows"]["in"] != rows:
                    raise RuntimeError(f"the batch failed: {report.get('error')} {report['rows']}")
                found[name].append(rows / report["timing"]["seconds"])
    return {"rows": rows, "without": max(found[MODEL]), "with": max(found[twin])}


def memory(stack: Any, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    found = []
    with tempfile.TemporaryDirectory(prefix="aimass-bench-batch-") as folder:
        env = {**os.environ, **aws_env(stack, Path(folder) / "models")}
        for rows in sizes:
            path = Path(folder) / f"rows-{rows}.csv"
            write_rows(path, rows, seed=rows)
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(path), folder],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"child failed for {rows} rows:\n{done.stderr[-3000:]}")
            child = json.loads(done.stdout.strip().splitlines()[-1])
            if child["rows_predicted"] != rows:
                raise RuntimeError(f"{rows} rows: {child}")
            found.append({"rows": rows, "file_bytes": path.stat().st_size, **child})
            path.unlink()
    return found


def run(stack: Any, quick: bool) -> dict[str, Any]:
    rows = QUICK["throughput"] if quick else THROUGHPUT_ROWS
    sizes = QUICK["memory"] if quick else MEMORY_ROWS
    found = throughput(stack, int(rows))
    return {"throughput": found, "memory": memory(stack, tuple(sizes))}  # type: ignore[arg-type]


def tables(result: dict[str, Any]) -> list[Table]:
    t = result["throughput"]
    speed = Table(
        f"Rows per second: a {t['rows']:,}-row CSV dropped in the embedded S3, vs pyarrow's own read",
        ["what", "rows/s", "share of pyarrow's read", f"target >= {TARGET_SHARE:.2f}"],
        note="End to end: from the start of the upload to the report written (the object read as it "
        "arrives, parse, checks, anomaly score, session.run, write, the outputs uploaded in parts as they "
        "are written). Job: the report's own rows/s (its first chunk read to its outputs written). "
        "pyarrow's read: its multithreaded CSV reader turning the same file into the float32 matrix, "
        "nothing else, in the same run (the best of three reads in a row; the first alone was the earlier "
        "results' peer). Floor: session.run alone on the same "
        "rows as a ready float32 matrix.",
    )
    chunked = t["floor_rows_per_s"]["chunked"]
    ceiling = t["parse_ceiling_rows_per_s"]
    share = t["end_to_end_rows_per_s"] / ceiling
    verdict = "met" if share >= TARGET_SHARE else "not met"
    speed.add("end to end (put -> report)", f"{t['end_to_end_rows_per_s']:,.0f}", f"{share:.3f}", verdict)
    if "upload_s" in t:  # the function's part: from the object written to the report
        after = t["rows"] / (t["end_to_end_s"] - t["upload_s"])
        speed.add("the function (read, job, uploads, report)", f"{after:,.0f}", f"{after / ceiling:.3f}", "")
    speed.add("the job alone", f"{t['job_rows_per_s']:,.0f}", f"{t['job_rows_per_s'] / ceiling:.3f}", "")
    speed.add("pyarrow's read (multithreaded, to the float32 matrix, best of 3)", f"{ceiling:,.0f}", "1", "")
    if "parse_first_read_rows_per_s" in t:  # the earlier results' peer: the first read alone
        first = t["parse_first_read_rows_per_s"]
        speed.add(
            "  its first read alone; end to end's share of it",
            f"{first:,.0f}",
            f"{t['end_to_end_rows_per_s'] / first:.3f}",
            "",
        )
    speed.add("ORT floor, chunks of the batch size", f"{chunked:,.0f}", f"{chunked / ceiling:.1f}", "")
    speed.add("ORT floor, one call per 100k rows", f"{t['floor_rows_per_s']['whole']:,.0f}", "", "")
    tables = [speed]
    ruled = t.get("with_rules")
    if ruled:
        rules = Table(
            f"The job alone with and without rules: a {ruled['rows']:,}-row CSV, rows per second",
            ["model", "rows/s", f"target >= {RULES_TARGET:,}"],
            note="The same model and baseline twice, one with bench.batch.RULES (4 rules, both stages, "
            "all of them with a vector form), run in turn, the best of two each.",
        )
        rules.add("without rules", f"{ruled['without']:,.0f}", "")
        met = "met" if ruled["with"] >= RULES_TARGET else "not met"
        rules.add("with rules", f"{ruled['with']:,.0f}", met)
        tables.append(rules)
    mem = Table(
        "Peak memory of the batch job by file size",
        [
            "rows",
            "file (MB)",
            "RSS before the file (MB)",
            "peak RSS (MB)",
            "growth (MB)",
            "seconds",
            "rows/s",
        ],
        note="A fresh process per size (aimass.batch.job.predict_file on a CSV read as a stream, its outputs "
        "written to streams); peak RSS is the process's VmHWM. Before: imports done and the model loaded.",
    )
    for m in result["memory"]:
        mem.add(
            f"{m['rows']:,}",
            f"{m['file_bytes'] / 1e6:,.0f}",
            f"{m['rss_before_mb']:,.0f}",
            f"{m['peak_rss_mb']:,.0f}",
            f"{m['peak_rss_mb'] - m['rss_before_mb']:,.0f}",
            f"{m['seconds']:,.1f}",
            f"{m['rows'] / m['seconds']:,.0f}",
        )
    return [*tables, mem]
