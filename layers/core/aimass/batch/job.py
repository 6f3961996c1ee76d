"""One batch file through a model: every row predicted or rejected with its reasons, and a report.

Pure of AWS: a staged input file in, staged output files and the report out. The rows go through
the online prediction path (RequestPipeline.predict: the same type checks, data-quality policy, anomaly
score and rules), a chunk at a time; a row the path refuses is set aside with the reasons it gave
and the rest of its chunk is predicted. Rows in = rows predicted + rows rejected, always.
"""

from __future__ import annotations

import json
import math
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np

from aimass.batch.arrowcsv import column_chunks
from aimass.batch.columns import ColumnarAnswer, ColumnarModel, Values, scalar
from aimass.batch.formats import (
    BadRecord,
    Chunk,
    FileFormat,
    Replay,
    RowWriter,
    Source,
    Stream,
    UnreadableFile,
    columns_of,
    gunzipped,
    read_chunks,
)
from aimass.batch.results import Counts, DriftSummary, FileReport
from aimass.batch.rows import Reason, RowParser, reason
from aimass.errors import AimassError, ValidationFailed, field_error
from aimass.privacy import NO_MASK, WITHHELD, Masker
from aimass.quality.report import features_matrix, matrix_report, quality_report
from aimass.rules import CompiledRuleset
from aimass.serving.pipeline import RequestPipeline
from aimass.serving.store import LoadedModel

# The columns every flattened prediction may have, after the model's own (label, probabilities).
FINDINGS = ("anomaly_score", "anomalous", "quality", "flags", "rules")
# Keys of a prediction no column was made for (a rule's `set` field first seen after the header).
OTHER = "other"
ROW = "row"

# A row on its way: (row number, the record as read, the instance parsed from it).
Parsed = tuple[int, dict[str, Any], dict[str, Any]]
# ... with its prediction item; or with the reasons it was refused.
Predicted = tuple[int, dict[str, Any], dict[str, Any], Any]
Refused = tuple[int, dict[str, Any], list[Reason]]


@dataclass(frozen=True)
class Options:
    # The column that names each row in the outputs: None means `id` when the file has one, else the
    # row number (in a column `row`).
    id_column: str | None = None
    # Input columns copied next to each prediction.
    carry: tuple[str, ...] = ()
    # Which version predicts: this version number, else this alias, else the one a V1 request gets
    # (champion, else the latest): online and batch resolve a model the same way.
    alias: str | None = None
    version: int | None = None
    chunk_rows: int = 2000
    # A column at a time where the model allows (aimass.batch.columns); False: row by row always.
    columnar: bool = True
    # Where a CSV goes a column at a time, pyarrow reads it (aimass.batch.arrowcsv); False: Python's
    # reader always. The outputs are the same either way.
    arrow_csv: bool = True
    # The number of the file's first row: a part of a larger file keeps the larger file's numbers.
    first_row: int = 1
    # Put the drift sample itself in the report (`sample`), for merging the reports of parts.
    keep_sample: bool = False
    drift_sample_rows: int = 10_000
    seed: int = 0


@dataclass(frozen=True)
class Outputs:
    """Where the outputs go: local files, or binary streams (CSV and JSON Lines: an S3 object written
    in parts as the rows come, aimass.gateways.s3.ObjectWriter), which the caller ends."""

    predictions: Path | Stream
    rejected: Path | Stream


@dataclass
class Tally:
    """A file's counts as its chunks (or its parts' reports) come in."""

    rows_in: int = 0
    predicted: int = 0
    rejected: int = 0
    flagged: int = 0
    anomalies: int = 0
    violations: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)

    def count_findings(self, item: Any) -> None:
        if not isinstance(item, dict):
            return
        if item.get("quality"):
            self.flagged += 1
            self.violations.update((v["feature"], v["check"]) for v in item["quality"])
        if item.get("anomaly", {}).get("anomalous"):
            self.anomalies += 1

    def count_columns(self, answer: ColumnarAnswer) -> None:
        for found in answer.flagged:
            if found:
                self.flagged += 1
                self.violations.update((v["feature"], v["check"]) for v in found)
        self.anomalies += answer.anomalous

    def add_report(self, report: FileReport) -> None:
        """A part's report counted into the whole file's."""
        self.rows_in += report["rows"]["in"]
        self.predicted += report["rows"]["predicted"]
        self.rejected += report["rows"]["rejected"]
        quality = report["quality"]
        self.flagged += quality["rows_flagged"]
        self.anomalies += quality["anomalies"]
        self.violations.update({(v["feature"], v["check"]): v["rows"] for v in quality["violations"]})
        self.rejections.update(quality["rejected_by"])

    def summary(self, started_at: str, seconds: float) -> Counts:
        """The report's rows, timing and quality."""
        return {
            "rows": {"in": self.rows_in, "predicted": self.predicted, "rejected": self.rejected},
            "timing": {
                "started_at": started_at,
                "finished_at": now(),
                "seconds": round(seconds, 3),
                "rows_per_second": round(self.rows_in / seconds, 1) if seconds > 0 else None,
            },
            "quality": {
                "rows_flagged": self.flagged,
                "anomalies": self.anomalies,
                "violations": [
                    {"feature": feature, "check": check, "rows": n}
                    for (feature, check), n in sorted(self.violations.items())
                ],
                "rejected_by": dict(sorted(self.rejections.items())),
            },
        }


