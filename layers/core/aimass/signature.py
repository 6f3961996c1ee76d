"""A model's signature: read from its ONNX graph, then enriched with what the uploader knows."""

from __future__ import annotations

from typing import Any, cast

from aimass.contracts.registry import Feature, Signature, SignatureEnrichment, Task, TensorSpec, TensorType
from aimass.errors import ValidationFailed, field_error
from aimass.protocol.tensors import ONNX_TYPES

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


def enrich(signature: Signature, enrichment: SignatureEnrichment | None) -> Signature:
    """Apply the uploader's feature names, ranges, categories and labels, checked against the graph."""
    if enrichment is None:
        return signature
    updated = signature.model_copy(deep=True)
    if enrichment.task:
        updated.task = enrichment.task
    if enrichment.features is not None:
        updated.features = _features_for(signature, enrichment.features)
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
        columns = next(
            (
                o.shape[-1]
                for o in signature.outputs
                if o.name == signature.probabilities_output and len(o.shape) == 2
            ),
            None,
        )
        if columns is not None and columns != len(enrichment.class_labels):
            raise ValidationFailed(
                f"{len(enrichment.class_labels)} class labels for {columns} probability columns",
                [field_error(["metadata", "class_labels"], f"expected {columns} labels", "length_mismatch")],
            )
        updated.class_labels = enrichment.class_labels
    return updated


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
