"""The fast way through a chunk of a CSV or Parquet file: features parsed a column at a time, the
data-quality checks and anomaly score on the whole matrix, one session.run, and the answer kept as
columns. Row by row, the same file costs about 150 µs a row in Python (parsing each cell, building
each instance and each output row); a column at a time it is numpy's.

Taken for models whose features are all numbers, whose input is a float tensor, whose answer is
tensors (no ZipMap) and whose rules set no field the row path would put elsewhere; the rules run on
the chunk's columns (aimass.rule_columns). Anything else goes row by row (aimass.batch.job). Both
give the same outputs, row for row and column for column: tests compare."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass.batch.formats import BadRecord, Chunk
from aimass.batch.rows import Reason, reason, type_problem, value_from_text
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import Feature, Signature
from aimass.contracts.rules import FiredRule
from aimass.errors import MAX_DETAILS
from aimass.protocol.tensors import NUMPY_DTYPES
from aimass.quality.checks import RequestChecks
from aimass.quality.columns import MISSING, true_cells
from aimass.rule_columns import ColumnRules, output_columns
from aimass.rules import CompiledRuleset
from aimass.serving import codecs
from aimass.serving.pipeline import RequestPipeline
from aimass.serving.store import LoadedModel

# A column of the answer: a list, or a float64 array (probabilities, anomaly scores), which the
# writer and the rules take as it is rather than as a list made of it.
Values = list[Any] | np.ndarray


@dataclass
class ColumnarAnswer:
    """A chunk's outcome: per kept record (its offset in the chunk), the output columns; the
    records refused, with their reasons; the findings to count."""

    kept: list[int]
    # The kept records' features as the model saw them (float64, NaN where missing).
    matrix: np.ndarray
    columns: dict[str, Values]
    refused: dict[int, list[Reason]]
    # The data-quality findings of each kept record that has any, in order.
    flagged: list[list[dict[str, Any]]]
    anomalous: int


@dataclass(frozen=True)
class ColumnarModel:
    model: LoadedModel
    checks: RequestChecks | None
    policy: QualityPolicy
    # The model's rules over the chunk's columns (aimass.rule_columns), if it has any.
    rules: ColumnRules | None = None

    @classmethod
    def of(
        cls, serving: RequestPipeline, model: LoadedModel, leading: Collection[str] = ()
    ) -> ColumnarModel | None:
        """The model's fast path, or None when its rows must go one by one: its features or answer
        are not all numbers, or a rule sets a field that would land in another column (`leading`:
        the id and carried columns) or that the row path flattens its own way."""
        signature = model.version.signature
        if not _fits(signature):
            return None
        compiled = serving.store.rules_for(model.version)
        rules = None
        if compiled is not None:
            taken = {*RULES_CANNOT_SET, *leading}
            for rule in compiled.ruleset.rules:
                if any(key in taken or key.startswith("probability_") for key in rule.then.set or {}):
                    return None
            rules = ColumnRules(compiled, signature)
        return cls(
            model,
            serving.store.checks_for(model.version),
            serving.store.policy_for(model.version.name),
            rules,
        )

    @property
    def signature(self) -> Signature:
        return self.model.version.signature

    def answer(self, chunk: Chunk, text: bool) -> ColumnarAnswer:
        """The chunk's records parsed, checked and predicted; its BadRecords are the caller's."""
        offsets = _readable(chunk)
        matrix, refused = _matrix(self.signature.features or [], chunk, offsets, text)
        # Indexes kept as arrays, and no copy where every row is kept (a chunk mostly is whole).
        good = (
            np.array([k for k, offset in enumerate(offsets) if offset not in refused], dtype=int)
            if refused
            else np.arange(len(offsets))
        )
        tensor = (matrix if not refused else matrix[good]).astype(
            NUMPY_DTYPES[self.signature.inputs[0].dtype]
        )
        # The checks see what the model sees (the float32 values), as the online path's do.
        seen = tensor.astype(np.float64)
        kept = np.arange(len(good))
        violations: dict[int, list[dict[str, Any]]] = {}
        if self.checks is not None and self.policy.violations != "ignore":
            violations = self.checks.violating(seen)
            if self.policy.violations == "reject" and violations:
                for k, of_row in violations.items():
                    refused[offsets[good[k]]] = [
                        reason(v["message"], f"quality_{v['check']}", v["feature"]) for v in of_row
                    ]
                kept = kept[~np.isin(kept, list(violations))]
        scores = None
        if self.checks is not None and self.checks.anomaly is not None and self.policy.anomalies != "ignore":
            threshold = self.checks.anomaly.threshold
            all_scores = self.checks.anomaly_scores(seen if len(kept) == len(seen) else seen[kept])
            assert all_scores is not None
            if self.policy.anomalies == "reject":
                above = all_scores > threshold
                for k, score in zip(kept[above], all_scores[above], strict=True):
                    refused[offsets[good[k]]] = [
                        reason(f"anomaly score {score:.4g} is above the threshold {threshold:.4g}", "anomaly")
                    ]
                kept, all_scores = kept[~above], all_scores[~above]
            scores = all_scores
        ruled = None
        if self.rules is not None:
            # Rules read the instances as parsed (float64), as the online path's rules do.
            ruled = _Ruled(self.rules, self.model, matrix[good])
            kept, scores = ruled.pre(
                kept, scores, lambda k, reasons: refused.update({offsets[good[k]]: reasons})
            )
        whole = len(kept) == len(good)  # kept is then every good row, in order
        columns = self._outputs(tensor if whole else tensor[kept], ruled, kept) if len(kept) else {}
        found, quality = _findings(violations, kept, whole)
        if scores is not None:
            columns["anomaly_score"] = scores.astype(np.float64, copy=False)
            columns["anomalous"] = (scores > threshold).tolist()
        if quality is not None:
            columns["quality"] = quality
        return ColumnarAnswer(
            offsets if whole and not refused else np.asarray(offsets)[good[kept]].tolist(),
            seen if whole else seen[kept],
            columns,
            refused,
            found,
            0 if scores is None else int((scores > threshold).sum()),
        )

    def _outputs(self, tensor: np.ndarray, ruled: _Ruled | None, kept: np.ndarray) -> dict[str, Values]:
        """The model's answer as columns named as the row-by-row path flattens its items, and what
        the rules did to it."""
        signature = self.signature
        outputs = self.model.run({signature.inputs[0].name: tensor})
        found: dict[str, Values]
        if signature.task == "classification" and signature.label_output and signature.probabilities_output:
            found_labels = outputs[signature.label_output]
            labels = found_labels.tolist()
            names = signature.class_labels
            if (
                names
                and found_labels.dtype.kind in "iu"
                and ((found_labels >= 0) & (found_labels < len(names))).all()
            ):
                labels = np.asarray(names, dtype=object)[found_labels].tolist()  # each class's name at once
            elif names:
                labels = [names[v] if isinstance(v, int) and 0 <= v < len(names) else v for v in labels]
            probabilities = outputs[signature.probabilities_output]
            classes = names or [str(j) for j in range(probabilities.shape[1])]
            found = {"label": labels}
            for j, name in enumerate(classes):
                # float64, as .tolist() would give them: the same text and the same Parquet type
                found[f"probability_{name}"] = probabilities[:, j].astype(np.float64)
        else:
            [only] = outputs.values()
            rows = only.tolist()
            if signature.task == "regression":
                rows = [row[0] if isinstance(row, list) and len(row) == 1 else row for row in rows]
            found = {"prediction": [json.dumps(r) if isinstance(r, list) else r for r in rows]}
        if ruled is not None:
            found.update(ruled.post(kept, outputs, found))
        return found


def _findings(
    violations: dict[int, list[dict[str, Any]]], kept: np.ndarray, whole: bool
) -> tuple[list[list[dict[str, Any]]], list[str | None] | None]:
    """The findings of the kept rows that have any, in order, and the `quality` column (None when
    no kept row has any); `whole`: every row is kept, so a row's index is its place."""
    if not violations:
        return [], None
    among = violations if whole else set(kept.tolist())
    flagged = [k for k in violations if k in among]
    if not flagged:
        return [], None
    quality: list[str | None] = [None] * len(kept)
    places = flagged if whole else np.searchsorted(kept, flagged).tolist()  # kept is in order
    for place, k in zip(places, flagged, strict=True):
        quality[place] = json.dumps(violations[k])
    return [violations[k] for k in flagged], quality


