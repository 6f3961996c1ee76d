"""Requests in, tensors out, and back: strict checks with field-level details on every failure."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aimass.contracts import InferTensor, Signature, TensorSpec
from aimass.errors import MAX_DETAILS, ValidationFailed, field_error

NUMPY_DTYPES: dict[str, Any] = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
    "string": np.object_,
}
V2_DATATYPES = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
    "string": "BYTES",
}
_FLOAT_MAX = {t: float(np.finfo(NUMPY_DTYPES[t]).max) for t in ("float16", "float32", "float64")}


def _value_error(value: Any, dtype: str) -> str | None:
    """Why a JSON value cannot go into a tensor of this dtype, or None when it can."""
    kind = type(value)
    if dtype == "string":
        return None if kind is str else f"expected a string, got {_json_type(value)}"
    if dtype == "bool":
        return None if kind is bool else f"expected a boolean, got {_json_type(value)}"
    if kind is bool or kind not in (int, float):
        return f"expected a number, got {_json_type(value)}"
    if kind is float and not math.isfinite(value):
        return "expected a finite number"
    if dtype.startswith(("int", "uint")):
        if kind is float and not value.is_integer():
            return f"expected an integer, got {value}"
        limits = np.iinfo(NUMPY_DTYPES[dtype])
        if not limits.min <= value <= limits.max:
            return f"{value} is out of the {dtype} range"
    elif abs(value) > _FLOAT_MAX[dtype]:
        return f"{value} is out of the {dtype} range"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _matches(shape: tuple[int, ...], spec: list[int | None]) -> bool:
    return len(shape) == len(spec) and all(s is None or s == d for d, s in zip(shape, spec, strict=True))


def _shape_text(spec: list[int | None]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in spec) + "]"


def _to_tensor(
    rows: list[Any], spec: TensorSpec, loc_of_row: Any, columns: list[str] | None = None
) -> np.ndarray:
    """Stack per-instance values into one tensor of spec's dtype and shape, or fail with details."""
    errors: list[dict[str, Any]] = []
    try:
        array = np.array(rows, dtype=object)
    except ValueError:
        array = None
    row_spec = spec.shape[1:] if spec.shape else []
    if array is None or not _matches(array.shape[1:], row_spec):
        for i, row in enumerate(rows):
            try:
                got = np.array(row, dtype=object).shape
            except ValueError:
                got = None
            if got is None or not _matches(got, row_spec):
                errors.append(
                    field_error(
                        loc_of_row(i),
                        f"expected shape {_shape_text(row_spec)}, got "
                        f"{'ragged' if got is None else list(got)}",
                        "shape_mismatch",
                    )
                )
            if len(errors) >= MAX_DETAILS:
                break
        raise ValidationFailed(f"instances do not match input {spec.name!r}", errors)
    flat = array.reshape(-1)
    tensor = _convert_clean(flat, spec.dtype)
    if tensor is not None:
        return tensor.reshape(array.shape)
    for position, value in enumerate(flat):
        problem = _value_error(value, spec.dtype)
        if problem:
            row, offset = divmod(position, max(1, math.prod(array.shape[1:])))
            index: list[Any] = (
                [int(i) for i in np.unravel_index(offset, array.shape[1:])] if array.ndim > 1 else []
            )
            if columns and index:
                index[0] = columns[index[0]]
            errors.append(field_error([*loc_of_row(row), *index], problem, "type_error"))
            if len(errors) >= MAX_DETAILS:
                break
    if errors:
        raise ValidationFailed(
            f"instances have values that do not fit input {spec.name!r} ({spec.dtype})", errors
        )
    return array.astype(NUMPY_DTYPES[spec.dtype])


def _convert_clean(flat: np.ndarray, dtype: str) -> np.ndarray | None:
    """Vectorised conversion when every value is clean (the usual case); None sends the caller to
    the value-by-value check that explains what is wrong."""
    kinds = set(map(type, flat))
    try:
        if dtype.startswith("float") and kinds <= {int, float}:
            values = flat.astype(np.float64)
            if np.isfinite(values).all() and (values.size == 0 or np.abs(values).max() <= _FLOAT_MAX[dtype]):
                return values.astype(NUMPY_DTYPES[dtype])
        elif dtype.startswith(("int", "uint")) and kinds <= {int}:
            limits = np.iinfo(NUMPY_DTYPES[dtype])
            if flat.size == 0 or (limits.min <= min(flat) and max(flat) <= limits.max):
                return flat.astype(NUMPY_DTYPES[dtype])
        elif dtype == "bool" and kinds <= {bool}:
            return flat.astype(np.bool_)
        elif dtype == "string" and kinds <= {str}:
            return flat
    except OverflowError:
        pass
    return None


