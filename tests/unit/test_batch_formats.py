"""Batch files on disk: names, chunked reading of good and broken records, writing, and the two ways
of parsing values (a row at a time, a column at a time) agreeing cell for cell."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aimass.batch.arrowcsv import column_chunks
from aimass.batch.columns import parse_column
from aimass.batch.formats import BadRecord, FileFormat, RowWriter, UnreadableFile, csv_cells, read_chunks
from aimass.batch.rows import value_from_text
from aimass.contracts.registry import Feature
from aimass.errors import UnsupportedMediaType


@pytest.mark.parametrize(
    ("name", "kind", "gzipped"),
    [
        ("a.csv", "csv", False),
        ("dir/B.CSV.GZ", "csv", True),
        ("a.jsonl", "jsonl", False),
        ("a.ndjson.gz", "jsonl", True),
        ("a.parquet", "parquet", False),
        ("a.parquet.gz", "parquet", True),
    ],
)
def test_the_name_says_the_format(name: str, kind: str, gzipped: bool) -> None:
    assert FileFormat.of(name) == FileFormat(kind, gzipped)  # type: ignore[arg-type]


def test_another_name_is_refused_as_unsupported() -> None:
    with pytest.raises(UnsupportedMediaType) as refused:
        FileFormat.of("notes.txt.gz")
    assert refused.value.status == 415


def test_csv_chunks_number_data_rows_and_set_aside_rows_of_the_wrong_width(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    # A BOM before the header, a blank line, a short row
    path.write_text("\ufeffa,b\n1,2\n\n3\n4,5\n6,7\n", encoding="utf-8")
    chunks = list(read_chunks(path, FileFormat.of(path.name), 2))
    assert [(c.first_row, c.columns) for c in chunks] == [(1, ["a", "b"]), (3, ["a", "b"])]
    records = [r for c in chunks for r in c.records]
    assert records[0] == ["1", "2"] and records[2] == ["4", "5"]
    assert isinstance(records[1], BadRecord) and records[1].raw == ["3"]
    assert "expected 2 fields" in records[1].reason


def test_json_lines_set_aside_what_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n[1, 2]\n{broken\n\n{"a": 2}\n'))
    [chunk] = list(read_chunks(path, FileFormat.of(path.name), 10))
    assert chunk.records[0] == {"a": 1} and chunk.records[3] == {"a": 2}
    assert [r.reason.split(":")[0] for r in chunk.records[1:3]] == [
        "expected an object, got list",
        "not valid JSON",
    ]


def test_a_truncated_gzip_stream_is_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n" + b"1,2\n" * 50_000)[:-20])
    with pytest.raises(UnreadableFile):
        list(read_chunks(path, FileFormat.of(path.name), 1000))


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz", "out.parquet", "out.parquet.gz", "out.jsonl"])
def test_a_writer_without_rows_still_writes_the_file_a_reader_expects(tmp_path: Path, name: str) -> None:
    writer = RowWriter(tmp_path / name, FileFormat.of(name), ["id", "label"])
    writer.close()
    path = tmp_path / name
    data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    if ".csv" in name:
        assert data == b"id,label\r\n"
    elif ".parquet" in name:
        import io

        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        assert table.num_rows == 0 and table.column_names == ["id", "label"]
    else:
        assert data == b""


def test_rows_and_columns_written_alike_read_back_alike(tmp_path: Path) -> None:
    by_rows = RowWriter(tmp_path / "rows.csv", FileFormat.of("rows.csv"))
    by_rows.write([{"id": 1, "label": "a", "p": 0.25}, {"id": 2, "label": "b", "p": None}])
    by_rows.close()
    by_columns = RowWriter(tmp_path / "columns.csv", FileFormat.of("columns.csv"))
    by_columns.write_columns({"id": [1, 2], "label": ["a", "b"], "p": [0.25, None]}, 2)
    by_columns.close()
    assert (tmp_path / "rows.csv").read_bytes() == (tmp_path / "columns.csv").read_bytes()
    assert (tmp_path / "rows.csv").read_text().splitlines() == ["id,label,p", "1,a,0.25", "2,b,"]


CELLS = ["1.5", "", "nan", "NA", "abc", "inf", " 2 ", "1e3", "-0", "3.0", "2.5", "1_000", "None"]


@pytest.mark.parametrize("dtype", ["float", "int"])
def test_a_column_at_a_time_reads_each_text_cell_as_one_at_a_time(dtype: str) -> None:
    feature = Feature(name="x", dtype=dtype)  # type: ignore[arg-type]
    values, problems = parse_column(np.array(CELLS, dtype=object), feature, text=True)
    for k, cell in enumerate(CELLS):
        one, problem = value_from_text(feature, cell)
        assert (k in problems) == (problem is not None), cell
        if problem is None:
            assert (one is None and np.isnan(values[k])) or values[k] == one, cell


@pytest.mark.parametrize("dtype", ["float", "int"])
def test_a_column_at_a_time_checks_typed_values_as_one_at_a_time(dtype: str) -> None:
    from aimass.batch.rows import type_problem

    feature = Feature(name="x", dtype=dtype)  # type: ignore[arg-type]
    cells = [1.5, None, 2, True, "3", float("inf"), 4.0]
    values, problems = parse_column(np.array(cells, dtype=object), feature, text=False)
    for k, cell in enumerate(cells):
        problem = None if cell is None else type_problem(feature, cell)
        assert (k in problems) == (problem is not None), cell
        if problem is None:
            assert (cell is None and np.isnan(values[k])) or values[k] == cell, cell


def test_text_cells_that_all_read_as_numbers_are_read_at_once_with_the_same_reasons() -> None:
    # Every cell is one float() reads, so the column is converted whole (no cell read alone)
    cells = np.array(["1.5", " 2 ", "inf", "-inf", "nan", "1e3"], dtype=object)

    floats, float_problems = parse_column(cells, Feature(name="x", dtype="float"), text=True)
    ints, int_problems = parse_column(cells, Feature(name="x", dtype="int"), text=True)

    assert float_problems == {2: "not a finite number: 'inf'", 3: "not a finite number: '-inf'"}
    np.testing.assert_array_equal(floats, [1.5, 2.0, np.nan, np.nan, np.nan, 1000.0])
    assert int_problems == {**float_problems, 0: "not an integer: '1.5'"}
    np.testing.assert_array_equal(ints, [np.nan, 2.0, np.nan, np.nan, np.nan, 1000.0])


def test_typed_cells_that_are_all_numbers_are_read_at_once_with_the_same_reasons() -> None:
    cells = np.array([1, 2.5, None, float("inf"), float("-inf"), 3.0], dtype=object)

    floats, float_problems = parse_column(cells, Feature(name="x", dtype="float"), text=False)
    ints, int_problems = parse_column(cells, Feature(name="x", dtype="int"), text=False)

    assert float_problems == {3: "expected a finite number", 4: "expected a finite number"}
    np.testing.assert_array_equal(floats, [1.0, 2.5, np.nan, np.nan, np.nan, 3.0])
    assert int_problems == {**float_problems, 1: "expected an integer, got 2.5"}
    np.testing.assert_array_equal(ints, [1.0, np.nan, np.nan, np.nan, np.nan, 3.0])


def test_typed_cells_of_other_kinds_are_checked_one_by_one() -> None:
    cells = np.array([1, "2", True, None, 4.5], dtype=object)

    values, problems = parse_column(cells, Feature(name="x", dtype="int"), text=False)

    assert problems == {
        1: "expected a number, got str",
        2: "expected a number, got bool",
        4: "expected an integer, got 4.5",
    }
    np.testing.assert_array_equal(values, [1.0, np.nan, np.nan, np.nan, np.nan])


def test_a_stray_quote_sets_aside_its_own_line_and_the_lines_after_it_are_read(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    # Row 2's quote is never closed; row 4 opens another that row 6's line would have closed.
    path.write_text('a,b\n1,2\n3,"4\n5,6\n7,"8\n9,10"\n11,12\n"x,y\n', encoding="utf-8")
    [chunk] = list(read_chunks(path, FileFormat.of(path.name), 100))
    assert [r if not isinstance(r, BadRecord) else (r.reason, r.raw) for r in chunk.records] == [
        ["1", "2"],
        ("a quoted field is not closed on its line", '3,"4\n'),
        ["5", "6"],
        ("a quoted field is not closed on its line", '7,"8\n'),
        ["9", '10"'],  # a quote inside an unquoted field is text (the value check refuses it)
        ["11", "12"],
        ("a quoted field is not closed on its line", '"x,y\n'),
    ]


def test_quoted_fields_with_commas_and_quotes_on_one_line_are_read_as_csv(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('a,b\r\n"1,5","say ""hi"""\r\n2,3\r\n', encoding="utf-8")
    [chunk] = list(read_chunks(path, FileFormat.of(path.name), 100))
    assert chunk.records == [["1,5", 'say "hi"'], ["2", "3"]]


