"""A model's signature: read from its ONNX graph, then enriched with what the uploader knows and,
for a classifier, with what its probabilities output really gives for one synthetic row (the probe,
run once at push time, never on the predict path)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from aimass.contracts.registry import Feature, Signature, SignatureEnrichment, Task, TensorSpec, TensorType
from aimass.errors import ValidationFailed, field_error
from aimass.protocol.tensors import NUMPY_DTYPES, ONNX_TYPES

log = logging.getLogger(__name__)

# ONNX Runtime's type strings for tensors, as the protocol reads them; anything else (ZipMap's
# seq(map(...))) is not a tensor.
_ORT_TENSOR_TYPES = cast(dict[str, TensorType], ONNX_TYPES)
_FEATURE_TYPE_OF_TENSOR = {"bool": "bool", "string": "string"} | {
    t: "int" for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
}
LABEL_OUTPUT_NAMES = ("label", "output_label")
PROBABILITY_OUTPUT_NAMES = ("probabilities", "output_probability")


def _spec(arg: Any, where: str) -> TensorSpec:
    dtype = _ORT_TENSOR_TYPES.get(arg.type)
    if dtype is None:
        if where == "inputs":
            raise ValidationFailed(
                f"input {arg.name!r} has type {arg.type}; only tensor inputs are served",
                [field_error(["model", "inputs", arg.name], "not a tensor", "unsupported_input")],
            )
        # ZipMap's list of {class: probability}: served as V2 BYTES, one JSON object per row.
        return TensorSpec(name=arg.name, dtype="string", shape=[None])
    shape = [d if isinstance(d, int) and d > 0 else None for d in (arg.shape or [])]
    return TensorSpec(name=arg.name, dtype=dtype, shape=shape)


def from_session(session: Any) -> Signature:
    inputs = [_spec(a, "inputs") for a in session.get_inputs()]
    outputs = [_spec(a, "outputs") for a in session.get_outputs()]
    names = {o.name for o in outputs}
    label = next((n for n in LABEL_OUTPUT_NAMES if n in names), None)
    probabilities = next((n for n in PROBABILITY_OUTPUT_NAMES if n in names), None)
    task: Task = "classification" if label and probabilities else "other"
    if (
        task == "other"
        and len(outputs) == 1
        and outputs[0].dtype.startswith("float")
        and len(outputs[0].shape) <= 2
        and (len(outputs[0].shape) < 2 or outputs[0].shape[1] == 1)
    ):
        task = "regression"
    return Signature(
        inputs=inputs, outputs=outputs, task=task, label_output=label, probabilities_output=probabilities
    )


def read(session: Any, enrichment: SignatureEnrichment | None = None) -> Signature:
    """A version's signature at push time: the graph's, enriched, with the classes its probabilities
    output gives for a probe row (when it can be probed) recorded and checked against the labels."""
    graph = from_session(session)
    task = enrichment.task if enrichment is not None and enrichment.task else graph.task
    if task != "classification":
        return enrich(graph, enrichment)
    width = len(enrichment.features) if enrichment is not None and enrichment.features is not None else None
    return enrich(graph, enrichment, probe(session, graph, width))


def enrich(
    signature: Signature, enrichment: SignatureEnrichment | None, probed: Probed | None = None
) -> Signature:
    """Apply the uploader's feature names, ranges, categories and labels, checked against the graph
    and, when the version was probed, against the classes it outputs (recorded as output_classes)."""
    updated = signature.model_copy(deep=True)
    if enrichment is not None and enrichment.task:
        updated.task = enrichment.task
    if probed is not None and updated.task == "classification":
        updated.output_classes = [str(c) for c in probed.classes]
    if enrichment is None:
        return updated
    if enrichment.features is not None:
        updated.features = _features_for(signature, enrichment.features)
    if enrichment.pii:
        updated.features = _marked_personal(updated.features, enrichment.pii)
    if enrichment.class_labels is not None:
        if updated.task != "classification":
            raise ValidationFailed(
                "class_labels given for a model that is not a classifier",
                [
                    field_error(
                        ["metadata", "class_labels"],
                        "model has no label/probability outputs",
                        "not_a_classifier",
                    )
                ],
            )
        if len(set(enrichment.class_labels)) != len(enrichment.class_labels):
            raise ValidationFailed(
                "class_labels must be unique",
                [field_error(["metadata", "class_labels"], "duplicate labels", "duplicate")],
            )
        _check_label_count(signature, enrichment.class_labels, probed)
        updated.class_labels = enrichment.class_labels
    return updated


def _check_label_count(signature: Signature, labels: list[str], probed: Probed | None) -> None:
    """One label per probability column: the graph's static width, else the classes (or columns) the
    probe saw; a ZipMap's keys or a dynamic width that was not probed leave the count unchecked."""
    columns = next(
        (
            o.shape[-1]
            for o in signature.outputs
            if o.name == signature.probabilities_output and len(o.shape) == 2
        ),
        None,
    )
    what = "probability columns"
    if columns is None and probed is not None:
        columns = len(probed.classes)
        if probed.zipmap:
            what = f"classes the model outputs ({', '.join(map(str, probed.classes))})"
        else:
            what = "probability columns the model outputs"
    if columns is not None and columns != len(labels):
        raise ValidationFailed(
            f"{len(labels)} class labels for {columns} {what}",
            [field_error(["metadata", "class_labels"], f"expected {columns} labels", "length_mismatch")],
        )
    if probed is not None and probed.zipmap:
        _check_labels_name_zipmap_classes(labels, probed.classes)


