"""A CSV file read by pyarrow's C++ reader for the column path (aimass.batch.columns), with Python's
reader (aimass.batch.formats) for every chunk pyarrow could read otherwise than it does.

The file is cut into chunks of `rows` records at line boundaries (a record is one line there: the
Python reader never lets a quoted field run past its line). A chunk goes to pyarrow when nothing in
it can be read two ways: no quote, no NUL, no carriage return but in line breaks, no line longer
than the csv module's field limit, valid UTF-8. pyarrow then parses the feature columns as float64
and keeps the id and carried columns as text. A chunk goes to Python's reader instead, giving the
same records, bad ones included, when pyarrow refuses it (a row of the wrong width, a cell that is
not a number) or when what it read needs the cell's own text to say why the row is refused (an
infinite number, a NaN that is not a missing value, a fraction in an integer feature). Either way a
chunk's rows, rejections and outputs are the Python path's; only the time differs.

A whole file goes to Python's reader when its header is not on its first line alone or has a
duplicate name, when a column is asked for both as a number and as text, or when pyarrow is not
installed (it is in the batch function's Arrow layer; the `parquet` extra locally)."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import IO, Any, overload

import numpy as np

from aimass.batch.formats import Chunk, FileFormat, Source, UnreadableFile, csv_records, open_binary
from aimass.quality.columns import MISSING

# Bytes read from the file at a time; chunks are cut out of them at line boundaries. Small enough
# that a gzip stream cut short still yields the chunks before the cut, as the Python reader does.
BLOCK_BYTES = 1 << 18
# The csv module refuses a longer field (csv.field_size_limit()): such a line is Python's to read.
FIELD_LIMIT = csv.field_size_limit()
BOM = b"\xef\xbb\xbf"


def _spellings(word: str) -> set[str]:
    """Every upper/lower-case spelling of a word: the missing-value words are matched ignoring case."""
    return {"".join(letters) for letters in itertools.product(*({c.lower(), c.upper()} for c in word))}


# What Python's reader takes for a missing value, as pyarrow's exact-match null list.
NULLS = sorted(set().union(*(_spellings(word) for word in MISSING)))


class Lines(Sequence[list[str]]):
    """A pyarrow-read chunk's records as the Python reader gives them (each line's fields), split
    only when asked: the rows refused, and columns nothing parsed."""

    def __init__(self, data: bytes, starts: np.ndarray, ends: np.ndarray) -> None:
        self.data = data
        self.starts = starts
        self.ends = ends

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, index: int) -> list[str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[list[str]]: ...
    def __getitem__(self, index: int | slice) -> list[str] | list[list[str]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        # Quote-free lines: the csv module's fields are the line split at each comma.
        return self.data[self.starts[index] : self.ends[index]].decode("utf-8").split(",")


def column_chunks(
    source: Source,
    fmt: FileFormat,
    rows: int,
    numbers: Mapping[str, str],
    texts: Collection[str],
    first_row: int = 1,
) -> Iterator[Chunk] | None:
    """The CSV file's (or stream's: aimass.batch.formats.Replay) records `rows` at a time, numbered
    from `first_row`, as read_chunks gives them; a chunk pyarrow read also has `parsed`: each column
    of `numbers` (name -> the feature's dtype, float or int) as float64, NaN where missing, and each
    column of `texts` as its cells' text; and `matrix`: all of `numbers` as one (NaN throughout
    for a column the file lacks). None when the file is Python's to read whole (see the
    module's docstring)."""
    try:
        import pyarrow  # noqa: F401  (the Arrow layer; without it the Python reader does it all)
    except ImportError:
        return None
    try:
        with open_binary(source, fmt.gzipped) as handle:
            first = handle.readline()
    except (OSError, EOFError) as error:
        raise UnreadableFile(f"{type(error).__name__}: {error}") from error
    header = _header(first.removeprefix(BOM))
    if header is None or len(set(header)) != len(header) or set(numbers) & set(texts):
        return None
    return _chunks(source, fmt, rows, header, numbers, [c for c in texts if c in header], first_row)


def _header(line: bytes) -> list[str] | None:
    """The header's names as the csv module reads them, where they are on the first line alone (its
    quotes, as pyarrow's writer puts them, closed on it)."""
    line = line[:-2] if line.endswith(b"\r\n") else line.removesuffix(b"\n")
    if not line or any(c in line for c in (b"\r", b"\n", b"\x00")):
        return None
    try:
        text = line.decode("utf-8")
        return next(csv.reader([text], strict=True)) if '"' in text else text.split(",")
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return None


def _chunks(
    source: Source,
    fmt: FileFormat,
    rows: int,
    header: list[str],
    numbers: Mapping[str, str],
    texts: list[str],
    first_row: int,
) -> Iterator[Chunk]:
    reader = _ArrowReader(header, numbers, texts)
    row = first_row
    try:
        with open_binary(source, fmt.gzipped) as handle:
            handle.readline()
            for data, starts, ends in _pieces(handle, rows):
                long = len(starts) and int((ends - starts).max()) >= FIELD_LIMIT
                read = None if long else reader.parsed(data, len(starts))
                parsed, matrix = read if read is not None else (None, None)
                if parsed is None:
                    text = io.StringIO(data.decode("utf-8"), newline="")
                    records: Sequence[Any] = list(csv_records(iter(text), len(header)))
                else:
                    records = Lines(data, starts, ends)
                if records:
                    yield Chunk(row, records, header, parsed, matrix)
                    row += len(records)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise UnreadableFile(f"{type(error).__name__}: {error}") from error