# Every kind of line a CSV brings, and the header the Python reader reads alike. Chunks of 3 rows:
# some are all clean (pyarrow reads them), some hold one of these (Python's reader reads them).
MESSY_LINES = [
    "i1,1.5,2",
    "i2,,3",  # an empty cell: missing
    "i3,NA,null",  # missing values, spelt as people spell them
    "i4,NaN,None",
    "",  # a blank line: no record
    "i5,1e3,-0.25",
    "i6,abc,1",  # not a number
    "i7,1_000,2",  # Python's float reads it, pyarrow does not
    "i8, 1.5 ,2",  # spaces around a number
    "i9,+nan,1",  # a NaN that is not a missing value
    "i10,inf,1",  # not finite
    "i11,1e400,1",  # not finite once read
    "i12,1,2,3",  # too many fields
    "i13,1",  # too few
    'i14,"2",3',  # quoted
    '"i,15",2,3',  # a quoted comma
    'i16,"4,5',  # a stray quote
    "i17,1.5,2.5",
    "é18,1,2",  # not ASCII
    "i19,1,2.5",  # a fraction in an int feature
    "i20,-1,+2",
    "i21,1,2",
]
FEATURES = {"x": "float", "n": "int"}


def write_messy(path: Path, ending: str, bom: bool, quoted_header: bool) -> None:
    header = '"id","x","n"' if quoted_header else "id,x,n"
    text = ending.join([header, *MESSY_LINES]) + ending
    data = ("\ufeff" if bom else "") + text
    path.write_bytes(gzip.compress(data.encode()) if path.name.endswith(".gz") else data.encode())


