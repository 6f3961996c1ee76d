"""A batch file through a registered model (moto): each format, gzip, bad rows set aside with their
reasons while the good rows are predicted, and a report whose counts always add up."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from aimass import wiring
from aimass.batch.arrowcsv import column_chunks
from aimass.batch.columns import ColumnarModel
from aimass.batch.formats import FileFormat
from aimass.batch.job import Options, Outputs, predict_file
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.rules import Ruleset
from aimass.registration import register_version, save_ruleset

MODEL = "breast-cancer"


def holdout(demos: dict[str, Any], count: int) -> list[dict[str, float]]:
    names = [f.name for f in demos[MODEL].enrichment.features]
    return [dict(zip(names, row, strict=True)) for row in demos[MODEL].holdout[:count].tolist()]


def run(tmp_path: Path, name: str, data: bytes, **options: Any) -> tuple[dict[str, Any], Outputs]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / name
    source.write_bytes(data)
    fmt = FileFormat.of(name)
    outputs = Outputs(tmp_path / f"predicted-{name}", tmp_path / f"rejected-{name}.jsonl")
    report = predict_file(wiring.serving(), MODEL, source, fmt, outputs, Options(**options))
    return report, outputs


def csv_bytes(rows: list[dict[str, Any]], extra: dict[str, list[Any]] | None = None) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, [*(extra or {}), *rows[0]])
    writer.writeheader()
    for i, row in enumerate(rows):
        writer.writerow({**{k: v[i] for k, v in (extra or {}).items()}, **row})
    return out.getvalue().encode()


def read_csv(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:  # type: ignore[operator]
        return list(csv.DictReader(handle))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as handle:  # type: ignore[operator]
        return [json.loads(line) for line in handle if line.strip()]


def test_bad_rows_are_rejected_with_their_reasons_and_the_good_ones_predicted(
    registered: Any, demos: dict[str, Any], tmp_path: Path
) -> None:
    # Given a model that rejects out-of-range rows and has a rule that refuses tiny tumours
    wiring.registry().set_quality_policy(MODEL, QualityPolicy(violations="reject", anomalies="flag"), "test")
    save_ruleset(
        wiring.registry(),
        MODEL,
        Ruleset.model_validate(
            {
                "hit_policy": "all",
                "rules": [
                    {
                        "id": "tiny",
                        "stage": "pre",
                        "when": "input.mean_area < 200.0",
                        "then": {"reject": "too small to call"},
                    },
                    {
                        "id": "refer",
                        "stage": "post",
                        "when": "output.label == 'malignant'",
                        "then": {"set": {"decision": "refer"}},
                    },
                ],
            }
        ),
        "test",
    )
    wiring.serving().store.forget(MODEL)
    rows = holdout(demos, 12)
    rows = [r for r in rows if r["mean_area"] >= 200.0][:10]
    text = csv_bytes(rows, {"id": [f"p{i}" for i in range(10)], "site": ["a"] * 10}).decode().splitlines()
    # row 2: not a number; row 4: a required value missing; row 6: too few fields;
    # row 8: out of the baseline's range (rejected by the policy); row 9: rejected by the rule
    header = text[0].split(",")
    area = header.index("mean_area")
    radius = header.index("mean_radius")

    def edit(line: str, column: int, value: str) -> str:
        cells = line.split(",")
        cells[column] = value
        return ",".join(cells)

    text[2] = edit(text[2], radius, "twelve")
    text[4] = edit(text[4], radius, "")
    text[6] = ",".join(text[6].split(",")[:5])
    text[8] = edit(text[8], radius, "1000")
    text[9] = edit(text[9], area, "150")
    data = ("\n".join(text) + "\n").encode()

    report, outputs = run(tmp_path, "mixed.csv", data, carry=("site",), chunk_rows=4)

    # Then rows in = predicted + rejected, and each bad row is set aside with why
    assert report["status"] == "succeeded", report
    assert report["rows"] == {"in": 10, "predicted": 5, "rejected": 5}
    rejected = read_jsonl(outputs.rejected)
    assert [(r["row"], r.get("id"), r["type"]) for r in rejected] == [
        (2, "p1", "type_error"),
        (4, "p3", "missing"),
        (6, None, "unreadable_row"),
        (8, "p7", "quality_range"),
        (9, "p8", "rule_rejected"),
    ]
    assert rejected[0]["reasons"][0]["field"] == "mean_radius"
    assert "tiny" in rejected[4]["reasons"][0]["message"]
    assert rejected[2]["record"][:2] == ["p5", "a"]  # the short row's fields, as they were
    assert report["quality"]["rejected_by"] == {
        "missing": 1,
        "quality_range": 1,
        "rule_rejected": 1,
        "type_error": 1,
        "unreadable_row": 1,
    }
    # And the predictions keep the id, the carried column, the model's answer and the rules' decisions
    predicted = read_csv(outputs.predictions)
    assert [p["id"] for p in predicted] == ["p0", "p2", "p4", "p6", "p9"]
    assert {p["site"] for p in predicted} == {"a"}
    assert {p["label"] for p in predicted} <= {"benign", "malignant"}
    assert all(
        abs(float(p["probability_benign"]) + float(p["probability_malignant"]) - 1) < 1e-5 for p in predicted
    )
    assert all((p["decision"] == "refer") == (p["label"] == "malignant") for p in predicted)
    assert all(p["anomaly_score"] for p in predicted)
    assert report["model"] == {"name": MODEL, "version": 1, "backend": "lambda"}


def test_json_lines_gzipped_keep_types_and_nest_the_prediction(
    registered: Any, demos: dict[str, Any], tmp_path: Path
) -> None:
    rows = holdout(demos, 3)
    lines = [json.dumps(r) for r in rows]
    lines.insert(1, json.dumps({**rows[0], "mean_radius": "14.2"}))  # a string where a number goes
    lines.insert(2, "{not json")
    data = gzip.compress(("\n".join(lines) + "\n").encode())

    report, outputs = run(tmp_path, "rows.jsonl.gz", data)

    assert report["rows"] == {"in": 5, "predicted": 3, "rejected": 2}
    predicted = read_jsonl(Path(str(outputs.predictions)))
    assert [p["row"] for p in predicted] == [1, 4, 5]
    assert predicted[0]["prediction"]["label"] in ("benign", "malignant")
    assert [r["type"] for r in read_jsonl(outputs.rejected)] == ["type_error", "unreadable_row"]


@pytest.mark.parametrize("name", ["rows.parquet", "rows.parquet.gz"])
def test_parquet_in_parquet_out(registered: Any, demos: dict[str, Any], tmp_path: Path, name: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = holdout(demos, 25)
    table = pa.Table.from_pylist([{"id": 100 + i, **r} for i, r in enumerate(rows)])
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    if name.endswith(".gz"):
        data = gzip.compress(data)

    report, outputs = run(tmp_path, name, data, chunk_rows=10)

    assert report["rows"] == {"in": 25, "predicted": 25, "rejected": 0}
    written = outputs.predictions
    if name.endswith(".gz"):
        written = tmp_path / "plain.parquet"
        written.write_bytes(gzip.decompress(outputs.predictions.read_bytes()))
    result = pq.read_table(written).to_pylist()
    assert [r["id"] for r in result] == list(range(100, 125))
    assert all(r["label"] in ("benign", "malignant") for r in result)


def test_the_report_measures_drift_on_the_predicted_rows(
    registered: Any, demos: dict[str, Any], tmp_path: Path
) -> None:
    rows = holdout(demos, 60)
    shifted = [{**r, "mean_radius": r["mean_radius"] * 1.6} for r in rows]

    report, _ = run(tmp_path, "shifted.csv", csv_bytes(shifted))

    assert report["drift"]["sample_rows"] == 60
    assert "mean_radius" in report["drift"]["drifted"]
    assert "mean_texture" not in report["drift"]["drifted"]


@pytest.mark.parametrize("chunk_rows", [7, 200])
def test_a_full_drift_sample_holds_the_same_rows_a_column_at_a_time_as_row_by_row(
    registered: Any, demos: dict[str, Any], tmp_path: Path, chunk_rows: int
) -> None:
    # Given more rows than the drift sample holds, a missing value among them (a slot of the sample
    # is taken by several rows of one chunk once it is full)
    rows: list[dict[str, Any]] = holdout(demos, 150)
    rows[140]["mean_smoothness"] = None
    data = csv_bytes(rows)
    options = {"chunk_rows": chunk_rows, "drift_sample_rows": 20, "keep_sample": True, "seed": 3}

    # When the file goes a column at a time (pyarrow's matrix, and Python's reader) and row by row
    arrow, _ = run(tmp_path / "arrow", "rows.csv", data, **options)
    python, _ = run(tmp_path / "python", "rows.csv", data, arrow_csv=False, **options)
    by_rows, _ = run(tmp_path / "rows", "rows.csv", data, columnar=False, **options)

    # Then each kept the same sample, and judged the same drift on it
    assert arrow["drift"]["sample_rows"] == 20
    assert arrow["sample"] == python["sample"] == by_rows["sample"]  # type: ignore[typeddict-item]
    assert arrow["drift"] == python["drift"] == by_rows["drift"]


@pytest.mark.parametrize(
    ("name", "data", "rows_in"),
    [("empty.csv", b"", 0), ("header.csv", None, 0), ("empty.jsonl", b"\n\n", 0)],
)
def test_empty_and_header_only_files_predict_nothing_and_say_so(
    registered: Any, demos: dict[str, Any], tmp_path: Path, name: str, data: bytes | None, rows_in: int
) -> None:
    if data is None:
        data = csv_bytes(holdout(demos, 1)).splitlines()[0] + b"\n"
    report, outputs = run(tmp_path, name, data)
    assert report["status"] == "succeeded"
    assert report["rows"] == {"in": rows_in, "predicted": 0, "rejected": 0}
    assert outputs.predictions.exists() and outputs.rejected.exists()


def test_a_corrupt_file_gives_a_failed_report_with_the_error(registered: Any, tmp_path: Path) -> None:
    report, _ = run(tmp_path, "broken.csv.gz", b"this is not gzip at all")
    assert report["status"] == "failed"
    assert "gzip" in report["error"]["message"].lower()
    assert report["rows"]["in"] == report["rows"]["predicted"] + report["rows"]["rejected"]


def test_a_stray_quote_costs_its_own_row_only(registered: Any, demos: dict[str, Any], tmp_path: Path) -> None:
    lines = csv_bytes(holdout(demos, 8)).decode().splitlines(keepends=True)
    # Row 2's first value opens a quote never closed: csv would read rows 2-8 as one field.
    lines[2] = '"' + lines[2]
    report, outputs = run(tmp_path, "quote.csv", "".join(lines).encode())
    assert report["status"] == "succeeded"
    assert report["rows"] == {"in": 8, "predicted": 7, "rejected": 1}
    [rejected] = read_jsonl(outputs.rejected)
    assert rejected["row"] == 2 and rejected["type"] == "unreadable_row"
    assert "not closed on its line" in rejected["reasons"][0]["message"]
    assert rejected["record"] == lines[2]
    assert [int(r["row"]) for r in read_csv(outputs.predictions)] == [1, 3, 4, 5, 6, 7, 8]


def test_a_truncated_gzip_fails_saying_how_far_it_got_and_that_nothing_is_written(
    registered: Any, demos: dict[str, Any], tmp_path: Path
) -> None:
    data = gzip.compress(csv_bytes(holdout(demos, 50) * 100))
    # 5,000 rows in chunks of 1,000: the truncation is only found after the first chunks are predicted
    report, _ = run(tmp_path, "cut.csv.gz", data[: len(data) - 40], chunk_rows=1000)
    assert report["status"] == "failed" and report["error"]["code"] == "unreadable_file"
    assert 1000 <= report["error"]["rows_read"] < 5000
    assert report["rows"] == {"in": 0, "predicted": 0, "rejected": 0}
    assert report["outputs"] is None and "drift" not in report


@pytest.mark.parametrize(
    ("options", "loc"),
    [
        ({"carry": ("ward",)}, ["metadata", "aimass-carry", "ward"]),
        ({"id_column": "patient"}, ["metadata", "aimass-id-column", "patient"]),
    ],
)
def test_metadata_naming_a_column_the_file_lacks_fails_the_file(
    registered: Any, demos: dict[str, Any], tmp_path: Path, options: dict[str, Any], loc: list[str]
) -> None:
    report, _ = run(tmp_path, "rows.csv", csv_bytes(holdout(demos, 3)), **options)
    assert report["status"] == "failed" and report["error"]["code"] == "validation_error"
    assert report["error"]["message"].endswith(f"{loc[1]} {loc[2]!r}")
    assert report["rows"] == {"in": 0, "predicted": 0, "rejected": 0} and report["outputs"] is None


def test_a_model_without_a_champion_is_predicted_by_its_latest_version_as_online(
    registered: Any, demos: dict[str, Any], tmp_path: Path
) -> None:
    # Given a version registered but never made champion, which a V1 request would get
    version = register_version(
        wiring.registry(), "aimass-test", "untried", demos[MODEL].model, "test", demos[MODEL].enrichment
    )
    online = wiring.serving().predict("untried", holdout(demos, 2))
    source = tmp_path / "rows.csv"
    source.write_bytes(csv_bytes(holdout(demos, 2)))
    outputs = Outputs(tmp_path / "predicted.csv", tmp_path / "rejected.jsonl")
    # When a file is dropped for it without naming a version or an alias
    report = predict_file(wiring.serving(), "untried", source, FileFormat.of("rows.csv"), outputs, Options())
    # Then the same version predicts it
    assert report["status"] == "succeeded", report
    assert online["model"]["version"] == version.version
    assert report["model"] == {"name": "untried", "version": version.version, "backend": "lambda"}
    assert report["rows"] == {"in": 2, "predicted": 2, "rejected": 0}


def test_a_file_naming_an_alias_the_model_lacks_gives_a_failed_report(
    registered: Any, demos: dict[str, Any], tmp_path: Path
) -> None:
    # Given a model whose versions have no alias
    register_version(
        wiring.registry(), "aimass-test", "untried", demos[MODEL].model, "test", demos[MODEL].enrichment
    )
    source = tmp_path / "rows.csv"
    source.write_bytes(csv_bytes(holdout(demos, 2)))
    outputs = Outputs(tmp_path / "predicted.csv", tmp_path / "rejected.jsonl")
    # When a file asks for the champion by name
    options = Options(alias="champion")
    report = predict_file(wiring.serving(), "untried", source, FileFormat.of("rows.csv"), outputs, options)
    # Then nothing is predicted by another version: the report says why
    assert report["status"] == "failed"
    assert report["error"]["code"] == "not_found" and "champion" in report["error"]["message"]
    assert report["rows"] == {"in": 0, "predicted": 0, "rejected": 0}


@pytest.mark.parametrize("policy", ["flag", "reject", "flag-violations-reject-anomalies"])
@pytest.mark.parametrize("name", ["messy.csv", "messy.parquet"])
def test_a_column_at_a_time_gives_what_row_by_row_gives(
    registered: Any, demos: dict[str, Any], tmp_path: Path, policy: str, name: str
) -> None:
    # Given a model whose policy flags (or rejects) findings, or flags the values out of range and
    # rejects the anomalies (rows flagged among rows refused), and a file with every kind of row
    violations, anomalies = ("flag", "reject") if policy.startswith("flag-") else (policy, policy)
    wiring.registry().set_quality_policy(
        MODEL, QualityPolicy(violations=violations, anomalies=anomalies), "test"
    )
    wiring.serving().store.forget(MODEL)
    rows: list[dict[str, Any]] = [{"id": f"r{i}", **r} for i, r in enumerate(holdout(demos, 40))]
    rows[1]["mean_radius"] = None  # a required value missing
    rows[5]["mean_texture"] = rows[5]["mean_texture"] * 40  # out of range, anomalous
    rows[9] = {**{k: v * 3 for k, v in rows[9].items() if k != "id"}, "id": "r9"}  # anomalous
    store = wiring.serving().store
    checks = store.checks_for(store.load(MODEL, None, None).version)
    assert checks is not None
    smoothness = [c.name for c in checks.columns].index("mean_smoothness")
    for row in (14, 30):  # just out of range, not anomalous: flagged after rows refused
        rows[row]["mean_smoothness"] = float(checks.high[smoothness]) * 1.01
    if name.endswith(".csv"):
        text = csv_bytes(rows).decode().splitlines()
        text[4] = text[4].replace(text[4].split(",")[3], "abc", 1)  # not a number
        text[8] = ",".join(text[8].split(",")[:3])  # too few fields
        text[12] = text[12].replace(text[12].split(",")[2], "inf", 1)  # not finite
        data = ("\n".join(text) + "\n").encode()
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows[3]["mean_area"] = None  # typed columns: a null is what can go wrong in a row
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        data = buffer.getvalue()

    # When the same file goes a column at a time and row by row
    fast, fast_out = run(tmp_path / "fast", name, data, chunk_rows=16)
    slow, slow_out = run(tmp_path / "slow", name, data, chunk_rows=16, columnar=False)

    # Then the outputs and the reports are the same
    assert fast["rows"] == slow["rows"] and fast["rows"]["rejected"] >= 2
    assert fast["quality"]["rows_flagged"] >= (2 if violations == "flag" else 0)
    assert fast["quality"] == slow["quality"] and fast["drift"] == slow["drift"]
    assert read_jsonl(fast_out.rejected) == read_jsonl(slow_out.rejected)
    assert fast_out.predictions.read_bytes() == slow_out.predictions.read_bytes() or _same_parquet(
        fast_out.predictions, slow_out.predictions
    )


def _same_parquet(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    return bool(pq.read_table(a).to_pylist() == pq.read_table(b).to_pylist())


def messy_csv(demos: dict[str, Any], ending: str) -> bytes:
    """Holdout rows with every kind of trouble a CSV brings, a few clean chunks between them."""
    rows: list[dict[str, Any]] = [{"id": f"r{i}", **r} for i, r in enumerate(holdout(demos, 60))]
    rows[21]["mean_texture"] = rows[21]["mean_texture"] * 40  # out of range, anomalous
    lines = csv_bytes(rows).decode().splitlines()
    header = lines[0].split(",")
    radius = header.index("mean_radius")

    def edit(line: str, value: str, column: int = radius) -> str:
        cells = line.split(",")
        cells[column] = value
        return ",".join(cells)

    trouble = {
        2: edit(lines[2], ""),
        3: edit(lines[3], "NA"),
        18: edit(lines[18], "abc"),
        19: edit(lines[19], " 12.5 "),
        20: edit(lines[20], "+nan"),
        23: edit(lines[23], "1e400"),
        24: ",".join(lines[24].split(",")[:4]),
        25: lines[25] + ",extra",
        26: edit(lines[26], '"r25,b"', 0),
        27: edit(lines[27], '"12.5', radius),
        28: edit(lines[28], "Null"),
        41: edit(lines[41], "é40", 0),
        42: edit(lines[42], "1_2"),
    }
    lines = [trouble.get(i, line) for i, line in enumerate(lines)]
    lines.insert(30, "")  # a blank line is no row
    return ("\ufeff" + ending.join(lines) + ending).encode()


@pytest.mark.parametrize("policy", ["flag", "reject"])
@pytest.mark.parametrize("name", ["messy.csv", "messy.csv.gz"])
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_pyarrow_python_and_row_by_row_give_the_same_outputs_for_a_messy_csv(
    registered: Any, demos: dict[str, Any], tmp_path: Path, policy: str, name: str, ending: str
) -> None:
    # Given a model whose policy flags (or rejects) findings, and a CSV with every kind of trouble
    wiring.registry().set_quality_policy(MODEL, QualityPolicy(violations=policy, anomalies=policy), "test")
    wiring.serving().store.forget(MODEL)
    data = messy_csv(demos, ending)
    if name.endswith(".gz"):
        data = gzip.compress(data)

    # When it goes through pyarrow, through Python's reader a column at a time, and row by row
    arrow, arrow_out = run(tmp_path / "arrow", name, data, chunk_rows=8, carry=("id",))
    python, python_out = run(tmp_path / "python", name, data, chunk_rows=8, carry=("id",), arrow_csv=False)
    rows, rows_out = run(tmp_path / "rows", name, data, chunk_rows=8, carry=("id",), columnar=False)

    # Then pyarrow read the clean chunks (Python's reader the others)
    source = tmp_path / "arrow" / name
    features = {f.name: f.dtype for f in demos[MODEL].enrichment.features}
    chunks = list(column_chunks(source, FileFormat.of(name), 8, features, ["id"]) or [])
    assert 0 < sum(c.parsed is not None for c in chunks) < len(chunks)
    # and every way gives the same rows, rejections, findings, drift and bytes
    assert arrow["rows"]["in"] == 60 and arrow["rows"]["rejected"] >= 8
    for report, out in ((python, python_out), (rows, rows_out)):
        assert arrow["rows"] == report["rows"]
        assert arrow["quality"] == report["quality"] and arrow["drift"] == report["drift"]
        assert read_jsonl(arrow_out.rejected) == read_jsonl(out.rejected)
        assert written(arrow_out.predictions) == written(out.predictions)


def written(path: Path) -> bytes:
    """A file's bytes, gunzipped (a gzip header holds the time it was written)."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