def _readable(chunk: Chunk) -> list[int]:
    """The offsets of the chunk's records that are not BadRecords (none is, where pyarrow read it)."""
    if chunk.parsed is not None:
        return list(range(len(chunk.records)))
    return [i for i, record in enumerate(chunk.records) if not isinstance(record, BadRecord)]


# Fields a rule's `set` cannot have for the column path: the row path would put them in a column of
# the model's answer or the findings, or flatten them its own way (aimass.batch.job._flat).
RULES_CANNOT_SET = frozenset(
    {"label", "prediction", "value", "probabilities", "anomaly", "anomaly_score", "anomalous", "quality"}
    | {"flags", "rules", "other", "row"}
)


class _Ruled:
    """A chunk's rules: the pre stage on the rows kept so far (its rejections), the post stage on the
    model's answer, and what fired as the columns the row path flattens (rules, flags, set fields)."""

    def __init__(self, rules: ColumnRules, model: LoadedModel, instances: np.ndarray) -> None:
        self.rules = rules
        self.model = model
        self.signature = model.version.signature
        self.instances = instances
        self.ref = dict(model.ref())
        self.fired_pre: np.ndarray | None = None

    def _contexts(self, rows: np.ndarray) -> list[Any]:
        """The rows as the online path's rules see them: instances keyed by feature, None where missing."""
        features = self.signature.features or []
        instances = []
        for values in self.instances[rows].tolist():
            instance: dict[str, Any] = {}
            for feature, value in zip(features, values, strict=True):
                instance[feature.name] = (
                    None if value != value else int(value) if feature.dtype == "int" else value
                )
            instances.append(instance)
        return self.rules.rules.contexts(instances, self.ref)

    def pre(
        self, kept: np.ndarray, scores: np.ndarray | None, refuse: Callable[[int, list[Reason]], None]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The pre stage on the kept rows (indexes into the instances); those its rules reject are
        refused with their reasons as the row path gets them (in rounds of at most MAX_DETAILS), the
        others kept, with their anomaly scores."""
        rejected = self._rejected(kept)
        for k, reasons in rejected.items():
            refuse(k, reasons)
        if not rejected:
            return kept, scores
        stays = np.array([k not in rejected for k in kept.tolist()], dtype=bool)
        return kept[stays], None if scores is None else scores[stays]

    def _rejected(self, kept: np.ndarray) -> dict[int, list[Reason]]:
        rules = self.rules
        fired = rules.fired(
            "pre",
            self.instances[kept],
            self.ref,
            None,
            lambda at: rules.rules.evaluate("pre", self._contexts(kept[at])),
        )
        order = rules.order("pre")
        rejects = [j for j, rule in enumerate(order) if rule.action == "reject"]
        rejected: dict[int, list[Reason]] = {}
        if rejects and fired[:, rejects].any():
            details = [
                (int(k), reason(f"rule {order[j].id}: {order[j].reject}", "rule_rejected"))
                for k, row in zip(kept, fired, strict=True)
                for j in rejects
                if row[j]
            ]
            while details:  # the row path's rounds: a rejection names at most MAX_DETAILS instances
                this_round: dict[int, list[Reason]] = {}
                for k, found in details[:MAX_DETAILS]:
                    this_round.setdefault(k, []).append(found)
                rejected |= this_round
                details = [(k, found) for k, found in details if k not in this_round]
        self.fired_pre = fired[[k not in rejected for k in kept.tolist()]]
        return rejected

    def post(
        self, kept: np.ndarray, outputs: dict[str, np.ndarray], columns: dict[str, Values]
    ) -> dict[str, list[Any]]:
        """The post stage on the model's answer, and the columns of what fired in both stages."""
        rules, signature = self.rules, self.signature

        def by_cel(at: np.ndarray) -> list[list[FiredRule]]:
            items = codecs.v1_predictions(signature, {k: v[at] for k, v in outputs.items()}, len(at))
            return rules.rules.evaluate("post", self._contexts(kept[at]), items)

        fired = rules.fired(
            "post", self.instances[kept], self.ref, output_columns(signature, columns), by_cel
        )
        assert self.fired_pre is not None
        both = np.hstack([self.fired_pre, fired])
        return fired_columns(
            [*rules.order("pre"), *rules.order("post")], both, bare="label" not in columns, rules=rules.rules
        )


def fired_columns(
    order: list[FiredRule], fired: np.ndarray, bare: bool, rules: CompiledRuleset
) -> dict[str, list[Any]]:
    """What fired (rows x `order`) as the row path's columns: each field a `set` gives (in the order
    the row path meets them: by row, then the ruleset's), `rules` (the ids, `;`-joined: empty where
    none fired, absent on a bare answer), `flags` (`; `-joined, or empty)."""
    if fired.shape[1] <= 62:  # each row's rules as the bits of one number: a 1-d unique is fast
        codes = fired.astype(np.int64) @ (np.int64(1) << np.arange(fired.shape[1], dtype=np.int64))
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        combos = fired[first]
    else:
        combos, first, inverse = np.unique(fired, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    fields: dict[str, None] = {}
    shapes: list[tuple[Any, Any, dict[str, Any]]] = []
    for combo in combos:
        rows = [order[j] for j in np.flatnonzero(combo)]
        item = rules.apply([0 if bare else {}], [rows])[0]
        if not isinstance(item, dict):  # a bare answer no rule fired on stays bare
            shapes.append((None, None, {}))
            continue
        sets = {k: scalar(v) for k, v in item.items() if k not in ("rules", "flags", "value")}
        shapes.append(
            (";".join(r["id"] for r in item["rules"]), "; ".join(item.get("flags", [])) or None, sets)
        )
    for c in np.argsort(first, kind="stable"):
        fields.update(dict.fromkeys(shapes[c][2]))
    for rule in rules.ruleset.rules:
        fields.update(dict.fromkeys(rule.then.set or {}))

    def per_row(values: list[Any]) -> list[Any]:
        held = np.empty(len(values), dtype=object)
        held[:] = values
        return list(held[inverse])

    found = {key: per_row([shape[2].get(key) for shape in shapes]) for key in fields}
    texts = [shape[0] for shape in shapes]
    if not bare or any(t is not None for t in texts):
        found["rules"] = per_row(texts)
    found["flags"] = per_row([shape[1] for shape in shapes])
    return found


def scalar(value: Any) -> Any:
    """A value as one output cell: itself when it is a scalar, else its JSON."""
    return value if value is None or isinstance(value, str | int | float | bool) else json.dumps(value)


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
    if chunk.matrix is not None and chunk.matrix.shape == (len(offsets), len(features)):
        return chunk.matrix, _missing(features, chunk.matrix, offsets)
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


def _missing(features: list[Feature], matrix: np.ndarray, offsets: list[int]) -> dict[int, list[Reason]]:
    """The reasons of rows of a matrix pyarrow read (every value a number or missing) that lack a
    required feature: in feature order, as _matrix lists them."""
    required = np.array([not feature.nullable for feature in features], dtype=bool)
    reasons: dict[int, list[Reason]] = {}
    for k, j in true_cells(np.isnan(matrix) & required):  # row by row, then column by column
        reasons.setdefault(offsets[k], []).append(
            reason("required feature is missing", "missing", features[j].name)
        )
    return reasons


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
