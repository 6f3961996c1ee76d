"""Compressing a registered version: an int8 (dynamic or static) or float16 copy made with ONNX
Runtime's own tools, judged against the original on held-out rows (agreement, probability and
value differences, the metric against labels when the rows have them, speed, size), registered as
the model's `challenger` with those figures in its lineage, or refused with them (docs/compression.md).

`onnx` (which ONNX Runtime's quantization tools need) is imported here only: the serving path never
loads this module.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aimass import artifacts
from aimass.contracts.compression import CompressionFigures, Method, Quantized, QuantizeRequest, Speed
from aimass.contracts.registry import ModelVersion, Signature, SignatureEnrichment
from aimass.errors import NotFound, ValidationFailed, field_error
from aimass.gateways.s3 import ObjectRefused
from aimass.protocol.tensors import NUMPY_DTYPES
from aimass.quality import baseline
from aimass.quality.columns import columns_of
from aimass.registration import register_version, set_alias
from aimass.registry import Registry
from aimass.serving import codecs
from aimass.serving.backends.onnx import new_session

# The operators whose weights int8 or float16 shrink; a graph without any (a tree ensemble, a
# LinearClassifier of ONNX-ML) has nothing a quantizer would change.
WEIGHT_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "Attention")
CHALLENGER = "challenger"
# A regressor's answer "agrees" when within this share of the original answers' spread (their
# standard deviation; 1.0 when they are all alike).
VALUE_TOLERANCE = 0.01
# Rows used for static calibration, and for the batch timing (the single-row timing uses SINGLE_RUNS).
CALIBRATION_ROWS = 200
TIMED_BATCH_ROWS = 1000
SINGLE_RUNS = 101
BATCH_RUNS = 7
SEED = 0


@dataclass(frozen=True)
class Rows:
    """Evaluation rows over the model's columns, their labels (class names or values) when known."""

    matrix: np.ndarray
    labels: list[str] | None
    source: str


def weight_ops(model: bytes) -> dict[str, int]:
    """How many weight-bearing operators (WEIGHT_OPS) the graph has, by type."""
    import onnx

    graph = onnx.load_from_string(model).graph
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in WEIGHT_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _input_spec(signature: Signature) -> Any:
    spec = signature.inputs[0] if len(signature.inputs) == 1 else None
    if spec is None or spec.dtype in ("string", "bool") or columns_of(signature) is None:
        raise ValidationFailed(
            "only a model with one numeric input of fixed row shape can be judged on rows here",
            [
                field_error(
                    ["path", "version"], "several inputs, or strings, or a dynamic shape", "unsupported"
                )
            ],
        )
    return spec