def _check_labels_name_zipmap_classes(labels: list[str], classes: tuple[int | str, ...]) -> None:
    """Labels name a ZipMap's classes in order only where the classes are 0..n-1 (each label is looked
    up by its class number); a model that names its classes itself, or numbers them otherwise, would
    be answered and ruled under names that do not match it."""
    loc: list[str | int] = ["metadata", "class_labels"]
    shown = ", ".join(map(str, classes))
    if all(isinstance(c, str) for c in classes):
        if list(classes) != labels:
            raise ValidationFailed(
                f"this model names its classes itself ({shown}): its answers use those names, so "
                "class_labels can only repeat them; push without class_labels",
                [field_error(loc, f"the model's classes are {shown}", "labels_mismatch")],
            )
    elif list(classes) != list(range(len(classes))):
        raise ValidationFailed(
            f"this model's classes are {shown}, not 0..{len(classes) - 1}: class_labels name the classes "
            "0..n-1 in order; retrain on targets 0..n-1 (e.g. scikit-learn's LabelEncoder) or push "
            "without class_labels",
            [field_error(loc, f"the model's classes are {shown}", "labels_mismatch")],
        )


def _features_for(signature: Signature, given: list[Feature | str]) -> list[Feature]:
    if len(signature.inputs) != 1 or len(signature.inputs[0].shape) != 2:
        raise ValidationFailed(
            "feature names apply to a model with one 2-D input; this graph's inputs are "
            + ", ".join(f"{i.name}{i.shape}" for i in signature.inputs),
            [field_error(["metadata", "features"], "model input is not a single 2-D tensor", "not_tabular")],
        )
    tensor = signature.inputs[0]
    width = tensor.shape[1]
    if width is not None and width != len(given):
        raise ValidationFailed(
            f"{len(given)} features for an input of width {width}",
            [field_error(["metadata", "features"], f"expected {width} features", "length_mismatch")],
        )
    default_type = _FEATURE_TYPE_OF_TENSOR.get(tensor.dtype, "float")
    features = [
        f if isinstance(f, Feature) else Feature(name=f, dtype=cast(Any, default_type)) for f in given
    ]
    names = [f.name for f in features]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValidationFailed(
            "feature names must be unique",
            [field_error(["metadata", "features"], f"duplicate: {d}", "duplicate") for d in duplicates],
        )
    # A range no value fits would report every request as a violation.
    inverted = [
        field_error(["metadata", "features", i, "min"], f"min {f.min} is greater than max {f.max}", "range")
        for i, f in enumerate(features)
        if f.min is not None and f.max is not None and f.min > f.max
    ]
    if inverted:
        raise ValidationFailed("a feature's min is greater than its max", inverted)
    return features


