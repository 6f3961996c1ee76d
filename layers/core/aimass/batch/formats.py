"""Batch files on local disk: which format a name says, records read in chunks, rows written as
they come. Nothing holds a whole file: memory follows the chunk size, not the file size.

CSV (a header row), JSON Lines and Parquet, each optionally gzip-compressed (`.gz`). Parquet needs
pyarrow (the batch function's Arrow layer, the `parquet` extra); the other formats need nothing."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, cast

from aimass.errors import UnsupportedMediaType

if TYPE_CHECKING:
    import numpy as np

Kind = Literal["csv", "jsonl", "parquet"]
SUFFIXES: dict[str, Kind] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class UnreadableFile(Exception):
    """The file cannot be read as its name says (corrupt, not UTF-8, not gzip, not Parquet)."""


@dataclass(frozen=True)
class FileFormat:
    kind: Kind
    gzipped: bool

    @classmethod
    def of(cls, name: str) -> FileFormat:
        lower = name.lower()
        gzipped = lower.endswith(".gz")
        stem = lower[:-3] if gzipped else lower
        kind = next((k for suffix, k in SUFFIXES.items() if stem.endswith(suffix)), None)
        if kind is None:
            raise UnsupportedMediaType(
                f"{name!r} is not a batch file: name it .csv, .jsonl (or .ndjson) or .parquet, optionally "
                "with .gz, in any case",
                [{"loc": ["key"], "message": "unknown file type", "type": "unsupported_format"}],
            )
        return cls(kind, gzipped)

    @property
    def text(self) -> bool:
        """Whether values arrive as text to be parsed by each feature's dtype."""
        return self.kind == "csv"


@dataclass(frozen=True)
class BadRecord:
    """A record that could not be read as one: why, and what it held (a CSV row's fields, a line)."""

    reason: str
    raw: Any


@dataclass
class Chunk:
    """Consecutive records of a file. `first_row` numbers the first one (data rows count from 1; a
    CSV's header is not a row). A record is a dict (JSON Lines), a row of values in `columns` order
    (CSV, Parquet), or a BadRecord."""

    first_row: int
    records: Sequence[Any]
    columns: list[str] | None = None
    # Read by pyarrow (aimass.batch.arrowcsv): the columns asked for, parsed (features as float64,
    # NaN where missing; id and carried columns as text). Its records are then never BadRecords.
    parsed: dict[str, Any] | None = None
    # ... and the features it was asked for as one float64 matrix (rows x features, in their order).
    matrix: np.ndarray | None = None

    def as_dict(self, record: Any) -> dict[str, Any]:
        return record if self.columns is None else dict(zip(self.columns, record, strict=True))


# A binary stream read once as it arrives (an S3 object's body), or written as it goes.
Stream = IO[bytes] | io.RawIOBase
Source = Path | Stream


class Replay(io.RawIOBase):
    """A stream (an S3 object's body, read as it arrives) whose head can be read again: the header
    is read to find the columns and how to read the file, then the file from its start. What is
    read is kept until release(); the next opening after it reads the kept head once more and then
    the stream on, keeping nothing."""

    def __init__(self, stream: Stream) -> None:
        super().__init__()
        self._stream = stream
        self._kept = bytearray()
        self._at = 0
        self._keeping = True
        self._past = False

    def start(self) -> Replay:
        """The stream from its first byte again."""
        if self._past:
            raise ValueError("the stream was read past its head: it cannot start again")
        self._at = 0
        return self

    def release(self) -> None:
        """The next opening is the last: keep nothing from here on."""
        self._keeping = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._at < len(self._kept):
            size = min(len(buffer), len(self._kept) - self._at)
            buffer[:size] = self._kept[self._at : self._at + size]
            self._at += size
            return size
        if not self._keeping:
            self._past, self._kept, self._at = True, bytearray(), 0
        size = cast(io.RawIOBase, self._stream).readinto(buffer)
        if self._keeping and size:
            self._kept += buffer[:size]
            self._at += size
        return int(size or 0)

    def close(self) -> None:
        """Left open: the readers on top close after each look at the head; the stream's owner closes it."""


def open_binary(source: Source, gzipped: bool) -> IO[bytes]:
    """A file's bytes, or a stream's from its start, decompressed when gzipped."""
    if isinstance(source, Path):
        return cast(IO[bytes], gzip.open(source, "rb")) if gzipped else open(source, "rb")
    stream = cast(io.RawIOBase, source.start() if isinstance(source, Replay) else source)
    raw = io.BufferedReader(stream, 1 << 20)
    return cast(IO[bytes], gzip.GzipFile(fileobj=raw) if gzipped else raw)