def feeds(signature: Signature, matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Rows (by the model's columns) as the model's one input, in its cell shape and dtype."""
    spec = _input_spec(signature)
    cells = [d or 0 for d in spec.shape[1:]]
    tensor = matrix.reshape(len(matrix), *cells) if len(cells) > 1 else matrix
    return {spec.name: np.ascontiguousarray(tensor, dtype=NUMPY_DTYPES[spec.dtype])}


def rows_from_reference(signature: Signature, data: bytes, filename: str, source: str, limit: int) -> Rows:
    """Held-out rows from a reference file; its `label` column (CSV only) is kept as the labels."""
    columns = columns_of(signature)
    assert columns is not None
    matrix = baseline.read_reference(data, filename, columns)
    labels = None
    if not filename.lower().endswith((".parquet", ".gz")) and data[:4] != b"PAR1":
        records = [r for r in csv.reader(io.StringIO(data.decode("utf-8-sig"))) if r]
        header = [h.strip() for h in records[0]]
        if "label" in header:
            at = header.index("label")
            labels = [r[at].strip() for r in records[1:]]
    if len(matrix) > limit:
        keep = np.sort(np.random.default_rng(SEED).choice(len(matrix), limit, replace=False))
        matrix = matrix[keep]
        labels = [labels[i] for i in keep] if labels is not None else None
    return Rows(matrix, labels, source)


def rows_from_baseline(statistics: dict[str, Any], signature: Signature, count: int) -> Rows:
    """Rows drawn (seeded) from each feature's distribution in the version's baseline: its sketch of
    the reference's values. Features are drawn independently, so the rows keep the reference's
    marginals, not its correlations: a fair test of agreement, no test of accuracy (no labels)."""
    columns = columns_of(signature)
    assert columns is not None
    rng = np.random.default_rng(SEED)
    by_name = {f["name"]: f for f in statistics["features"]}
    matrix = np.zeros((count, len(columns)))
    for j, column in enumerate(columns):
        numbers = by_name.get(column.name, {}).get("numerical_statistics", {})
        sketch = numbers.get("distribution", {}).get("kll", {}).get("sketch", {}).get("data", [[]])[0]
        matrix[:, j] = rng.choice(sketch, count) if sketch else numbers.get("mean", 0.0)
    return Rows(matrix, None, f"{count} rows drawn from the baseline of {statistics_source(statistics)}")


def statistics_source(statistics: dict[str, Any]) -> str:
    return f"{statistics['dataset']['item_count']} reference rows"


class _PreprocessingAdvice(logging.Filter):
    """ONNX Runtime's quantizers log, on the root logger at WARNING, advice to run its shape
    pre-processing first: once per call, with a URL, in every function's logs. It is advice for
    large transformer graphs; the figures judge the copy either way."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider")


@contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    root, advice = logging.getLogger(), _PreprocessingAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def compress(model: bytes, method: Method, calibration: dict[str, np.ndarray]) -> bytes:
    """The compressed model's bytes: ONNX Runtime's quantize_dynamic / quantize_static (QDQ, per
    channel weights), or its float16 converter (inputs and outputs stay float32)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    with tempfile.TemporaryDirectory() as folder, _without_preprocessing_advice():
        source, target = Path(folder, "model.onnx"), Path(folder, "compressed.onnx")
        source.write_bytes(model)
        if method == "dynamic":
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        elif method == "static":
            (name, values), *_ = calibration.items()
            batches = [{name: values[i : i + 1]} for i in range(min(len(values), CALIBRATION_ROWS))]

            class Calibration(CalibrationDataReader):  # the evaluation rows, one row per feed
                def __init__(self) -> None:
                    self.batches = iter(batches)

                def get_next(self) -> dict[str, np.ndarray] | None:
                    return next(self.batches, None)

            quantize_static(source, target, Calibration(), quant_format=QuantFormat.QDQ, per_channel=True)
        else:
            from onnxruntime.transformers.float16 import convert_float_to_float16

            onnx.save(convert_float_to_float16(onnx.load(source), keep_io_types=True), target)
        return target.read_bytes()


def _answers(session: Any, signature: Signature, given: dict[str, np.ndarray], count: int) -> list[Any]:
    names = [o.name for o in session.get_outputs()]
    return codecs.v1_predictions(signature, dict(zip(names, session.run(names, given), strict=True)), count)


def _probabilities(answer: Any) -> np.ndarray:
    values = answer["probabilities"]
    return np.asarray(list(values.values()) if isinstance(values, dict) else values, dtype=np.float64)


def _values(answers: list[Any]) -> np.ndarray:
    return np.asarray([baseline.prediction_value(a) for a in answers], dtype=np.float64)


def judge(
    signature: Signature, original: list[Any], compressed: list[Any], labels: list[str] | None
) -> dict[str, Any]:
    """Agreement, the largest differences and, with labels, the metric of each model."""
    figures: dict[str, Any] = {}
    if signature.task == "classification" and signature.label_output and signature.probabilities_output:
        said = [str(a["label"]) for a in original]
        says = [str(a["label"]) for a in compressed]
        figures["agreement"] = float(np.mean([a == b for a, b in zip(said, says, strict=True)]))
        pairs = zip(original, compressed, strict=True)
        differences = [np.abs(_probabilities(a) - _probabilities(b)).max() for a, b in pairs]
        figures["max_probability_difference"] = float(max(differences))
        if labels is not None:
            figures["metric"] = "accuracy"
            figures["metric_original"] = float(np.mean([a == y for a, y in zip(said, labels, strict=True)]))
            figures["metric_compressed"] = float(np.mean([a == y for a, y in zip(says, labels, strict=True)]))
    else:
        before, after = _values(original), _values(compressed)
        spread = float(before.std()) or 1.0
        figures["agreement"] = float(np.mean(np.abs(after - before) <= VALUE_TOLERANCE * spread))
        figures["max_value_difference"] = float(np.abs(after - before).max())
        if labels is not None:
            truth = np.asarray([float(y) for y in labels])
            figures["metric"] = "mae"
            figures["metric_original"] = float(np.abs(before - truth).mean())
            figures["metric_compressed"] = float(np.abs(after - truth).mean())
    if "metric" in figures:
        figures["metric_delta"] = figures["metric_compressed"] - figures["metric_original"]
    return figures


def speeds(sessions: tuple[Any, Any], given: dict[str, np.ndarray]) -> tuple[Speed, Speed]:
    """Each session's median single-row time and batch rate, timed in turns so that a load change on
    the machine falls on both."""
    (name, values), *_ = given.items()
    batch = {name: values[:TIMED_BATCH_ROWS]}
    singles: tuple[list[float], list[float]] = ([], [])
    rates: tuple[list[float], list[float]] = ([], [])
    for session in sessions:  # a first run each, untimed: allocation and kernel choice
        session.run(None, batch)
    for i in range(SINGLE_RUNS):
        row = {name: values[i % len(values) : i % len(values) + 1]}
        for session, times in zip(sessions, singles, strict=True):
            start = time.perf_counter()
            session.run(None, row)
            times.append(time.perf_counter() - start)
    for _ in range(BATCH_RUNS):
        for session, times in zip(sessions, rates, strict=True):
            start = time.perf_counter()
            session.run(None, batch)
            times.append(len(values[:TIMED_BATCH_ROWS]) / (time.perf_counter() - start))
    first, second = (
        Speed(single_row_ms=float(np.median(s)) * 1000, batch_rows_per_s=float(np.median(r)))
        for s, r in zip(singles, rates, strict=True)
    )
    return first, second


def evaluation_rows(record: ModelVersion, request: QuantizeRequest) -> Rows:
    """The rows to judge on: the request's reference, else rows drawn from the version's baseline."""
    if request.reference_uri:
        try:
            artifacts.parse_uri(request.reference_uri)
            data = artifacts.get(request.reference_uri)
        except (ValueError, NotFound, ObjectRefused) as error:  # the caller's URI: bad, missing, forbidden
            # AWS being down (AwsUnavailable) is not the caller's fault: it stays a 503
            reason = error.message if isinstance(error, NotFound) else str(error)
            raise ValidationFailed(
                f"cannot read the reference dataset {request.reference_uri}: {reason}",
                [field_error(["body", "reference_uri"], "cannot be read", "unreadable")],
            ) from error
        uri = request.reference_uri
        return rows_from_reference(record.signature, data, uri, uri, request.max_rows)
    if record.baseline is None:
        raise ValidationFailed(
            f"version {record.version} has no baseline to draw rows from: give held-out rows",
            [field_error(["body", "reference_uri"], "required: the version has no baseline", "missing")],
        )
    ref = record.baseline
    statistics = json.loads(artifacts.verified(ref.statistics_uri, ref.sha256["statistics.json"]))
    return rows_from_baseline(statistics, record.signature, min(request.max_rows, 1000))


def quantizable(record: ModelVersion, model: bytes) -> dict[str, int]:
    """The graph's weight-bearing operators; a 422 `nothing_to_quantize` when it has none."""
    ops = weight_ops(model)
    if not ops:
        raise ValidationFailed(
            f"nothing to quantize: version {record.version} of {record.name!r} has no "
            f"{', '.join(WEIGHT_OPS)} operator (a tree ensemble or an ONNX-ML linear model keeps its "
            "weights in attributes that int8 and float16 leave as they are)",
            [field_error(["path", "version"], "no weight-bearing operator", "nothing_to_quantize")],
        )
    return ops


def measure(
    record: ModelVersion, model: bytes, request: QuantizeRequest, rows: Rows
) -> tuple[bytes, CompressionFigures]:
    """The compressed model and the figures judging it against `model` (the version's bytes)."""
    ops = quantizable(record, model)
    given = feeds(record.signature, rows.matrix)
    compressed = compress(model, request.method, given)
    sessions = (new_session(model), new_session(compressed))
    count = len(rows.matrix)
    original_answers, compressed_answers = (_answers(s, record.signature, given, count) for s in sessions)
    judged = judge(record.signature, original_answers, compressed_answers, rows.labels)
    before, after = speeds(sessions, given)
    figures = CompressionFigures(
        method=request.method,
        source_version=record.version,
        rows=count,
        rows_from=rows.source,
        quantized_ops=ops,
        size_bytes_original=len(model),
        size_bytes_compressed=len(compressed),
        size_ratio=len(compressed) / len(model),
        speed_original=before,
        speed_compressed=after,
        single_row_speedup=before.single_row_ms / after.single_row_ms,
        batch_speedup=after.batch_rows_per_s / before.batch_rows_per_s,
        min_agreement=request.min_agreement,
        **judged,
    )
    return compressed, figures


def summary(figures: CompressionFigures) -> str:
    parts = [f"agreement {figures.agreement:.4f} on {figures.rows} rows"]
    if figures.max_probability_difference is not None:
        parts.append(f"max probability difference {figures.max_probability_difference:.3g}")
    if figures.max_value_difference is not None:
        parts.append(f"max value difference {figures.max_value_difference:.3g}")
    if figures.metric_delta is not None:
        parts.append(f"{figures.metric} {figures.metric_original:.4g} → {figures.metric_compressed:.4g}")
    parts.append(f"size x{figures.size_ratio:.2f}")
    parts.append(f"one row x{figures.single_row_speedup:.2f} faster, batch x{figures.batch_speedup:.2f}")
    return ", ".join(parts)


def quantize_version(
    registry: Registry,
    bucket: str,
    name: str,
    version: int,
    request: QuantizeRequest,
    actor: str,
    note: str | None = None,
) -> Quantized:
    """Compress `name` v`version`, judge it, and register it as the `challenger` (never champion: a
    rollout takes it live), sharing the source's baseline; a 422 with the figures when its agreement
    is under `request.min_agreement`, and nothing registered."""
    record = registry.get_version(name, version)
    if record.graph is not None:
        raise ValidationFailed(
            f"{name} v{version} is a graph of other versions: quantize its members, then compose them again",
            [field_error(["path", "version"], "a graph has no model file of its own", "graph_version")],
        )
    model = artifacts.verified(record.artifact_uri, record.sha256)
    _input_spec(record.signature)
    quantizable(record, model)  # before any rows are read: the model is the first thing wrong
    compressed, figures = measure(record, model, request, evaluation_rows(record, request))
    if figures.agreement < request.min_agreement:
        raise ValidationFailed(
            f"the {request.method} model agrees with v{version} on too few rows: {summary(figures)}",
            [
                field_error(
                    ["body", "min_agreement"],
                    f"agreement {figures.agreement:.4f} is under {request.min_agreement}",
                    "agreement_too_low",
                )
            ],
        )
    signature = record.signature
    enrichment = SignatureEnrichment(
        features=list(signature.features) if signature.features else None,
        class_labels=signature.class_labels,
        task=signature.task,
        description=f"{request.method} compression of v{version}: {summary(figures)}"[:2000],
    )
    lineage = {"compressed_from": version, "compression": figures.model_dump()}
    registered = register_version(
        registry,
        bucket,
        name,
        compressed,
        actor,
        enrichment,
        metrics={figures.metric: figures.metric_compressed}
        if figures.metric and figures.metric_compressed is not None
        else None,
        lineage=lineage,
        backend=record.backend,
        note=note,
        baseline_ref=record.baseline,
    )
    set_alias(registry, name, CHALLENGER, registered.version, actor, note)
    return Quantized(version=registered, alias=CHALLENGER, figures=figures)