@pytest.mark.parametrize("name", ["rows.csv", "rows.csv.gz"])
@pytest.mark.parametrize(("ending", "bom", "quoted_header"), [("\n", False, True), ("\r\n", True, False)])
@pytest.mark.parametrize("size", [3, 5, 100])
def test_pyarrow_reads_what_pythons_reader_reads_and_leaves_it_the_rest(
    tmp_path: Path, name: str, ending: str, bom: bool, quoted_header: bool, size: int
) -> None:
    path = tmp_path / name
    write_messy(path, ending, bom, quoted_header)
    fmt = FileFormat.of(name)
    fast = column_chunks(path, fmt, size, FEATURES, ["id"], first_row=11)
    assert fast is not None
    fast_chunks = list(fast)
    slow_chunks = list(read_chunks(path, fmt, size, first_row=11))
    # The same records, numbered alike, in chunks of the same rows
    assert [(c.first_row, c.columns, list(c.records)) for c in fast_chunks] == [
        (c.first_row, c.columns, c.records) for c in slow_chunks
    ]
    read = [c for c in fast_chunks if c.parsed is not None]
    # pyarrow read the clean chunks, Python's reader the others (all of them in one chunk of 100)
    assert len(read) < len(fast_chunks) and (size == 100 or read)
    for chunk in read:
        # and the values pyarrow read are those the column path parses from the text
        for feature, dtype in FEATURES.items():
            at = chunk.columns.index(feature)  # type: ignore[union-attr]
            cells = np.array([record[at] for record in chunk.records], dtype=object)
            values, problems = parse_column(cells, Feature(name=feature, dtype=dtype), text=True)
            assert problems == {}
            np.testing.assert_array_equal(chunk.parsed[feature], values)  # type: ignore[index]
        assert chunk.parsed["id"] == [record[0] for record in chunk.records]  # type: ignore[index]