RULESETS = {
    "vectorised": [
        {"id": "small", "stage": "pre", "when": "input.mean_area < 400.0", "then": {"reject": "too small"}},
        {"id": "smaller", "stage": "pre", "when": "input.mean_area < 350.0", "then": {"reject": "smaller"}},
        {
            "id": "rough",
            "stage": "pre",
            "when": "input.mean_radius > 15.0 && !(input.mean_texture >= 20.0)"
            " || input.mean_smoothness * 2.0 > 0.2",
            "then": {"flag": "rough edges"},
        },
        {
            "id": "refer",
            "stage": "post",
            "when": "output.probabilities['malignant'] > 0.3 && output.label == 'benign'",
            "then": {"set": {"decision": "refer", "priority": 2}},
        },
        {
            "id": "sure",
            "stage": "post",
            "when": "output.label == 'malignant'"
            " ? output.probabilities.malignant - 0.5 > 0.45 : model.version > 5",
            "then": {"set": {"decision": "confirm", "note": {"by": ["rules"]}}},
        },
        {"id": "big", "stage": "post", "when": "input.mean_radius / 2.0 >= 8 ", "then": {"flag": "big"}},
    ],
    # `in` and size() have no vector form: CEL evaluates every row of the stage
    "partly": [
        {
            "id": "listed",
            "stage": "pre",
            "when": "input.mean_radius in [13.0, 14.0]",
            "then": {"flag": "listed"},
        },
        {"id": "small", "stage": "pre", "when": "input.mean_area < 400.0", "then": {"reject": "too small"}},
        {
            "id": "named",
            "stage": "post",
            "when": "size(model.name) > 3 && output.label == 'malignant'",
            "then": {"set": {"decision": "refer"}},
        },
    ],
}


