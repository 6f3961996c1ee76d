"""The columns a model's input is checked by: its named features, or the cells of its one tensor."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from aimass.contracts.registry import Signature
from aimass.errors import MAX_DETAILS, ValidationFailed, field_error

Kind = Literal["numeric", "string"]
MISSING = {"", "na", "nan", "null", "none"}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    integral: bool = False
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None


def true_cells(mask: np.ndarray) -> list[tuple[int, int]]:
    """The (row, column) of each True cell of a 2-D mask, row by row. numpy's own 2-D nonzero took
    about 14 times as long on a 2,000-row chunk of 30 features (bench/RESULTS.md, "The batch job's
    checks and floats, without the extra copies")."""
    if not mask.any():
        return []
    rows, columns = np.divmod(np.flatnonzero(mask), mask.shape[1])
    return list(zip(rows.tolist(), columns.tolist(), strict=True))


def columns_of(signature: Signature) -> list[Column] | None:
    """A tabular model's features; for a model with one input of fixed cell shape (an image), one
    numeric column per cell, named like `image[3][4]`. None when the input has no such shape."""
    if signature.features:
        return [
            Column(
                f.name,
                "string" if f.dtype == "string" else "numeric",
                integral=f.dtype in ("int", "bool"),
                nullable=f.nullable,
                min=f.min,
                max=f.max,
                categories=tuple(f.categories) if f.categories else None,
            )
            for f in signature.features
        ]
    if len(signature.inputs) != 1:
        return None
    spec = signature.inputs[0]
    cells = spec.shape[1:]
    if not cells or any(d is None for d in cells) or spec.dtype in ("string", "bool"):
        return None
    integral = spec.dtype.startswith(("int", "uint"))
    ranges = [range(d) for d in cells if d is not None]
    return [
        Column(spec.name + "".join(f"[{i}]" for i in index), "numeric", integral=integral)
        for index in itertools.product(*ranges)
    ]


def holds_strings(columns: list[Column]) -> bool:
    """Whether a matrix over these columns holds strings (objects) rather than float64: the columns
    of one input tensor share its dtype, so the first one says."""
    return bool(columns) and columns[0].kind == "string"


def as_matrix(columns: list[Column], tensor: np.ndarray) -> np.ndarray:
    """A model's input tensor as rows by columns: float64 with NaN for missing, or objects (strings)."""
    matrix = tensor.reshape(len(tensor), -1)
    if holds_strings(columns):
        return matrix
    return matrix.astype(np.float64, copy=False)


BOOLEANS = {"true": 1.0, "false": 0.0}


def parse_number(text: str) -> float | None:
    if text.lower() in BOOLEANS:
        return BOOLEANS[text.lower()]
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def table_from_records(columns: list[Column], header: list[str], rows: list[list[str]]) -> np.ndarray:
    """Text records (a CSV's rows) as a matrix over the model's columns; other columns are ignored.
    Missing values become NaN (numeric) or None (string); a value that is not a number, or a missing
    column, is a 422 naming the row and column."""
    where = {name: i for i, name in enumerate(header)}
    absent = [c.name for c in columns if c.name not in where]
    if absent:
        raise ValidationFailed(
            f"the reference dataset lacks {len(absent)} of the model's columns",
            [
                field_error(["reference", name], "column is missing", "missing_column")
                for name in absent[:MAX_DETAILS]
            ],
        )
    string = holds_strings(columns)
    matrix = np.empty((len(rows), len(columns)), dtype=object if string else np.float64)
    errors: list[dict[str, Any]] = []
    for j, column in enumerate(columns):
        source = where[column.name]
        for i, row in enumerate(rows):
            text = row[source].strip() if source < len(row) else ""
            if text.lower() in MISSING:
                matrix[i, j] = None if string else np.nan
            elif string:
                matrix[i, j] = text
            elif (value := parse_number(text)) is not None:
                matrix[i, j] = value
            elif len(errors) < MAX_DETAILS:
                # Row numbers count the header as row 1, as a spreadsheet shows them.
                errors.append(
                    field_error(["reference", i + 2, column.name], f"not a number: {text!r}", "type_error")
                )
    if errors:
        raise ValidationFailed("the reference dataset has values that are not numbers", errors)
    return matrix
