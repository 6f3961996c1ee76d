"""A model's training data: the snapshot Ingest takes of `datasets/<model>/`, and the rows and split
every later step reads from it.

Data files are CSV (a header row) or Parquet, optionally gzipped, anywhere under
`datasets/<model>/` except `snapshots/`; each holds the model's feature columns and the label
column (TrainingConfig.label). The snapshot is one CSV of those columns, text as found, at
`datasets/<model>/snapshots/<run>.csv`, and its sha256 is the dataset's version in the lineage.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass import artifacts
from aimass.contracts.registry import ModelVersion
from aimass.errors import NotFound, ValidationFailed, field_error
from aimass.gateways.s3 import Bucket, KeyMissing
from aimass.pipeline.config import TrainingConfig
from aimass.quality.columns import Column, columns_of, parse_number
from aimass.registry import Registry

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".parquet.gz")
CONFIG_NAME = "training.json"


def datasets_prefix(model: str) -> str:
    return f"datasets/{model}/"


def snapshot_key(model: str, run: str) -> str:
    return f"{datasets_prefix(model)}snapshots/{run}.csv"


# A Step Functions error cause holds at most 32,768 characters, and the Lambda runtime wraps a task's
# error message with its type and stack trace: the problems a rejection carries stay within this.
CAUSE_BUDGET = 24_000


def problem(
    message: str, kind: str, file: str | None = None, column: str | None = None, row: int | None = None
) -> dict[str, Any]:
    """One reason the data was rejected: the data file (its S3 key), the column and the row (1 is the
    first row after the header) where known, what is wrong, and a machine-readable type."""
    return {"file": file, "column": column, "row": row, "message": message, "type": kind}


class DatasetRejected(ValidationFailed):
    """The snapshot failed the data-quality gate; `problems` name what, where (see `problem`).

    Its text is JSON, `{"message", "problems", "more"}`: the Lambda runtime makes it the task's
    errorMessage, so the run's error cause carries the problems to the run detail and the failure
    notice. As many problems as fit CAUSE_BUDGET are listed; `more` counts the rest."""

    code = "dataset_rejected"

    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message, problems)
        self.problems = problems

    def __str__(self) -> str:
        return rejection_cause(self.message, self.problems)


def rejection_cause(message: str, problems: list[dict[str, Any]]) -> str:
    """The rejection as JSON, listing the problems in order while the text stays within CAUSE_BUDGET."""
    shown: list[dict[str, Any]] = []
    size = len(json.dumps({"message": message, "problems": [], "more": len(problems)}))
    for found in problems:
        size += len(json.dumps(found)) + 2
        if size > CAUSE_BUDGET:
            break
        shown.append(found)
    return json.dumps({"message": message, "problems": shown, "more": len(problems) - len(shown)})


def serving_version(registry: Registry, model: str) -> ModelVersion:
    """The version retraining starts from: its features, labels and baseline (the one a request
    without a version gets: the champion, else the latest not archived)."""
    return registry.resolve(model)


def champion(registry: Registry, model: str) -> ModelVersion | None:
    summary = registry.get_model(model)
    version = summary.aliases.get("champion")
    return registry.get_version(model, version) if version is not None else None


def feature_columns(record: ModelVersion) -> list[Column]:
    columns = columns_of(record.signature)
    if columns is None or any(c.kind == "string" for c in columns):
        raise ValidationFailed(
            f"{record.name} v{record.version} does not take a row of numeric features; retraining "
            "supports tabular models",
            [field_error(["model"], "not a tabular model", "unsupported_model")],
        )
    return columns


def stored_config(bucket: str, model: str) -> dict[str, Any] | None:
    try:
        body = Bucket(bucket).get(f"{datasets_prefix(model)}{CONFIG_NAME}")
    except KeyMissing:
        return None
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def ingest(bucket: str, model: str, run: str, columns: list[str], label: str) -> dict[str, Any]:
    """Copy the label and feature columns of every data file into one snapshot; what it holds."""
    source = Bucket(bucket)
    prefix = datasets_prefix(model)
    keys = sorted(
        key
        for key in source.keys(prefix)
        if key.lower().endswith(DATA_SUFFIXES) and not key.startswith(f"{prefix}snapshots/")
    )
    if not keys:
        raise NotFound(f"no training data under s3://{bucket}/{prefix} (CSV or Parquet files)")
    wanted = [*columns, label]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["source", *wanted])
    files = []
    for key in keys:
        data = source.get(key)
        header, rows = _records(data, key)
        where = {name: i for i, name in enumerate(header)}
        missing = [c for c in wanted if c not in where]
        files.append({"key": key, "rows": len(rows), "sha256": artifacts.sha256(data), "missing": missing})
        for row in rows:
            writer.writerow(
                [key, *(row[where[c]] if c in where and where[c] < len(row) else "" for c in wanted)]
            )
    snapshot = out.getvalue().encode()
    uri = artifacts.put(bucket, snapshot_key(model, run), snapshot, "text/csv")
    return {
        "uri": uri,
        "sha256": artifacts.sha256(snapshot),
        "rows": sum(f["rows"] for f in files),
        "files": files,
    }


def _records(data: bytes, key: str) -> tuple[list[str], list[list[str]]]:
    name = key.lower()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
        name = name.removesuffix(".gz")
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        values = table.to_pydict().values()
        return table.column_names, [
            ["" if v is None else str(v) for v in row] for row in zip(*values, strict=True)
        ]
    records = [r for r in csv.reader(io.StringIO(data.decode("utf-8-sig"))) if r]
    return ([h.strip() for h in records[0]], records[1:]) if records else ([], [])


@dataclass(frozen=True)
class Rows:
    """The snapshot's usable rows: features as float64 and targets (class indices or values)."""

    x: np.ndarray
    y: np.ndarray
    dropped: int  # rows without a label or with a feature missing