def _clean_feature_rows(names: list[str], spec: TensorSpec, instances: list[Any]) -> np.ndarray | None:
    """The usual request in one pass: objects with exactly the features (or rows of their width) and
    clean values. None sends the caller to the checks that explain what is wrong."""
    width = len(names)
    rows: list[Any] = []
    for instance in instances:
        kind = type(instance)
        if kind is dict and len(instance) == width:
            try:
                rows.append([instance[n] for n in names])
            except KeyError:
                return None
        elif kind is list and len(instance) == width:
            rows.append(instance)
        else:
            return None
    try:
        array = np.array(rows, dtype=object)
    except ValueError:
        return None
    if array.shape != (len(rows), width):
        return None
    tensor = _convert_clean(array.reshape(-1), spec.dtype)
    return None if tensor is None else tensor.reshape(array.shape)


def _feature_rows(signature: Signature, instances: list[Any]) -> np.ndarray:
    """Tabular instances (objects keyed by feature name, or plain rows) as the model's 2-D input."""
    assert signature.features is not None
    spec = signature.inputs[0]
    names = [f.name for f in signature.features]
    clean = _clean_feature_rows(names, spec, instances)
    if clean is not None:
        return clean
    known = set(names)
    # A null in a nullable feature reaches a float model as NaN; other tensors have no missing value.
    nullable = {f.name for f in signature.features if f.nullable} if spec.dtype.startswith("float") else set()
    rows: list[list[Any]] = []
    nulls: list[tuple[int, int]] = []
    errors: list[dict[str, Any]] = []
    for i, instance in enumerate(instances):
        if isinstance(instance, dict):
            missing = [n for n in names if n not in instance or (instance[n] is None and n not in nullable)]
            unknown = [k for k in instance if k not in known]
            errors += [
                field_error(["instances", i, n], "required feature is missing", "missing") for n in missing
            ]
            errors += [
                field_error(["instances", i, k], "unknown feature", "unknown_feature") for k in unknown
            ]
            row = [instance.get(n) for n in names]
            nulls += [(i, j) for j, value in enumerate(row) if value is None]
            rows.append([0.0 if value is None else value for value in row])
        elif isinstance(instance, list):
            if len(instance) != len(names):
                errors.append(
                    field_error(
                        ["instances", i],
                        f"expected {len(names)} values ({', '.join(names[:3])}, ...), got {len(instance)}",
                        "shape_mismatch",
                    )
                )
            rows.append(instance)
        else:
            errors.append(
                field_error(
                    ["instances", i],
                    f"expected an object keyed by feature name or a list, got {_json_type(instance)}",
                    "type_error",
                )
            )
        if len(errors) >= MAX_DETAILS:
            break
    if errors:
        raise ValidationFailed("instances do not match the model's features", errors[:MAX_DETAILS])
    tensor = _to_tensor(rows, spec, lambda i: ["instances", i], columns=names)
    for i, j in nulls:
        tensor[i, j] = np.nan
    return tensor


def v1_feeds(signature: Signature, instances: list[Any]) -> dict[str, np.ndarray]:
    """V1 instances → ONNX feeds. Objects are keyed by feature name (tabular) or by input name."""
    if signature.features:
        tensor = _feature_rows(signature, instances)
        return {signature.inputs[0].name: tensor}
    inputs = signature.inputs
    if len(inputs) == 1 and not any(isinstance(x, dict) for x in instances):
        return {inputs[0].name: _to_tensor(instances, inputs[0], lambda i: ["instances", i])}
    errors: list[dict[str, Any]] = []
    columns: dict[str, list[Any]] = {spec.name: [] for spec in inputs}
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            errors.append(
                field_error(
                    ["instances", i],
                    "expected an object keyed by input name (" + ", ".join(columns) + ")",
                    "type_error",
                )
            )
            continue
        errors += [
            field_error(["instances", i, n], "required input is missing", "missing")
            for n in columns
            if n not in instance
        ]
        errors += [
            field_error(["instances", i, k], "unknown input", "unknown_input")
            for k in instance
            if k not in columns
        ]
        for name, column in columns.items():
            column.append(instance.get(name))
    if errors:
        raise ValidationFailed("instances do not match the model's inputs", errors[:MAX_DETAILS])
    return {
        spec.name: _to_tensor(columns[spec.name], spec, lambda i, n=spec.name: ["instances", i, n])
        for spec in inputs
    }


