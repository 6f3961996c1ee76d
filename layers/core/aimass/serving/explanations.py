"""`:explain`: a version's Kernel SHAP attributions (aimass.explain) through its runner, against its
baseline's background rows, within a budget of model rows (docs/explain.md).

Any version with a runner can be explained (ONNX in process, a SageMaker endpoint, a graph of
versions): the coalition rows go through the runner a chunk at a time, as the version's one input
(its feature columns, or an image's cells in its shape). What is explained is a classifier's class
probability or a regressor's value, read from the outputs as `:predict` reads them. Nothing is
captured: an explanation runs thousands of rows that nobody sent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass import explain
from aimass.contracts.explain import ExplainParameters
from aimass.contracts.registry import ModelVersion, Signature
from aimass.errors import Conflict, ValidationFailed, field_error
from aimass.protocol.tensors import NUMPY_DTYPES, class_probabilities
from aimass.quality.columns import columns_of
from aimass.serving import codecs
from aimass.serving.backends import Runner, kind_of
from aimass.serving.store import LoadedModel, ModelStore

# Rows per call to a version that does not run in this process (a SageMaker endpoint): a chunk of
# float rows as JSON stays well under the endpoint's 6 MB payload for a few hundred features.
REMOTE_CHUNK_ROWS = 2048


@dataclass(frozen=True)
class Budget:
    """What one request may cost: model rows (instances x coalitions x background rows), instances."""

    max_rows: int
    max_instances: int = 10_000


@dataclass(frozen=True)
class Background:
    """The rows attributions are measured against, and where they came from."""

    rows: np.ndarray
    source: str


def feature_names(signature: Signature) -> list[str]:
    """The explained features, in the version's order: its named features, or its one input's cells
    (`image[3][4]`); Conflict when the version has no such columns or a non-numeric one."""
    columns = columns_of(signature)
    if columns is None or len(signature.inputs) != 1:
        raise Conflict(
            "this version cannot be explained: it has no one input of feature columns (several inputs, "
            "or a dynamic cell shape)"
        )
    text = [c.name for c in columns if c.kind != "numeric"]
    if text:
        raise Conflict(
            f"this version cannot be explained: Kernel SHAP here mixes numeric features only, and "
            f"{', '.join(text[:5])} {'is' if len(text) == 1 else 'are'} not"
        )
    return [c.name for c in columns]


class VersionFunction:
    """A version as Kernel SHAP's f: feature rows in, its explained outputs (rows by outputs) out,
    one runner call per call. `names` are the outputs' names (class names, or `value`)."""

    def __init__(self, signature: Signature, run: Runner) -> None:
        self.signature = signature
        self.run = run
        spec = signature.inputs[0]
        self.input = spec.name
        self.dtype = NUMPY_DTYPES[spec.dtype]
        cells = [d or 0 for d in spec.shape[1:]]
        self.cells = cells if len(cells) > 1 else None
        self.names: list[str] = []
        # What the rows are built in: the input's own float type, so no chunk is converted
        self.rows_dtype = self.dtype if np.dtype(self.dtype).kind == "f" else np.dtype(np.float64)

    def feeds(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        tensor = rows if self.cells is None else rows.reshape(len(rows), *self.cells)
        return {self.input: np.ascontiguousarray(tensor, dtype=self.dtype)}

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        matrix, self.names = output_matrix(self.signature, self.run(self.feeds(rows)), len(rows))
        return matrix


def output_matrix(signature: Signature, outputs: dict[str, Any], count: int) -> tuple[np.ndarray, list[str]]:
    """What is explained, rows by outputs, and the outputs' names: a classifier's class probabilities
    (named as `:predict` names them), else the one numeric output's columns (a regressor: `value`)."""
    probabilities = signature.probabilities_output
    if signature.task == "classification" and probabilities and probabilities in outputs:
        value = outputs[probabilities]
        labels = signature.class_labels
        if isinstance(value, np.ndarray):
            matrix = value.reshape(count, -1).astype(np.float64)
            width = matrix.shape[1]
            names = list(labels) if labels and len(labels) == width else [str(i) for i in range(width)]
            return matrix, names
        rows = list(value)  # ZipMap: a list of {class: probability}
        keys = list(rows[0])
        names = list(class_probabilities(rows[0], labels))
        return np.array([[row[k] for k in keys] for row in rows], dtype=np.float64), names
    numeric = [
        (name, value)
        for name, value in outputs.items()
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and len(value) == count
    ]
    if len(numeric) != 1:
        raise Conflict(
            "this version cannot be explained: its outputs are neither class probabilities nor one "
            "numeric output"
        )
    name, value = numeric[0]
    matrix = value.reshape(count, -1).astype(np.float64)
    if matrix.shape[1] == 1:
        return matrix, ["value" if signature.task == "regression" else name]
    return matrix, [f"{name}[{i}]" for i in range(matrix.shape[1])]


def background_of(store: ModelStore, record: ModelVersion, features: Sequence[str]) -> Background:
    """The version's background: its baseline's sample of reference rows; for a baseline made before
    those were kept, the statistics' means as one row; Conflict (409) without a baseline."""
    where = f"model {record.name!r} version {record.version}"
    if record.baseline is None:
        raise Conflict(
            f"{where} has no baseline to explain against: register it with a reference dataset "
            "(`aimass models push NAME FILE --reference data.csv`, or `reference` in the API)"
        )
    document = store.background_for(record)
    if document is not None:
        rows = np.array(
            [[np.nan if v is None else v for v in row] for row in document["rows"]], dtype=np.float64
        )
        # A row missing a value the model is never given missing (`:predict` refuses it) is left out
        columns = columns_of(record.signature) or []
        required = [j for j, column in enumerate(columns) if not column.nullable]
        rows = rows[~np.isnan(rows[:, required]).any(axis=1)]
        if len(rows) == 0:
            raise Conflict(
                f"{where}'s background rows all miss a value of a feature that is not nullable: register "
                "a version with a reference dataset of complete rows to explain it"
            )
        return Background(rows, "reference sample")
    statistics = store.statistics_for(record) or {}
    means = {f["name"]: f.get("numerical_statistics", {}).get("mean") for f in statistics.get("features", [])}
    missing = [name for name in features if means.get(name) is None]
    if missing:
        raise Conflict(
            f"{where} has no background rows and its statistics give no mean of {', '.join(missing[:5])}: "
            "register a version with a reference dataset to explain it"
        )
    return Background(np.array([[means[name] for name in features]], dtype=np.float64), "statistics means")


def _over_budget(count: int, samples: int, background: int, rows: int, budget: int) -> ValidationFailed:
    return ValidationFailed(
        f"explaining {count} instances with {samples} coalitions each over {background} background rows "
        f"runs the model on {rows} rows; the budget is {budget} rows a request (AIMASS_EXPLAIN_MAX_ROWS)",
        [
            field_error(
                ["body", "parameters", "samples"],
                f"{count} instances x {samples} coalitions x {background} background rows = {rows} rows, "
                f"over the budget of {budget}: send fewer instances, or lower `samples` or `background`",
                "over_budget",
            )
        ],
    )


def _explained_columns(
    chosen: str | int | None, names: list[str], outputs: np.ndarray, count: int
) -> np.ndarray:
    """The output column explained for each instance: the one `class` names, else its largest (a
    classifier's predicted class)."""
    if chosen is None:
        picked: np.ndarray = outputs.argmax(axis=1)
        return picked
    if str(chosen) in names:
        return np.full(count, names.index(str(chosen)))
    if isinstance(chosen, int) and 0 <= chosen < len(names):
        return np.full(count, chosen)
    raise ValidationFailed(
        f"class {chosen!r} is not one of the model's outputs ({', '.join(names[:20])})",
        [field_error(["body", "parameters", "class"], f"one of {', '.join(names[:20])}", "unknown_class")],
    )


def explain_instances(
    store: ModelStore,
    model: LoadedModel,
    instances: list[Any],
    parameters: ExplainParameters,
    budget: Budget,
) -> dict[str, Any]:
    """The `:explain` answer (contracts.explain.ExplainResponse) for a loaded version; ValidationFailed
    (422) when it would cost more than the budget, before the model runs."""
    if len(instances) > budget.max_instances:
        raise ValidationFailed(
            f"{len(instances)} instances in one request; the limit is {budget.max_instances}",
            [field_error(["body", "instances"], f"at most {budget.max_instances}", "too_many")],
        )
    record = model.version
    signature = record.signature
    names = feature_names(signature)
    feeds = codecs.v1_feeds(signature, instances)
    tensor = feeds[signature.inputs[0].name]
    count = len(tensor)
    background = background_of(store, record, names)
    rows = background.rows if parameters.background is None else background.rows[: parameters.background]
    f = VersionFunction(signature, model.run)
    matrix = tensor.reshape(count, -1).astype(f.rows_dtype)
    samples = explain.default_samples(len(names)) if parameters.samples is None else parameters.samples
    needed = explain.evaluated_rows(count, len(names), samples, len(rows))
    if needed > budget.max_rows:
        drawn = explain.coalitions_count(len(names), samples)
        raise _over_budget(count, drawn, len(rows), needed, budget.max_rows)
    backend = store.backends.get(kind_of(record.backend))
    local = backend is not None and backend.local(record)
    result = explain.kernel_shap(
        f,
        rows.astype(f.rows_dtype),
        matrix,
        samples,
        parameters.seed,
        chunk_rows=explain.CHUNK_ROWS if local else REMOTE_CHUNK_ROWS,
    )
    # One more run of the instances, for their predictions as `:predict` reads them (labels included)
    predictions = codecs.v1_predictions(signature, model.run(feeds), count)
    columns = _explained_columns(parameters.class_, f.names, result.outputs, count)
    shap = []
    clarify = []
    for i, column in enumerate(columns.tolist()):
        values = result.attributions[i, :, column].tolist()
        shap.append(
            {
                "class": f.names[column],
                "value": float(result.outputs[i, column]),
                "base_value": float(result.base[column]),
                "attributions": dict(zip(names, values, strict=True)),
            }
        )
        clarify.append(
            [
                {"feature_header": name, "attributions": [{"attribution": [value]}]}
                for name, value in zip(names, values, strict=True)
            ]
        )
    return {
        "predictions": predictions,
        "shap": shap,
        "explanations": {"kernel_shap": clarify},
        "samples": result.samples,
        "exact": result.exact,
        "seed": parameters.seed,
        "background": {"rows": len(rows), "source": background.source},
        "model": model.ref(),
    }


def global_importance(
    store: ModelStore, model: LoadedModel, samples: int | None = None, seed: int = 0, rows: int | None = None
) -> dict[str, float]:
    """Mean |SHAP| per feature name over the version's background rows (the first `rows`; all when
    None), each row's predicted class (a regressor's value) explained against the whole background:
    the global summary of a model card (aimass.explain.global_importance). Its cost is about rows x
    samples x background model rows: 6.5 s for breast-cancer's 100 rows at the default samples
    on a busy 2-CPU machine, 0.5 s with rows=20 and samples=512; compute it once per version."""
    record = model.version
    names = feature_names(record.signature)
    background = background_of(store, record, names)
    f = VersionFunction(record.signature, model.run)
    importance = explain.global_importance(f, background.rows.astype(f.rows_dtype), samples, seed, rows)
    return dict(zip(names, importance.tolist(), strict=True))