def read_snapshot(uri: str, sha256: str) -> tuple[list[str], list[list[str]]]:
    data = artifacts.verified(uri, sha256)
    records = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    return records[0], records[1:]


def rows(uri: str, sha256: str, columns: list[Column], label: str, classes: list[str] | None) -> Rows:
    """The snapshot as numbers, rows with a gap left out (Validate has bounded how many)."""
    header, records = read_snapshot(uri, sha256)
    x = feature_matrix(header, records, columns)
    labels = [r[header.index(label)].strip() for r in records]
    y = np.array([_target(v, classes) for v in labels], dtype=np.float64)
    keep = ~np.isnan(x).any(axis=1) & ~np.isnan(y)
    return Rows(x[keep], y[keep].astype(np.int64) if classes else y[keep], int((~keep).sum()))


def feature_matrix(header: list[str], records: list[list[str]], columns: list[Column]) -> np.ndarray:
    """The snapshot's feature cells as float64, NaN where a cell is empty or not a number (how many
    may be is Validate's call; the rows with one are left out of training)."""
    matrix = np.full((len(records), len(columns)), np.nan)
    for j, column in enumerate(columns):
        where = header.index(column.name)
        for i, record in enumerate(records):
            text = record[where].strip()
            value = parse_number(text) if text else None
            if value is not None:
                matrix[i, j] = value
    return matrix


def _target(text: str, classes: list[str] | None) -> float:
    """A label as a class index or a regression value; NaN when it is missing or unknown."""
    if not text:
        return float("nan")
    if classes is None:
        try:
            return float(text)
        except ValueError:
            return float("nan")
    index = class_index(text, classes)
    return float("nan") if index is None else float(index)


def class_index(text: str, classes: list[str]) -> int | None:
    """Which class a label names: by name, or by its index given as a number."""
    if text in classes:
        return classes.index(text)
    number = parse_number(text)
    return int(number) if number is not None and number.is_integer() and 0 <= number < len(classes) else None


def split(data: Rows, config: TrainingConfig, classification: bool) -> tuple[np.ndarray, ...]:
    """x_train, x_holdout, y_train, y_holdout: the same for every step and both models (seeded,
    stratified by class)."""
    from sklearn.model_selection import train_test_split

    parts: list[np.ndarray] = train_test_split(
        data.x,
        data.y,
        test_size=config.holdout_fraction,
        random_state=config.seed,
        stratify=data.y if classification else None,
    )
    return tuple(parts)