def _open_text(source: Source, gzipped: bool) -> IO[str]:
    """A file's text, or a stream's (an S3 object's body, read as it arrives)."""
    if isinstance(source, Path) and not gzipped:
        return open(source, encoding="utf-8-sig", newline="")
    return io.TextIOWrapper(open_binary(source, gzipped), encoding="utf-8-sig", newline="")


def _open_text_writer(target: Path | Stream, gzipped: bool) -> IO[str]:
    """A file's text to write, or a stream's (an S3 object written as it comes)."""
    if isinstance(target, Path):
        if gzipped:
            return gzip.open(target, "wt", encoding="utf-8", newline="")
        return open(target, "w", encoding="utf-8", newline="")
    raw = cast(io.RawIOBase, gzip.GzipFile(fileobj=target, mode="wb") if gzipped else target)
    return io.TextIOWrapper(io.BufferedWriter(raw, 1 << 20), encoding="utf-8", newline="")


def _end_text(handle: IO[str], target: Path | Stream) -> None:
    """Close what _open_text_writer opened; a stream is left open (gzip's trailer written), for its
    owner to end (an S3 object's writer commits or aborts it)."""
    if isinstance(target, Path):
        handle.close()
        return
    handle.flush()
    buffered = cast(io.TextIOWrapper, handle).detach()
    buffered.flush()
    raw = cast(io.BufferedWriter, buffered).detach()
    if isinstance(raw, gzip.GzipFile):
        raw.close()  # its trailer; a GzipFile given a stream leaves the stream open


def columns_of(source: Source, fmt: FileFormat) -> list[str] | None:
    """The file's column names where the format declares them up front (CSV header, Parquet
    schema); None for JSON Lines, whose records each say their own."""
    try:
        if fmt.kind == "csv":
            with _open_text(source, fmt.gzipped) as handle:
                return next(csv.reader(handle), [])
        if fmt.kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(source).names)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise UnreadableFile(f"{type(error).__name__}: {error}") from error
    except Exception as error:  # pyarrow's ArrowInvalid and friends: not a Parquet file
        raise UnreadableFile(f"not a readable Parquet file: {error}") from error
    return None


def read_chunks(source: Source, fmt: FileFormat, rows: int, first_row: int = 1) -> Iterator[Chunk]:
    """The file's records, `rows` at a time, numbered from `first_row` (a part of a larger file
    keeps the larger file's numbers). CSV and JSON Lines also read from a binary stream; Parquet
    needs a file (it seeks). Raises UnreadableFile when the file itself is broken (possibly after
    some chunks: a truncated gzip stream is only found at its end)."""
    try:
        if fmt.kind == "csv":
            chunks = _csv_chunks(source, fmt.gzipped, rows)
        elif fmt.kind == "jsonl":
            chunks = _jsonl_chunks(source, fmt.gzipped, rows)
        elif isinstance(source, Path):
            chunks = _parquet_chunks(source, rows)
        else:
            raise TypeError("Parquet is read from a file, not a stream")
        for chunk in chunks:
            chunk.first_row += first_row - 1
            yield chunk
    except UnreadableFile:
        raise
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise UnreadableFile(f"{type(error).__name__}: {error}") from error


def _csv_chunks(source: Source, gzipped: bool, size: int) -> Iterator[Chunk]:
    with _open_text(source, gzipped) as handle:
        lines = iter(handle)
        header = next(csv.reader(lines), None)
        if header is None:
            return
        width, first = len(header), 1
        records: list[Any] = []
        for record in csv_records(lines, width):
            records.append(record)
            if len(records) == size:
                yield Chunk(first, records, header)
                first, records = first + size, []
        if records:
            yield Chunk(first, records, header)


def csv_records(lines: Iterator[str], width: int) -> Iterator[list[str] | BadRecord]:
    """A CSV's data records, each bounded to its line: a quoted field never runs past the line it
    opens on. A stray quote would otherwise swallow every line up to the next quote into one bad
    record, good rows with it; instead its own line is set aside (its text as the raw record, so a
    part of a split file rejects it alike) and reading goes on at the next line. A blank line is no
    record."""
    again: deque[str] = deque()  # lines a swallowing record took, read again
    while True:
        taken: list[str] = []  # the lines the reader took for its current record
        for row in csv.reader(_fed(lines, again, taken)):
            # Within one line, only a quote left open holds the line's end (the file's last line).
            if len(taken) > 1 or (row and row[-1].endswith(("\n", "\r"))):
                yield BadRecord("a quoted field is not closed on its line", taken[0])
                again.extendleft(reversed(taken[1:]))
                break  # the reader is inside the quote: a new one starts on the next line
            if row and len(row) != width:
                yield BadRecord(f"expected {width} fields as in the header, got {len(row)}", row)
            elif row:
                yield row
            taken.clear()
        else:
            return


