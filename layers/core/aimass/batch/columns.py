"""The fast way through a chunk of a CSV or Parquet file: features parsed a column at a time, the
data-quality checks and anomaly score on the whole matrix, one session.run, and the answer kept as
columns. Row by row, the same file costs about 150 µs a row in Python (parsing each cell, building
each instance and each output row); a column at a time it is numpy's.

Taken for models whose features are all numbers, whose input is a float tensor, whose answer is
tensors (no ZipMap) and which have no rules (CEL runs per instance). Anything else goes row by row
(aimass.batch.job). Both give the same outputs, row for row and column for column: tests compare."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass.batch.formats import BadRecord, Chunk
from aimass.batch.rows import Reason, reason, type_problem, value_from_text
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import Feature, Signature
from aimass.protocol.tensors import NUMPY_DTYPES
from aimass.quality.checks import RequestChecks
from aimass.quality.columns import MISSING
from aimass.serving.pipeline import RequestPipeline
from aimass.serving.store import LoadedModel


@dataclass
class ColumnarAnswer:
    """A chunk's outcome: per kept record (its offset in the chunk), the output columns; the
    records refused, with their reasons; the findings to count."""

    kept: list[int]
    # The kept records' features as the model saw them (float64, NaN where missing).
    matrix: np.ndarray
    columns: dict[str, list[Any]]
    refused: dict[int, list[Reason]]
    flagged: list[list[dict[str, Any]]]
    anomalous: int


@dataclass(frozen=True)
class ColumnarModel:
    model: LoadedModel
    checks: RequestChecks | None
    policy: QualityPolicy

    @classmethod
    def of(cls, serving: RequestPipeline, model: LoadedModel) -> ColumnarModel | None:
        """The model's fast path, or None when its rows must go one by one."""
        signature = model.version.signature
        if not _fits(signature) or serving.store.rules_for(model.version) is not None:
            return None
        return cls(
            model, serving.store.checks_for(model.version), serving.store.policy_for(model.version.name)
        )

    @property
    def signature(self) -> Signature:
        return self.model.version.signature

    def answer(self, chunk: Chunk, text: bool) -> ColumnarAnswer:
        """The chunk's records parsed, checked and predicted; its BadRecords are the caller's."""
        if chunk.parsed is not None:  # read by pyarrow: no BadRecord among them
            offsets = list(range(len(chunk.records)))
        else:
            offsets = [i for i, record in enumerate(chunk.records) if not isinstance(record, BadRecord)]
        assert chunk.columns is not None
        matrix, refused = _matrix(self.signature.features or [], chunk, offsets, text)
        good = [k for k, offset in enumerate(offsets) if offset not in refused]
        tensor = matrix[good].astype(NUMPY_DTYPES[self.signature.inputs[0].dtype])
        # The checks see what the model sees (the float32 values), as the online path's do.
        seen = tensor.astype(np.float64)
        kept = np.arange(len(good))
        violations: list[list[dict[str, Any]]] = [[] for _ in good]
        if self.checks is not None and self.policy.violations != "ignore":
            violations = self.checks.violations(seen)
            if self.policy.violations == "reject":
                for k in [k for k in kept if violations[k]]:
                    refused[offsets[good[k]]] = [
                        reason(v["message"], f"quality_{v['check']}", v["feature"]) for v in violations[k]
                    ]
                kept = np.array([k for k in kept if not violations[k]], dtype=int)
        scores = None
        if self.checks is not None and self.checks.anomaly is not None and self.policy.anomalies != "ignore":
            threshold = self.checks.anomaly.threshold
            all_scores = self.checks.anomaly_scores(seen[kept])
            assert all_scores is not None
            if self.policy.anomalies == "reject":
                above = all_scores > threshold
                for k, score in zip(kept[above], all_scores[above], strict=True):
                    refused[offsets[good[k]]] = [
                        reason(f"anomaly score {score:.4g} is above the threshold {threshold:.4g}", "anomaly")
                    ]
                kept, all_scores = kept[~above], all_scores[~above]
            scores = all_scores
        columns = self._outputs(tensor[kept]) if len(kept) else {}
        found = [violations[k] for k in kept]
        if scores is not None:
            columns["anomaly_score"] = scores.tolist()
            columns["anomalous"] = (scores > threshold).tolist()
        if any(found):
            columns["quality"] = [json.dumps(v) if v else None for v in found]
        return ColumnarAnswer(
            [offsets[good[k]] for k in kept],
            seen[kept],
            columns,
            refused,
            found,
            0 if scores is None else int((scores > threshold).sum()),
        )

    def _outputs(self, tensor: np.ndarray) -> dict[str, list[Any]]:
        """The model's answer as columns named as the row-by-row path flattens its items."""
        signature = self.signature
        outputs = self.model.run({signature.inputs[0].name: tensor})
        if signature.task == "classification" and signature.label_output and signature.probabilities_output:
            labels = outputs[signature.label_output].tolist()
            names = signature.class_labels
            if names:
                labels = [names[v] if isinstance(v, int) and 0 <= v < len(names) else v for v in labels]
            probabilities = outputs[signature.probabilities_output]
            classes = names or [str(j) for j in range(probabilities.shape[1])]
            found: dict[str, list[Any]] = {"label": labels}
            for j, name in enumerate(classes):
                found[f"probability_{name}"] = probabilities[:, j].tolist()
            return found
        [only] = outputs.values()
        rows = only.tolist()
        if signature.task == "regression":
            rows = [row[0] if isinstance(row, list) and len(row) == 1 else row for row in rows]
        return {"prediction": [json.dumps(r) if isinstance(r, list) else r for r in rows]}