@pytest.mark.parametrize(
    "data",
    [
        b"id,x,n\n1,2,3\n4,\x005,6\n",  # a NUL: the csv module refuses the file
        b"id,x,n\n1,2,3\n4,\xff,6\n",  # not UTF-8
        b"id,x,n\r1,2,3\r4,5,6\r",  # old Mac line breaks
        b"id,x,n\n1,2,3\n4,5" + b"5" * 140_000 + b",6\n",  # over the csv module's field limit
        b'"id\n",x,n\n1,2,3\n',  # a header on two lines
        b"id,x,x\n1,2,3\n",  # a name twice
    ],
)
def test_what_pyarrow_could_read_otherwise_is_read_by_python_alike(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(data)
    fmt = FileFormat.of(path.name)

    def outcome(chunks: Any) -> Any:
        try:
            return [(c.first_row, c.columns, list(c.records)) for c in chunks]
        except UnreadableFile as error:
            return type(error)

    fast = column_chunks(path, fmt, 2, FEATURES, ["id"])
    assert outcome(fast if fast is not None else read_chunks(path, fmt, 2)) == outcome(
        read_chunks(path, fmt, 2)
    )


def test_csv_cells_are_what_csv_writer_writes() -> None:
    import csv
    import io
    import random

    pool: list[Any] = ["a", "b,c", 'q"x', "", " sp ", "l\nm", "r\rs", "é", None, 1, 2.5, 1e-7, True, -0.0]
    pool += [float("nan"), 10**20, '""', "1"]
    draw = random.Random(1)
    for _ in range(500):
        columns = [[draw.choice(pool) for _ in range(draw.randint(1, 6))] for _ in range(3)]
        rows = min(map(len, columns))
        columns = [column[:rows] for column in columns]
        expected = io.StringIO()
        csv.writer(expected).writerows(zip(*columns, strict=True))
        cells = [csv_cells(column) for column in columns]
        assert "\r\n".join(map(",".join, zip(*cells, strict=True))) + "\r\n" == expected.getvalue()


EDGE_FLOATS = [0.0, -0.0, 1.0, -3.0, float("nan"), float("inf"), -float("inf"), 1e-7, 1e-5, 1.5e-5, 1e-4]
EDGE_FLOATS += [0.00015, 1e15, 1e16, 1e22, 123456789012345.67, 9999999999999998.0, 5e-324]
EDGE_FLOATS += [2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1 / 3, 12345.678, -2.5e-10]


def test_float_cells_are_what_str_writes_on_edge_and_drawn_values() -> None:
    import random

    draw = random.Random(7)
    rng = np.random.default_rng(7)
    drawn = [
        *rng.random(5000).tolist(),
        *rng.random(5000).astype(np.float32).tolist(),  # a float32 output as .tolist() gives it
        *(10 ** rng.uniform(-8, 18, 5000) * rng.choice([-1, 1], 5000)).tolist(),
        *np.round(rng.normal(0, 1e4, 2000), 2).tolist(),
    ]
    column = [*EDGE_FLOATS, *drawn]
    draw.shuffle(column)
    assert csv_cells(column) == [str(v) for v in column]
    assert csv_cells(EDGE_FLOATS * 4) == [str(v) for v in EDGE_FLOATS * 4]
    # The column path hands its floats over as arrays: written as their lists are, long or short.
    assert csv_cells(np.array(column)) == [str(v) for v in column]
    assert csv_cells(np.array(EDGE_FLOATS[:5])) == [str(v) for v in EDGE_FLOATS[:5]]


@pytest.mark.parametrize("name", ["out.csv", "out.parquet"])
def test_a_float_array_is_written_as_its_list_is(tmp_path: Path, name: str) -> None:
    values = [*EDGE_FLOATS, *np.random.default_rng(2).random(100).tolist()]
    for kind, column in [("list", values), ("array", np.array(values))]:
        writer = RowWriter(tmp_path / f"{kind}-{name}", FileFormat.of(name))
        writer.write_columns({"id": list(range(len(values))), "p": column}, len(values))
        writer.close()
    assert (tmp_path / f"list-{name}").read_bytes() == (tmp_path / f"array-{name}").read_bytes()