@pytest.mark.parametrize("hit_policy", ["first", "all"])
@pytest.mark.parametrize("ruleset", list(RULESETS))
@pytest.mark.parametrize("chunk_rows", [16, 400])
def test_rules_a_column_at_a_time_give_what_they_give_row_by_row(
    registered: Any, demos: dict[str, Any], tmp_path: Path, hit_policy: str, ruleset: str, chunk_rows: int
) -> None:
    # Given a model with rules that reject, flag and set (in chunks of 400, more rows rejected by
    # rules than one rejection names: the row path's rounds)
    wiring.registry().set_quality_policy(MODEL, QualityPolicy(violations="reject", anomalies="flag"), "test")
    rules = Ruleset.model_validate({"hit_policy": hit_policy, "rules": RULESETS[ruleset]})
    save_ruleset(wiring.registry(), MODEL, rules, "test")
    wiring.serving().store.forget(MODEL)
    rows = holdout(demos, 1000)
    data = csv_bytes(rows * 3, {"id": [f"p{i}" for i in range(len(rows) * 3)]})
    store = wiring.serving().store
    assert ColumnarModel.of(wiring.serving(), store.load(MODEL, None, None)) is not None

    # When the file goes a column at a time and row by row
    fast, fast_out = run(tmp_path / "fast", "rows.csv", data, chunk_rows=chunk_rows)
    slow, slow_out = run(tmp_path / "slow", "rows.csv", data, chunk_rows=chunk_rows, columnar=False)

    # Then the rules fired alike: the same rejections, decisions, flags and bytes
    assert fast["rows"] == slow["rows"] and fast["rows"]["rejected"] > (60 if ruleset == "vectorised" else 0)
    assert fast["quality"] == slow["quality"] and fast["drift"] == slow["drift"]
    assert read_jsonl(fast_out.rejected) == read_jsonl(slow_out.rejected)
    assert fast_out.predictions.read_bytes() == slow_out.predictions.read_bytes()
    assert b"refer" in fast_out.predictions.read_bytes()