def _fed(lines: Iterator[str], again: deque[str], taken: list[str]) -> Iterator[str]:
    """The lines to read again, then the rest; each one noted in `taken` as it is handed out."""
    while True:
        line = again.popleft() if again else next(lines, None)
        if line is None:
            return
        taken.append(line)
        yield line


def _jsonl_chunks(source: Source, gzipped: bool, size: int) -> Iterator[Chunk]:
    with _open_text(source, gzipped) as handle:
        first = 1
        records: list[Any] = []
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                records.append(BadRecord(f"not valid JSON: {error.msg} at column {error.colno}", line))
            else:
                records.append(
                    record
                    if isinstance(record, dict)
                    else BadRecord(f"expected an object, got {type(record).__name__}", record)
                )
            if len(records) == size:
                yield Chunk(first, records)
                first, records = first + size, []
        if records:
            yield Chunk(first, records)


def _parquet_chunks(path: Path, size: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = list(parquet.schema_arrow.names)
        first = 1
        for batch in parquet.iter_batches(batch_size=size):
            records = list(zip(*(column.to_pylist() for column in batch.columns), strict=True))
            yield Chunk(first, records, names)
            first += len(records)
    except OSError:
        raise
    except Exception as error:  # pyarrow's ArrowInvalid: not Parquet, or a corrupt page
        raise UnreadableFile(f"not a readable Parquet file: {error}") from error


def gunzipped(path: Path, into: Path) -> Path:
    """A gzipped file decompressed next to where it is staged (Parquet needs to seek)."""
    try:
        with gzip.open(path, "rb") as source, open(into, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
    except (OSError, EOFError) as error:
        raise UnreadableFile(f"{type(error).__name__}: {error}") from error
    return into


# What makes the csv module quote a field (QUOTE_MINIMAL, its default dialect).
_QUOTED = re.compile(r'[,"\r\n]')


def csv_cells(values: list[Any] | np.ndarray) -> list[str]:
    """A column's values as csv.writer writes them (str() of each, None empty, a field with a comma,
    a quote or a line break quoted), a column at a time: its rows are then joined as text, about
    five times faster than csv.writer's per-value work (the tests compare the two). A numpy array
    is written as its list would be."""
    if not isinstance(values, list):  # an array (aimass.batch.columns' floats): no list made first
        if values.dtype.kind == "f" and len(values) >= FLOATS_AT_ONCE:
            return float_cells(values)
        return csv_cells(values.tolist())
    kinds = set(map(type, values))
    if kinds == {float} and len(values) >= FLOATS_AT_ONCE:
        return float_cells(values)
    if kinds <= {float, int, bool}:  # nothing str() gives for these needs quoting
        return list(map(str, values))
    if kinds == {type(None)}:
        return [""] * len(values)
    if kinds <= {str, type(None)}:
        cells = values if str in kinds and len(kinds) == 1 else ["" if v is None else v for v in values]
    else:
        cells = ["" if v is None else v if type(v) is str else str(v) for v in values]
    if _QUOTED.search("\x00".join(cells)) is None:
        return cells
    # Each distinct value quoted once: such columns (flags, rules' fields) repeat a few values.
    quoted = {
        cell: '"' + cell.replace('"', '""') + '"' if _QUOTED.search(cell) else cell for cell in set(cells)
    }
    return [quoted[cell] for cell in cells]


# Below this many values a column's str() is as quick as handing it to pyarrow.
FLOATS_AT_ONCE = 64
# Where repr() writes a float positionally: from 1e-4 up to 1e16 (pyarrow's notation differs from
# 1e15). Outside it, the notation is each writer's own.
_PLAIN = (1e-4, 1e15)


def float_cells(values: list[float] | np.ndarray) -> list[str]:
    """Floats as str() writes them (repr's shortest digits that read back as the same float), the
    column cast by pyarrow at once: about a sixth of str()'s time per value. pyarrow writes the same
    shortest digits in another notation for some values (1e-05 as 0.00001, 1.0 as 1, -0.0 as -0,
    1e+15 for 1000000000000000.0): where its text could differ (not finite, a whole number, outside
    repr's positional range, or written with an exponent) str() writes the cell. The tests compare."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:  # the Arrow layer is not there: str() for all
        return list(map(str, values if isinstance(values, list) else values.tolist()))
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    text = pc.cast(pa.array(array), pa.string())
    cells: list[str] = text.to_pylist()
    size = np.abs(array)
    with np.errstate(invalid="ignore"):
        odd = ~np.isfinite(array) | (array == np.floor(array)) | (size < _PLAIN[0]) | (size >= _PLAIN[1])
    odd |= pc.match_substring(text, "e").to_numpy(zero_copy_only=False)
    at = np.flatnonzero(odd)
    for k, value in zip(at.tolist(), array[at].tolist(), strict=True):
        cells[k] = str(value)
    return cells


class RowWriter:
    """Rows written in one format as they come, to a local file or (CSV, JSON Lines) a binary stream
    such as an S3 object written in parts: dicts (any format), or a column at a time (CSV, Parquet).
    CSV and Parquet columns are fixed by the first write (or `columns`)."""

    def __init__(self, target: Path | Stream, fmt: FileFormat, columns: list[str] | None = None) -> None:
        if fmt.kind == "parquet" and not isinstance(target, Path):
            raise TypeError("Parquet is written to a file (and gzipped whole), not a stream")
        self.target = target
        self.fmt = fmt
        self.columns = columns
        self.count = 0
        self._handle: IO[str] | None = None
        self._parquet: Any = None

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.fmt.kind == "jsonl":
            if self._handle is None:
                self._handle = _open_text_writer(self.target, self.fmt.gzipped)
            self._handle.writelines(json.dumps(row, default=str) + "\n" for row in rows)
            self.count += len(rows)
            return
        columns = self.columns or list(rows[0])
        self.write_columns({c: [row.get(c) for row in rows] for c in columns}, len(rows))

    def write_columns(self, values: Mapping[str, list[Any] | np.ndarray], count: int) -> None:
        """`count` rows given as columns (lists, or numpy arrays); a column not given is empty (null)
        in them."""
        if count == 0:
            return
        if self.columns is None:
            self.columns = list(values)
        filled = [values[c] if c in values else [None] * count for c in self.columns]
        if self.fmt.kind == "parquet":
            self._write_parquet(filled)
        else:
            if self._handle is None:
                self._handle = _open_text_writer(self.target, self.fmt.gzipped)
                csv.writer(self._handle).writerow(self.columns)
            if len(filled) == 1:  # csv.writer quotes a lone empty field: its own rule, its own way
                [only] = filled
                cells = only if isinstance(only, list) else only.tolist()
                csv.writer(self._handle).writerows((cell,) for cell in cells)
                self.count += count
                return
            cells = [csv_cells(column) for column in filled]
            self._handle.write("\r\n".join(map(",".join, zip(*cells, strict=True))) + "\r\n")
        self.count += count

    def _write_parquet(self, filled: list[list[Any] | np.ndarray]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        assert self.columns is not None
        table = pa.Table.from_pydict(dict(zip(self.columns, filled, strict=True)))
        if self._parquet is None:
            # A column null throughout the first chunk has no type yet: it is text from here on.
            schema = pa.schema(
                [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            )
            self._parquet = pq.ParquetWriter(self._parquet_target(), schema)
        self._parquet.write_table(table.cast(self._parquet.schema))

    def close(self) -> None:
        if self._handle is not None:
            _end_text(self._handle, self.target)
            self._handle = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
            self._gzip_parquet(self._parquet_target())
        elif self.count == 0:
            self._write_empty()

    def _parquet_target(self) -> Path:
        """Parquet is written whole, then gzipped when the name asks for it."""
        assert isinstance(self.target, Path)
        return self.target.with_suffix("") if self.fmt.gzipped else self.target

    def _gzip_parquet(self, plain: Path) -> None:
        if self.fmt.gzipped:
            assert isinstance(self.target, Path)
            with open(plain, "rb") as source, gzip.open(self.target, "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            plain.unlink()

    def _write_empty(self) -> None:
        """No rows: still a file, so a reader finds what it expects (a header or schema, or nothing)."""
        if self.fmt.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            target = self._parquet_target()
            schema = pa.schema([pa.field(c, pa.string()) for c in self.columns or []])
            pq.write_table(schema.empty_table(), target)
            self._gzip_parquet(target)
            return
        handle = _open_text_writer(self.target, self.fmt.gzipped)
        if self.fmt.kind == "csv" and self.columns:
            csv.writer(handle).writerow(self.columns)
        _end_text(handle, self.target)