def v2_feeds(signature: Signature, tensors: list[InferTensor]) -> dict[str, np.ndarray]:
    """Open Inference Protocol input tensors → ONNX feeds, checked against the graph's inputs."""
    specs = {s.name: s for s in signature.inputs}
    errors: list[dict[str, Any]] = []
    feeds: dict[str, np.ndarray] = {}
    given = {t.name for t in tensors}
    errors += [
        field_error(["inputs", n], "required input is missing", "missing") for n in specs if n not in given
    ]
    for index, tensor in enumerate(tensors):
        loc: list[Any] = ["inputs", index]
        spec = specs.get(tensor.name)
        if spec is None:
            errors.append(
                field_error(
                    [*loc, "name"],
                    f"unknown input {tensor.name!r}; the model takes " + ", ".join(specs),
                    "unknown_input",
                )
            )
            continue
        expected = V2_DATATYPES[spec.dtype]
        if tensor.datatype != expected:
            errors.append(
                field_error(
                    [*loc, "datatype"], f"expected {expected}, got {tensor.datatype}", "datatype_mismatch"
                )
            )
            continue
        if not _matches(tuple(tensor.shape), spec.shape):
            errors.append(
                field_error(
                    [*loc, "shape"],
                    f"expected {_shape_text(spec.shape)}, got {tensor.shape}",
                    "shape_mismatch",
                )
            )
            continue
        try:
            flat = np.array(tensor.data, dtype=object).reshape(-1)
        except ValueError:
            errors.append(field_error([*loc, "data"], "data is ragged", "shape_mismatch"))
            continue
        if flat.size != math.prod(tensor.shape):
            errors.append(
                field_error([*loc, "data"], f"{flat.size} values for shape {tensor.shape}", "shape_mismatch")
            )
            continue
        converted = _convert_clean(flat, spec.dtype)
        if converted is None:
            position, problem = next(
                ((p, m) for p, v in enumerate(flat) if (m := _value_error(v, spec.dtype))),
                (0, f"values out of the {spec.dtype} range"),
            )
            errors.append(field_error([*loc, "data", position], problem, "type_error"))
            continue
        feeds[spec.name] = converted.reshape(tensor.shape)
    if errors:
        raise ValidationFailed("inputs do not match the model's signature", errors[:MAX_DETAILS])
    return feeds


def v1_predictions(signature: Signature, outputs: dict[str, Any], count: int) -> list[Any]:
    """ONNX outputs → one prediction per instance: label and class probabilities for classifiers."""
    if signature.task == "classification" and signature.label_output and signature.probabilities_output:
        return _classifications(
            signature, outputs[signature.label_output], outputs[signature.probabilities_output], count
        )
    if len(outputs) == 1:
        only = next(iter(outputs.values()))
        rows = only.tolist() if isinstance(only, np.ndarray) else list(only)
        if signature.task == "regression":
            return [row[0] if isinstance(row, list) and len(row) == 1 else row for row in rows]
        return rows
    columns = {
        name: (value.tolist() if isinstance(value, np.ndarray) else list(value))
        for name, value in outputs.items()
    }
    return [{name: column[i] for name, column in columns.items()} for i in range(count)]


def _classifications(signature: Signature, labels: Any, probabilities: Any, count: int) -> list[Any]:
    names = signature.class_labels
    label_values = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    if isinstance(probabilities, np.ndarray):
        prob_rows: list[Any] = probabilities.tolist()
        if names:
            prob_rows = [dict(zip(names, row, strict=True)) for row in prob_rows]
    else:  # ZipMap: a list of {class: probability}
        prob_rows = [{str(k): float(v) for k, v in row.items()} for row in probabilities]
    predictions = []
    for label, probs in zip(label_values, prob_rows, strict=True):
        if names and isinstance(label, int) and 0 <= label < len(names):
            label = names[label]
        predictions.append({"label": label, "probabilities": probs})
    return predictions[:count]


def v2_outputs(outputs: dict[str, Any], wanted: list[str] | None) -> list[InferTensor]:
    """ONNX outputs → V2 tensors (row-major flat data). Non-tensor outputs travel as JSON BYTES."""
    names = wanted or list(outputs)
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise ValidationFailed(
            "unknown outputs requested",
            [
                field_error(
                    ["outputs", n], "no such output; the model gives " + ", ".join(outputs), "unknown_output"
                )
                for n in unknown
            ],
        )
    result = []
    for name in names:
        value = outputs[name]
        if isinstance(value, np.ndarray):
            kind = "string" if value.dtype == object else str(value.dtype)
            result.append(
                InferTensor(
                    name=name,
                    shape=list(value.shape),
                    datatype=V2_DATATYPES.get(kind, "BYTES"),
                    data=value.reshape(-1).tolist(),
                )
            )
        else:
            import json

            rows = [json.dumps({str(k): float(v) for k, v in row.items()}) for row in value]
            result.append(InferTensor(name=name, shape=[len(rows)], datatype="BYTES", data=rows))
    return result