def _fits(signature: Signature) -> bool:
    features = signature.features
    if not features or len(signature.inputs) != 1 or not signature.inputs[0].dtype.startswith("float"):
        return False
    if any(f.dtype not in ("float", "int") for f in features):
        return False
    specs = {s.name: s for s in signature.outputs}
    if signature.task == "classification" and signature.label_output and signature.probabilities_output:
        probabilities = specs.get(signature.probabilities_output)
        # A ZipMap answers a list of maps, whose classes the signature may not name.
        return probabilities is not None and len(probabilities.shape) == 2
    return len(signature.outputs) == 1


def _matrix(
    features: list[Feature], chunk: Chunk, offsets: list[int], text: bool
) -> tuple[np.ndarray, dict[int, list[Reason]]]:
    """The records' features as float64 (NaN where missing), and the reasons of records that cannot
    be instances (offsets into the chunk) — the same reasons aimass.batch.rows gives one by one."""
    assert chunk.columns is not None
    where = {name: j for j, name in enumerate(chunk.columns)}
    cells = None
    if chunk.parsed is None:
        rows = [chunk.records[i] for i in offsets]
        cells = np.array(rows, dtype=object).reshape(len(rows), len(chunk.columns))
    matrix = np.full((len(offsets), len(features)), np.nan)
    reasons: dict[int, list[Reason]] = {}

    def refuse(k: int, found: Reason) -> None:
        reasons.setdefault(offsets[k], []).append(found)

    for j, feature in enumerate(features):
        matrix[:, j], problems = _feature_column(feature, chunk, cells, where, text)
        for k, problem in problems.items():
            refuse(k, reason(problem, "type_error", feature.name))
        if not feature.nullable:
            for at in np.flatnonzero(np.isnan(matrix[:, j])):
                if int(at) not in problems:
                    refuse(int(at), reason("required feature is missing", "missing", feature.name))
    # A record's reasons in feature order, as the row-by-row parser lists them.
    order = {f.name: j for j, f in enumerate(features)}
    for found in reasons.values():
        found.sort(key=lambda r: order.get(r.get("field", ""), -1))
    return matrix, reasons


def _feature_column(
    feature: Feature, chunk: Chunk, cells: np.ndarray | None, where: dict[str, int], text: bool
) -> tuple[np.ndarray | float, dict[int, str]]:
    """A feature's values in the records and the problem of each cell that is not one (NaN and no
    problem for a column the file lacks)."""
    if chunk.parsed is not None:  # pyarrow read every cell as the parser does
        return chunk.parsed.get(feature.name, np.nan), {}
    if feature.name not in where:
        return np.nan, {}
    assert cells is not None
    return parse_column(cells[:, where[feature.name]], feature, text)


def parse_column(cells: np.ndarray, feature: Feature, text: bool) -> tuple[np.ndarray, dict[int, str]]:
    """One feature's cells as float64 (NaN where missing) and the problem of each cell that is not a
    value of the feature, by position."""
    if text:
        try:
            values = cells.astype(np.float64)
        except ValueError:  # an empty or odd cell somewhere: each one of them read as the parser does
            return _text_cells_one_by_one(cells, feature)
        # numpy reads what float() reads: 'nan' is a missing value, 'inf' is not a number at all.
        problems = {
            int(at): f"not a finite number: {cells[at].strip()!r}" for at in np.flatnonzero(np.isinf(values))
        }
    else:
        values, problems = _typed_cells(cells, feature)
    if feature.dtype == "int":
        for at in np.flatnonzero(np.isfinite(values) & (values != np.round(values))):
            problems[int(at)] = (
                f"not an integer: {cells[at].strip()!r}" if text else f"expected an integer, got {cells[at]}"
            )
    for k in problems:
        values[k] = np.nan
    return values, problems


def _text_cells_one_by_one(cells: np.ndarray, feature: Feature) -> tuple[np.ndarray, dict[int, str]]:
    values = np.full(len(cells), np.nan)
    problems: dict[int, str] = {}
    for k, cell in enumerate(cells):
        if cell.strip().lower() in MISSING:
            continue
        value, problem = value_from_text(feature, cell)
        if problem is None:
            values[k] = value
        else:
            problems[k] = problem
    return values, problems


def _typed_cells(cells: np.ndarray, feature: Feature) -> tuple[np.ndarray, dict[int, str]]:
    """Typed cells (JSON, Parquet): numbers all of them converted at once, any other kind cell by cell."""
    if {type(cell) for cell in cells} <= {int, float, type(None)}:
        values = np.array([np.nan if cell is None else cell for cell in cells], dtype=np.float64)
        return values, {int(at): "expected a finite number" for at in np.flatnonzero(np.isinf(values))}
    values = np.full(len(cells), np.nan)
    problems: dict[int, str] = {}
    for k, cell in enumerate(cells):
        if cell is None:
            continue
        problem = type_problem(feature, cell)
        if problem is None:
            values[k] = cell
        else:
            problems[k] = problem
    return values, problems