class Trickle(io.RawIOBase):
    """A stream that hands out a few bytes per read, as a network body may: every boundary a reader
    could get wrong (a line, a UTF-8 character, a gzip block cut in two) is met."""

    def __init__(self, data: bytes, step: int = 97) -> None:
        super().__init__()
        self.data, self.at, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self.step, len(self.data) - self.at)
        buffer[:size] = self.data[self.at : self.at + size]
        self.at += size
        return size


def run_streamed(name: str, data: bytes, **options: Any) -> tuple[dict[str, Any], bytes, bytes]:
    """The file read once as a stream and its outputs written to streams: the report and their bytes."""
    predictions, rejected = io.BytesIO(), io.BytesIO()
    fmt = FileFormat.of(name)
    outputs = Outputs(predictions, rejected)
    report = predict_file(wiring.serving(), MODEL, Trickle(data), fmt, outputs, Options(**options))
    found = predictions.getvalue()
    return report, gzip.decompress(found) if name.endswith(".gz") and found else found, rejected.getvalue()


@pytest.mark.parametrize("name", ["messy.csv", "messy.csv.gz", "dup.csv", "rows.jsonl.gz"])
@pytest.mark.parametrize("way", [{}, {"arrow_csv": False}, {"columnar": False}])
def test_a_stream_gives_what_the_staged_file_gives(
    registered: Any, demos: dict[str, Any], tmp_path: Path, name: str, way: dict[str, Any]
) -> None:
    # Given a CSV with every kind of trouble (plain, gzipped, or with a header pyarrow leaves to
    # Python's reader: a duplicate name), or JSON Lines
    wiring.registry().set_quality_policy(MODEL, QualityPolicy(violations="reject", anomalies="flag"), "test")
    wiring.serving().store.forget(MODEL)
    data = messy_csv(demos, "\n")
    if name.startswith("dup"):
        header, rest = data.split(b"\n", 1)
        data = header + b",id\n" + b"\n".join(line + b",7" for line in rest.split(b"\n") if line) + b"\n"
    if name.startswith("rows"):
        data = b"".join(json.dumps(row).encode() + b"\n" for row in holdout(demos, 30))
    if name.endswith(".gz"):
        data = gzip.compress(data)
    options = {"chunk_rows": 8, **way}

    # When it is read as a stream (a few bytes at a time) and written to streams, and staged
    streamed, predictions, rejected = run_streamed(name, data, **options)
    staged, out = run(tmp_path, name, data, **options)

    # Then the rows, findings, drift and bytes are the same
    assert streamed["status"] == staged["status"] == "succeeded"
    assert streamed["rows"] == staged["rows"] and streamed["rows"]["predicted"] > 0
    assert streamed["quality"] == staged["quality"] and streamed["drift"] == staged["drift"]
    assert predictions == written(out.predictions)
    assert rejected == out.rejected.read_bytes()


def test_a_truncated_gzip_stream_fails_as_the_staged_file_does(
    registered: Any, demos: dict[str, Any]
) -> None:
    data = gzip.compress(csv_bytes(holdout(demos, 50) * 100))
    report, _, _ = run_streamed("cut.csv.gz", data[: len(data) - 40], chunk_rows=1000)
    assert report["status"] == "failed" and report["error"]["code"] == "unreadable_file"
    assert 1000 <= report["error"]["rows_read"] < 5000
    assert report["rows"] == {"in": 0, "predicted": 0, "rejected": 0}