# Chunks read and parsed ahead of the one being predicted: pyarrow's parse and the reading of the
# stream (gzip, S3) run on another core while this one checks, predicts and writes.
CHUNKS_AHEAD = 2


def read_ahead(chunks: Iterator[Chunk], depth: int = CHUNKS_AHEAD) -> Generator[Chunk]:
    """The chunks as they come, read by a thread of their own up to `depth` ahead; the reader's
    error raised here, in turn. Stopping early (an error while predicting) stops the reader."""
    found: queue.Queue[tuple[Chunk | None, BaseException | None]] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: tuple[Chunk | None, BaseException | None]) -> bool:
        return _offer(found, stop, item)

    def read() -> None:
        try:
            for chunk in chunks:
                if not put((chunk, None)):
                    return
        except BaseException as error:  # raised to the consumer, in the order the rows came
            put((None, error))
            return
        put((None, None))

    reader = threading.Thread(target=read, name="batch-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            chunk, error = found.get()
            if error is not None:
                raise error
            if chunk is None:
                return
            yield chunk
    finally:
        stop.set()
        reader.join()


def _offer(into: queue.Queue[Any], stop: threading.Event, item: Any) -> bool:
    """Put the item, waiting for room, unless told to stop first; whether it was put."""
    while not stop.is_set():
        try:
            into.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def predict_file(
    serving: RequestPipeline,
    name: str,
    source: Source,
    fmt: FileFormat,
    outputs: Outputs,
    options: Options,
    progress: Callable[[int], None] | None = None,
) -> FileReport:
    """Predict every row of `source` (a file, or a CSV or JSON Lines stream read once as it arrives)
    with model `name`; write the predictions (in the input's
    format) and the rejected rows (JSON Lines), and return the report. A file that cannot be
    processed at all (unreadable, no such model or version) gives a report with `status` "failed"
    and the error, never an exception. `progress` hears the rows done after each chunk."""
    started, clock = now(), time.monotonic()
    tally = Tally()
    report: dict[str, Any] = {"status": "succeeded", "error": None, "model": None}
    try:
        _run(serving, name, source, fmt, outputs, options, tally, report, progress or (lambda _: None))
    except (AimassError, UnreadableFile, ValueError) as error:
        # A failed file writes no outputs, whatever it had predicted before the error (a truncated
        # gzip is found at its end): its rows are all zero, and `rows_read` says how far it got.
        report["status"] = "failed"
        report["error"] = {
            "code": getattr(error, "code", "unreadable_file"),
            "message": getattr(error, "message", str(error)),
            "rows_read": tally.rows_in,
        }
        report["outputs"] = None
        report.pop("drift", None)
        tally = Tally()
    report.update(tally.summary(started, time.monotonic() - clock))
    # Filled in as the file goes, in the key order the report is written in.
    return cast(FileReport, report)


def _run(
    serving: RequestPipeline,
    name: str,
    source: Source,
    fmt: FileFormat,
    outputs: Outputs,
    options: Options,
    tally: Tally,
    report: dict[str, Any],
    progress: Callable[[int], None],
) -> None:
    # The version is fixed here, for the whole file: an alias moving mid-file changes nothing.
    model, variant = serving.load_for_file(name, options.version, options.alias)
    report["model"] = model.ref()
    report["variant"] = variant
    readable = fmt
    if not isinstance(source, Path):
        if fmt.kind == "parquet":
            raise TypeError("Parquet is read from a file (it seeks), not a stream")
        source = Replay(source)  # its header is read before the file is, and perhaps twice
    elif fmt.kind == "parquet" and fmt.gzipped:  # Parquet is read by seeking: not through gzip
        source, readable = gunzipped(source, source.with_suffix("")), FileFormat("parquet", False)
    header = columns_of(source, readable)
    _check_columns(options, header)
    id_column = options.id_column or ("id" if header is not None and "id" in header else None)
    carried = [c for c in options.carry if c != id_column]
    run = _FileRun(
        serving,
        model,
        fmt,
        options,
        tally,
        _Shape(id_column or ROW, carried, fmt.kind == "jsonl", serving.store.masker_for(model.version)),
        id_column,
        RowWriter(outputs.predictions, fmt),
        RowWriter(outputs.rejected, FileFormat("jsonl", False)),
    )
    features = [f.name for f in model.version.signature.features or []]
    columnar = (
        ColumnarModel.of(serving, model, [run.shape.id_column, *carried])
        if options.columnar and fmt.kind != "jsonl"
        else None
    )
    try:
        size = min(options.chunk_rows, serving.max_instances)
        chunks = None
        if columnar is not None and readable.kind == "csv" and options.arrow_csv:
            numbers = {f.name: f.dtype for f in model.version.signature.features or []}
            texts = [run.shape.id_column, *carried]
            chunks = column_chunks(source, readable, size, numbers, texts, options.first_row)
        if isinstance(source, Replay):
            source.release()  # what reads the rows now reads the stream once, from its start
        ahead = read_ahead(chunks or read_chunks(source, readable, size, options.first_row))
        with closing(ahead):  # an error while predicting stops the reader now, not when its traceback goes
            for chunk in ahead:
                bad = [
                    _rejection(
                        chunk.first_row + offset, raw.raw, id_column, [reason(raw.reason, "unreadable_row")]
                    )
                    for offset, raw in enumerate(chunk.records if chunk.parsed is None else ())
                    if isinstance(raw, BadRecord)
                ]
                bad += run.by_columns(columnar, chunk) if columnar is not None else run.by_rows(chunk)
                bad.sort(key=lambda r: int(r[ROW]))
                run.rejected.write([_protected(run.shape.masker, features, b) for b in bad])
                tally.rejected += len(bad)
                tally.rows_in += len(chunk.records)
                tally.rejections.update(b["type"] for b in bad)
                progress(tally.rows_in)
        if run.shape.columns is None and not run.shape.nested:
            run.predictions.columns = [run.shape.id_column, *carried]
    finally:
        run.predictions.close()
        run.rejected.close()
    report["drift"] = drift(serving, model.version, run.sample, run.sampled())
    if options.keep_sample:
        report["sample"] = run.sample_records()


def _check_columns(options: Options, header: list[str] | None) -> None:
    """The id and carried columns the file's metadata names are the file's own, where its header
    says which it has (JSON Lines records each say their own): else every output row would hold
    nulls where the caller asked for them."""
    if header is None:
        return
    asked = [("aimass-id-column", options.id_column)] if options.id_column else []
    asked += [("aimass-carry", c) for c in options.carry]
    missing = [
        field_error(["metadata", key, column], "the file has no such column", "missing_column")
        for key, column in asked
        if column not in header
    ]
    if missing:
        named = ", ".join(f"{d['loc'][1]} {d['loc'][2]!r}" for d in missing)
        raise ValidationFailed(f"the file's metadata names columns it does not have: {named}", missing)


@dataclass
class _FileRun:
    """What a file's chunks share on their way: the model, the counts, the writers, the sample."""

    serving: RequestPipeline
    model: LoadedModel
    fmt: FileFormat
    options: Options
    tally: Tally
    shape: _Shape
    id_column: str | None
    predictions: RowWriter
    rejected: RowWriter
    # The drift sample: instances row by row; a column at a time, the features' rows of a matrix.
    sample: list[dict[str, Any]] = field(default_factory=list)
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.reservoir = Reservoir(self.options.drift_sample_rows, random.Random(self.options.seed))
        self.parser = RowParser(self.model.version.signature, self.fmt.text)
        self.features = [f.name for f in self.model.version.signature.features or []]

    def sampled(self) -> np.ndarray | None:
        """The column path's drift sample (rows x features), or None."""
        return None if self.rows is None else self.rows[: self.reservoir.filled]

    def sample_records(self) -> list[dict[str, Any]]:
        """The drift sample as instances (None where missing), whichever path took it."""
        rows = self.sampled()
        if rows is None:
            return self.sample
        return [
            dict(zip(self.features, [None if v != v else v for v in row], strict=True))
            for row in rows.tolist()
        ]

    def by_rows(self, chunk: Chunk) -> list[dict[str, Any]]:
        """The chunk's records one by one through RequestPipeline.predict; the rejections."""
        good: list[Parsed] = []
        bad: list[dict[str, Any]] = []
        for offset, raw in enumerate(chunk.records):
            if isinstance(raw, BadRecord):
                continue
            raw = chunk.as_dict(raw)
            instance, reasons = self.parser.instance(raw)
            if instance is None:
                bad.append(_rejection(chunk.first_row + offset, raw, self.id_column, reasons))
            else:
                good.append((chunk.first_row + offset, raw, instance))
        record = self.model.version
        answered, refused = _predict(self.serving, record.name, record.version, good)
        bad += [_rejection(row, raw, self.id_column, reasons) for row, raw, reasons in refused]
        for _, _, instance, item in answered:
            self.tally.count_findings(item)
            slot = self._slot()
            if slot is not None:
                self.sample[slot] = instance
        if answered and self.shape.columns is None and not self.shape.nested:
            self.shape.fix(_keys_of(answered, self.serving.store.rules_for(record)))
            self.predictions.columns = self.shape.columns
        self.predictions.write([self.shape.row(row, raw, item) for row, raw, _, item in answered])
        return bad

    def by_columns(self, columnar: ColumnarModel, chunk: Chunk) -> list[dict[str, Any]]:
        """The chunk a column at a time (aimass.batch.columns); the rejections."""
        answer = columnar.answer(chunk, self.fmt.text)
        bad = [
            _rejection(
                chunk.first_row + offset, chunk.as_dict(chunk.records[offset]), self.id_column, reasons
            )
            for offset, reasons in answer.refused.items()
        ]
        kept = answer.kept
        self.tally.count_columns(answer)
        taken = self._slots(len(kept))
        if taken:
            if self.rows is None:
                self.rows = np.full((self.reservoir.size, answer.matrix.shape[1]), np.nan)
            at, slots = np.array(taken).T
            # A slot taken twice in the chunk holds its last row, as one by one (numpy's assignment
            # leaves which of repeated indexes wins unsaid): the last of each slot only.
            slots, last = np.unique(slots[::-1], return_index=True)
            self.rows[slots] = answer.matrix[at[::-1][last]]
        if kept and self.shape.columns is None:
            self.shape.fix(list(answer.columns))
            self.predictions.columns = self.shape.columns
        assert chunk.columns is not None
        where = {name: j for j, name in enumerate(chunk.columns)}
        leading: dict[str, Values] = {}
        parsed = chunk.parsed or {}
        for column in [self.shape.id_column, *self.shape.carried]:
            if column in parsed and column not in self.shape.masker.personal:
                cells = parsed[column]  # pyarrow's column: taken as it is where every row was kept
                leading[column] = cells if len(kept) == len(cells) else [cells[offset] for offset in kept]
            elif column in parsed:
                cells = parsed[column]
                leading[column] = [self.shape.masker.field(column, cells[offset]) for offset in kept]
            elif column in where:
                leading[column] = [
                    self.shape.masker.field(column, chunk.records[offset][where[column]]) for offset in kept
                ]
            elif column == self.shape.id_column:  # no such column: the row number names the row
                leading[column] = [chunk.first_row + offset for offset in kept]
        columns = leading | answer.columns
        # A field the first chunk's answers did not have goes, as the row path puts it, into `other`.
        extra = [key for key in answer.columns if key not in (self.shape.columns or ())]
        if extra:
            others = [
                {key: answer.columns[key][k] for key in extra if answer.columns[key][k] is not None}
                for k in range(len(kept))
            ]
            columns[OTHER] = [json.dumps(other, default=str) if other else None for other in others]
        self.predictions.write_columns(columns, len(kept))
        return bad

    def _slots(self, count: int) -> list[tuple[int, int]]:
        """Where the next `count` predicted rows go in the drift sample: (the row's index among
        them, its place in the sample) for those that go into it; counts the rows."""
        self.tally.predicted += count
        return self.reservoir.take(count)

    def _slot(self) -> int | None:
        """_slots for one row, its place in `sample` made."""
        found = self._slots(1)
        self.sample.extend({} for _ in range(len(self.sample), self.reservoir.filled))
        return found[0][1] if found else None


@dataclass
class Reservoir:
    """A uniform sample of `size` rows out of a stream of unknown length (Li's algorithm L): after n
    rows each is in the sample with the same chance. It draws random numbers only for the rows it
    takes (about size * (1 + ln(n / size)) of them), not one per row: by the row or by the chunk,
    the same rows are taken."""

    size: int
    rng: random.Random
    seen: int = 0
    # The index of the next row to take once the sample is full, and the algorithm's weight.
    next: int = 0
    weight: float = 1.0

    @property
    def filled(self) -> int:
        return min(self.seen, self.size)

    def take(self, count: int) -> list[tuple[int, int]]:
        """The next `count` rows' places in the sample: (index among them, slot) for those taken."""
        start, end = self.seen, self.seen + count
        found = [(i - start, i) for i in range(start, min(end, self.size))]
        if end > self.size and self.seen <= self.size and self.next == 0 and self.size > 0:
            self.weight = self._shrink(1.0)
            self.next = self.size - 1 + self._skip()
        while self.size > 0 and self.next < end and self.next >= self.size:
            found.append((self.next - start, self.rng.randrange(self.size)))
            self.weight = self._shrink(self.weight)
            self.next += self._skip()
        self.seen = end
        return found

    def _shrink(self, weight: float) -> float:
        return weight * math.exp(math.log(1.0 - self.rng.random()) / self.size)

    def _skip(self) -> int:
        """Rows to the next one taken: geometric, with the current weight."""
        if self.weight >= 1.0:
            return 1
        return int(math.log(1.0 - self.rng.random()) / math.log1p(-self.weight)) + 1


def _predict(
    serving: RequestPipeline, name: str, version: int, rows: list[Parsed]
) -> tuple[list[Predicted], list[Refused]]:
    """The rows' predictions, and the rows the prediction path refused with its reasons. A refusal
    names the instances it is about (`loc` ["instances", i, ...]); those are set aside and the
    others predicted again, until none is refused."""
    pending = rows
    refused: list[Refused] = []
    while pending:
        try:
            answer = serving.predict(name, [instance for _, _, instance in pending], version=version)
        except ValidationFailed as error:
            about: dict[int, list[Reason]] = {}
            for detail in error.details:
                loc = detail.get("loc", [])
                if len(loc) >= 2 and loc[0] == "instances" and isinstance(loc[1], int):
                    found = reason(detail["message"], detail["type"], str(loc[2]) if len(loc) > 2 else None)
                    about.setdefault(loc[1], []).append(found)
            if not about:
                raise
            refused += [(pending[i][0], pending[i][1], reasons) for i, reasons in about.items()]
            pending = [p for i, p in enumerate(pending) if i not in about]
            continue
        items = answer["predictions"]
        return [(*parsed, item) for parsed, item in zip(pending, items, strict=True)], refused
    return [], refused


def _protected(masker: Masker, features: list[str], rejection: dict[str, Any]) -> dict[str, Any]:
    """A rejected row as stored: its personal features' values masked, in the record, the id and
    the reasons about them (whose messages may quote the value)."""
    if not masker.active:
        return rejection
    protected = {k: masker.field(k, v) for k, v in rejection.items() if k not in ("reasons", "record")}
    protected["reasons"] = [
        {**r, "message": WITHHELD} if r.get("field") in masker.personal else r for r in rejection["reasons"]
    ]
    protected["record"] = masker.record(rejection["record"], features)
    return protected


def _rejection(row: int, raw: Any, id_column: str | None, reasons: list[Reason]) -> dict[str, Any]:
    """A rejected row as written to rejected/: its number and id, why, and what it held."""
    found: dict[str, Any] = {ROW: row}
    if id_column and isinstance(raw, dict) and id_column in raw:
        found[id_column] = raw[id_column]
    found["reasons"] = reasons
    found["type"] = reasons[0]["type"] if reasons else "rejected"
    found["record"] = raw
    return found


def drift(
    serving: RequestPipeline, record: Any, sample: list[dict[str, Any]], rows: np.ndarray | None = None
) -> DriftSummary | None:
    """Drift and completeness of the predicted rows (a uniform sample of them) against the baseline:
    the sample as instances, or as `rows` of the model's features (the column path's, which the
    report reads as they are rather than from an instance each)."""
    checks = serving.store.checks_for(record)
    statistics = serving.store.statistics_for(record)
    count = len(sample) if rows is None else len(rows)
    if checks is None or statistics is None or not count:
        return None
    constraints = serving.store.constraints_for(record)
    if rows is None:
        found = quality_report(checks, statistics, constraints, sample)
    else:
        names = [f.name for f in record.signature.features or []]
        found = matrix_report(checks, statistics, constraints, *features_matrix(checks, names, rows))
    return {
        "sample_rows": count,
        "features": found["drift"],
        "drifted": sorted(d["feature"] for d in found["drift"] if d["drifted"]),
        "completeness": found["completeness"],
        "thresholds": found["thresholds"],
    }


@dataclass
class _Shape:
    """How a prediction becomes an output row: nested under `prediction` (JSON Lines), or flattened
    into columns fixed by the first predicted chunk (CSV, Parquet)."""

    id_column: str
    carried: list[str]
    nested: bool
    # The id and carried columns that are personal features are written masked (aimass.privacy).
    masker: Masker = NO_MASK
    columns: list[str] | None = None

    def fix(self, keys: list[str]) -> None:
        """The columns: id, carried, the model's answer, the rules' fields, then the findings."""
        seen = dict.fromkeys(keys)
        leading = [self.id_column, *self.carried]
        model_keys = [k for k in seen if k not in FINDINGS and k not in leading]
        findings = [k for k in FINDINGS if k in seen or k in ("quality", "flags")]
        self.columns = [*leading, *model_keys, *findings, OTHER]

    def row(self, row: int, raw: dict[str, Any], item: Any) -> dict[str, Any]:
        out: dict[str, Any] = {self.id_column: raw.get(self.id_column, row) if self.id_column != ROW else row}
        for column in self.carried:
            out[column] = raw.get(column)
        out = self.masker.row(out)
        if self.nested:
            out["prediction"] = item
            return out
        assert self.columns is not None
        flat = dict.fromkeys(self.columns) | out
        other = {}
        for key, value in _flat(item).items():
            if key in flat:
                flat[key] = value
            else:
                other[key] = value
        if other:
            flat[OTHER] = json.dumps(other, default=str)
        return flat


def _keys_of(answered: list[Predicted], rules: CompiledRuleset | None) -> list[str]:
    """The output columns of these predictions, and every field the rules can set."""
    keys: dict[str, None] = {}
    for _, _, _, item in answered:
        keys.update(dict.fromkeys(_flat(item)))
    for rule in rules.ruleset.rules if rules else []:
        keys.update(dict.fromkeys(rule.then.set or {}))
    return list(keys)


def _flat(item: Any) -> dict[str, Any]:
    """A prediction item as scalar columns: `label`, `probability_<class>`, `prediction` (a bare or
    `value` output), `anomaly_score`/`anomalous`, `quality` (JSON), `flags` and `rules` (joined),
    and any field a rule set (JSON when it is not a scalar)."""
    if not isinstance(item, dict):
        item = {"value": item}
    flat: dict[str, Any] = {}
    for key, value in item.items():
        columns_of = _COLUMNS_OF_FIELD.get(key)
        if columns_of is None:
            flat[key] = scalar(value)
        else:
            flat.update(columns_of(key, value))
    return flat


def _probability_columns(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {f"probability_{k}": v for k, v in value.items()}
    if isinstance(value, list):
        return {f"probability_{i}": v for i, v in enumerate(value)}
    return {key: scalar(value)}


def _anomaly_columns(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"anomaly_score": value.get("score"), "anomalous": value.get("anomalous")}
    return {key: scalar(value)}


# The fields of a prediction item that become columns of their own making; any other is one column,
# JSON when it is not a scalar.
_COLUMNS_OF_FIELD: dict[str, Callable[[str, Any], dict[str, Any]]] = {
    "probabilities": _probability_columns,
    "value": lambda _, value: {"prediction": json.dumps(value) if isinstance(value, list | dict) else value},
    "anomaly": _anomaly_columns,
    "quality": lambda key, value: {key: json.dumps(value)},
    "flags": lambda key, value: {key: "; ".join(value)},
    "rules": lambda key, value: {key: ";".join(rule["id"] for rule in value)},
}