def _marked_personal(features: list[Feature] | None, names: list[str]) -> list[Feature]:
    """The features, those named marked personal (`pii`); a name that is not a feature is refused:
    a misspelt name would leave the real feature's values stored raw."""
    known = {f.name for f in features or []}
    unknown = [
        field_error(["metadata", "pii", i], f"no feature {name!r}", "unknown_feature")
        for i, name in enumerate(names)
        if name not in known
    ]
    if unknown:
        raise ValidationFailed(
            "pii names features the model does not have"
            + ("" if features else " (it has no named features: give them with `features`)"),
            unknown,
        )
    return [f.model_copy(update={"pii": True}) if f.name in names else f for f in features or []]


# --- The probe -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probed:
    """What a classifier's probabilities output gave for one synthetic row: its classes in the order
    ONNX Runtime answers them (a ZipMap's keys, int or str, by key; a tensor's column indexes)."""

    classes: tuple[int | str, ...]
    zipmap: bool


# A fixed batch of large images would make a probe row of more values than a push should allocate.
PROBE_MAX_VALUES = 1 << 22


def probe_feeds(signature: Signature, features_width: int | None = None) -> dict[str, np.ndarray] | None:
    """One synthetic row per input (zeros of its dtype, empty strings, false; a fixed batch size
    kept), or None when a non-batch dimension is unknown (the width of a single 2-D input may come
    from the features) or the row would hold more than PROBE_MAX_VALUES values."""
    feeds = {}
    tabular = len(signature.inputs) == 1 and len(signature.inputs[0].shape) == 2
    for spec in signature.inputs:
        dims = list(spec.shape)
        if tabular and dims[1] is None:
            dims[1] = features_width
        if any(d is None for d in dims[1:]):
            return None
        shape = tuple(d or 1 for d in dims)
        if math.prod(shape) > PROBE_MAX_VALUES:
            return None
        if spec.dtype == "string":
            feeds[spec.name] = np.full(shape, "", dtype=object)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=NUMPY_DTYPES[spec.dtype])
    return feeds


def probe(session: Any, signature: Signature, features_width: int | None = None) -> Probed | None:
    """Run a classifier once on a synthetic row and read what its probabilities output really is: a
    ZipMap's keys (their order and type) or a probability tensor's width. None, logged, when there is
    nothing to probe or the probe cannot run (unknown dimensions, a model that fails on zeros, an
    output of an odd form): the push goes on as without it."""
    name = signature.probabilities_output
    if name is None:
        return None
    feeds = probe_feeds(signature, features_width)
    if feeds is None:
        log.info("classes of %s not probed: an input has dynamic non-batch dimensions, or is too large", name)
        return None
    try:
        [value] = session.run([name], feeds)
    except Exception as error:  # whatever the model raises on a row of zeros
        log.warning(
            "classes of %s not probed: the model failed on a synthetic row: %s: %s",
            name,
            type(error).__name__,
            str(error).splitlines()[0][:300] if str(error) else "",
        )
        return None
    found = _classes_of(value)
    if found is None:
        log.warning("classes of %s not probed: the output is %s", name, _described(value))
    return found


def _classes_of(value: Any) -> Probed | None:
    if isinstance(value, np.ndarray):
        if value.ndim != 2 or value.shape[1] == 0:
            return None
        return Probed(tuple(range(value.shape[1])), zipmap=False)
    if not isinstance(value, list) or not value or not all(isinstance(row, dict) for row in value):
        return None
    classes = tuple(int(c) if isinstance(c, np.integer) else c for c in value[0])
    # One key type (int or str) throughout; every row with the same number of classes.
    if {type(c) for c in classes} not in ({int}, {str}) or any(len(row) != len(classes) for row in value):
        return None
    return Probed(classes, zipmap=True)


def _described(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return type(value).__name__