class _ArrowReader:
    """pyarrow's options for one file: its header, the features as float64, the texts as text."""

    def __init__(self, header: list[str], numbers: Mapping[str, str], texts: list[str]) -> None:
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        self.pa, self.pa_csv = pa, pa_csv
        self.header = header
        self.numbers = {name: dtype for name, dtype in numbers.items() if name in header}
        self.asked = list(numbers)
        self.present = np.array([name in header for name in self.asked], dtype=bool)
        self.integral = np.array(
            [numbers[name] == "int" and name in header for name in self.asked], dtype=bool
        )
        self.texts = texts
        types = {**{name: pa.float64() for name in self.numbers}, **{name: pa.string() for name in texts}}
        self.parse = pa_csv.ParseOptions(quote_char=False, newlines_in_values=False, ignore_empty_lines=True)
        self.convert = pa_csv.ConvertOptions(
            column_types=types,
            include_columns=[c for c in header if c in types],
            null_values=NULLS,
            strings_can_be_null=False,
            check_utf8=False,  # checked before: a chunk that is not ASCII is decoded first
        )

    def parsed(self, data: bytes, lines: int) -> tuple[dict[str, Any], np.ndarray] | None:
        """The chunk's asked columns, and its features as one matrix; None when the chunk is Python's
        to read."""
        if b'"' in data or b"\x00" in data or (b"\r" in data and data.count(b"\r") != data.count(b"\r\n")):
            return None
        if not data.isascii():
            data.decode("utf-8")  # the Python reader's error, for a file that is not UTF-8
        try:
            table = self.pa_csv.read_csv(
                self.pa.py_buffer(data),
                read_options=self.pa_csv.ReadOptions(
                    column_names=self.header, use_threads=False, block_size=len(data) + 1
                ),
                parse_options=self.parse,
                convert_options=self.convert,
            )
        except self.pa.ArrowInvalid:  # a row of the wrong width, a cell that is not a number
            return None
        if table.num_rows != lines:
            return None
        matrix = self._features(table, lines)
        if matrix is None:
            return None
        parsed: dict[str, Any] = {
            name: matrix[:, j] for j, name in enumerate(self.asked) if name in self.numbers
        }
        for name in self.texts:
            parsed[name] = table.column(name).to_pylist()
        return parsed, matrix

    def _features(self, table: Any, lines: int) -> np.ndarray | None:
        """The features as one matrix, in the order asked (NaN for one the file lacks), its checks a
        few numpy calls for the whole chunk rather than a few per column; None when a value needs
        its cell's text."""
        matrix = np.full((lines, len(self.asked)), np.nan)
        nulls = np.zeros(len(self.asked), dtype=np.int64)
        for j, name in enumerate(self.asked):
            if name in self.numbers:
                column = table.column(name)
                matrix[:, j] = column.to_numpy(zero_copy_only=False)
                nulls[j] = column.null_count
        nan = np.isnan(matrix)
        # The Python path quotes the cell to say why it refuses these: its text is needed.
        if (nan.sum(axis=0)[self.present] != nulls[self.present]).any() or np.isinf(matrix).any():
            return None
        whole = matrix[:, self.integral]
        if ((whole != np.round(whole)) & ~nan[:, self.integral]).any():
            return None
        return matrix


def _pieces(handle: IO[bytes], rows: int) -> Iterator[tuple[bytes, np.ndarray, np.ndarray]]:
    """The file (after its header) in pieces of `rows` non-blank lines (the last fewer), each with
    where its non-blank lines start and end (line breaks left out)."""
    rest = b""
    while True:
        block = handle.read(BLOCK_BYTES)
        data = rest + block if rest else block
        if not data:
            return
        if block:
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            data, rest = data[:cut], data[cut:]
        else:
            rest = b""
        octets = np.frombuffer(data, np.uint8)
        breaks = np.flatnonzero(octets == 10)
        starts = np.concatenate(([0], breaks + 1))
        ends = np.concatenate((breaks, [len(data)]))
        crlf = ends > starts
        crlf[crlf] = octets[ends[crlf] - 1] == 13
        ends = ends - crlf
        line = ends > starts
        starts, ends = starts[line], ends[line]
        done = len(starts) if not block else len(starts) - len(starts) % rows
        for at in range(0, done, rows):
            begin = int(starts[at])
            end = int(starts[at + rows]) if at + rows < len(starts) else len(data)
            yield data[begin:end], starts[at : at + rows] - begin, ends[at : at + rows] - begin
        if done < len(starts):  # a partial piece: read again with the next block
            rest = data[int(starts[done]) :] + rest
        if not block:
            return
