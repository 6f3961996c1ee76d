"""The Open Inference Protocol (V2, KServe and Triton): `{"id"?, "parameters"?, "inputs": [{"name",
"shape", "datatype", "data"}], "outputs"?: [{"name"}]}` in, `{"model_name", "model_version"?, "id"?,
"parameters"?, "outputs": [...]}` out; data flat in row-major order (nested lists are accepted)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import numpy as np

from aimass.protocol.errors import ValidationFailed, field_error
from aimass.protocol.tensors import (
    V2_DATATYPES,
    Spec,
    class_probabilities,
    convert,
    datatype_of,
    fits,
    shape_text,
)

DATATYPES = frozenset(V2_DATATYPES.values())
TENSOR_FIELDS = ("name", "shape", "datatype", "data")


class OutputTensor(TypedDict):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class Response(TypedDict):
    """A V2 inference response as both servers answer it."""

    model_name: str
    model_version: NotRequired[str]
    id: NotRequired[str]
    parameters: NotRequired[dict[str, Any]]
    outputs: list[OutputTensor]


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: list[int]
    datatype: str
    # JSON values, or a typed flat array (binary data, aimass.protocol.binary).
    data: list[Any] | np.ndarray
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class Request:
    inputs: list[Tensor]
    # The outputs asked for by name (None: every output) and the id to echo.
    outputs: tuple[str, ...] | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    # The outputs asked for in binary (`parameters.binary_data`), for aimass.protocol.binary.
    binary_outputs: frozenset[str] = frozenset()


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(type(d) is int and d >= 0 for d in value)


def _tensor(value: Any, loc: list[str | int], errors: list[dict[str, Any]]) -> Tensor | None:
    if not isinstance(value, dict):
        errors.append(
            field_error(loc, "expected an object with name, shape, datatype and data", "type_error")
        )
        return None
    missing = [k for k in TENSOR_FIELDS if k not in value]
    errors += [field_error([*loc, k], "field required", "missing") for k in missing]
    if missing:
        return None
    name, shape, datatype, data = (value[k] for k in TENSOR_FIELDS)
    parameters = value.get("parameters")
    problems = [
        (k, why)
        for k, ok, why in (
            ("name", isinstance(name, str), "expected a string"),
            ("shape", _is_shape(shape), "expected a list of non-negative integers"),
            ("datatype", isinstance(datatype, str), "expected a string"),
            ("data", isinstance(data, list | np.ndarray), "expected a list"),
            ("parameters", parameters is None or isinstance(parameters, dict), "expected an object"),
        )
        if not ok
    ]
    errors += [field_error([*loc, k], why, "type_error") for k, why in problems]
    if problems:
        return None
    if 0 in shape:
        # Like V1's empty `instances`: a tensor without values asks for no prediction, so it is a
        # client's mistake rather than an empty answer.
        errors.append(
            field_error(
                [*loc, "shape"], f"shape {shape} has a dimension of 0: no values to predict on", "empty"
            )
        )
        return None
    return Tensor(name, shape, datatype, data, parameters)


def parse(payload: Any) -> Request:
    """A parsed V2 request body, checked for its structure (not yet against a model)."""
    where: list[str | int] = ["body"]
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "expected a V2 inference request", [field_error(where, "expected an object", "type_error")]
        )
    errors: list[dict[str, Any]] = []
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        why = "field required" if "inputs" not in payload else "expected a non-empty list"
        raise ValidationFailed(
            "inputs must be a non-empty list",
            [field_error([*where, "inputs"], why, "missing" if "inputs" not in payload else "type_error")],
        )
    inputs = [_tensor(t, [*where, "inputs", i], errors) for i, t in enumerate(tensors)]
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        errors.append(field_error([*where, "id"], "expected a string", "type_error"))
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        errors.append(field_error([*where, "parameters"], "expected an object", "type_error"))
    requested = payload.get("outputs")
    outputs: tuple[str, ...] | None = None
    binary: frozenset[str] = frozenset()
    if requested is not None:
        if not isinstance(requested, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
        ):
            errors.append(field_error([*where, "outputs"], 'expected a list of {"name": ...}', "type_error"))
        else:
            outputs = tuple(o["name"] for o in requested) or None
            binary = frozenset(o["name"] for o in requested if _binary_output(o))
    if errors:
        raise ValidationFailed("the request does not match the schema", errors)
    return Request([t for t in inputs if t is not None], outputs, request_id, parameters or {}, binary)


def _binary_output(output: dict[str, Any]) -> bool:
    parameters = output.get("parameters")
    return isinstance(parameters, dict) and parameters.get("binary_data") is True


def feeds(tensors: Sequence[Any], inputs: Sequence[Spec]) -> dict[str, np.ndarray]:
    """Input tensors (Tensor, or anything with name, shape, datatype and data) → the model's feeds,
    checked against its inputs; every problem named with its place."""
    specs = {spec.name: spec for spec in inputs}
    given = {tensor.name for tensor in tensors}
    errors = [
        field_error(["inputs", n], "required input is missing", "missing") for n in specs if n not in given
    ]
    seen: set[str] = set()
    result: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        loc: list[str | int] = ["inputs", index]
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
        if tensor.name in seen:
            errors.append(
                field_error([*loc, "name"], f"input {tensor.name!r} given twice", "duplicate_input")
            )
            continue
        seen.add(tensor.name)
        if tensor.datatype != spec.datatype:
            errors.append(
                field_error(
                    [*loc, "datatype"],
                    f"expected {spec.datatype}, got {tensor.datatype}",
                    "datatype_mismatch",
                )
            )
            continue
        shape = tuple(tensor.shape)
        if not fits(shape, spec.shape):
            errors.append(
                field_error(
                    [*loc, "shape"], f"expected {shape_text(spec.shape)}, got {list(shape)}", "shape_mismatch"
                )
            )
            continue
        try:
            result[spec.name] = _tensor_array(tensor.data, spec, shape, loc)
        except ValidationFailed as error:
            errors += error.details
    if errors:
        raise ValidationFailed("inputs do not match the model's signature", errors)
    return result


def _tensor_array(
    data: list[Any] | np.ndarray, spec: Spec, shape: tuple[int, ...], loc: list[str | int]
) -> np.ndarray:
    """A tensor's data (JSON values, checked one by one; or binary data, already typed) in its shape."""
    if isinstance(data, np.ndarray):
        flat = data.reshape(-1)
    else:
        try:
            flat = np.array(data, dtype=object).reshape(-1)
        except ValueError:
            raise ValidationFailed(
                "data is ragged", [field_error([*loc, "data"], "data is ragged", "shape_mismatch")]
            ) from None
    if flat.size != math.prod(shape):
        raise ValidationFailed(
            "wrong number of values",
            [field_error([*loc, "data"], f"{flat.size} values for shape {list(shape)}", "shape_mismatch")],
        )
    if isinstance(data, np.ndarray):
        return flat.reshape(shape)
    return convert(flat, spec.element_type(), _in_data(loc)).reshape(shape)


def _in_data(loc: list[str | int]) -> Callable[[int], list[str | int]]:
    """Where a value at a flat position of a tensor's data is."""
    return lambda position: [*loc, "data", position]


def check_outputs(wanted: Sequence[str] | None, available: Sequence[str]) -> None:
    """Outputs asked for by name must be outputs of the model."""
    unknown = [n for n in wanted or () if n not in available]
    if unknown:
        gives = "no such output; the model gives " + ", ".join(available)
        raise ValidationFailed(
            "unknown outputs requested",
            [field_error(["outputs", n], gives, "unknown_output") for n in unknown],
        )


def output_tensors(
    outputs: dict[str, Any],
    wanted: Sequence[str] | None = None,
    labels: Mapping[str, Sequence[str]] | None = None,
) -> list[OutputTensor]:
    """The model's outputs (those asked for, else all) as V2 tensors; what is not a tensor (ZipMap's
    list of {class: probability}) travels as BYTES, one JSON document per row, keyed by the class
    names in `labels` for that output when there are some."""
    names = list(wanted or outputs)
    check_outputs(names, list(outputs))
    tensors: list[OutputTensor] = []
    for name in names:
        value = outputs[name]
        if isinstance(value, np.ndarray):
            tensors.append(
                {
                    "name": name,
                    "datatype": datatype_of(value),
                    "shape": list(value.shape),
                    "data": value.reshape(-1).tolist(),
                }
            )
        else:
            classes = (labels or {}).get(name)
            rows = [
                json.dumps(class_probabilities(row, classes) if isinstance(row, dict) else row)
                for row in value
            ]
            tensors.append({"name": name, "datatype": "BYTES", "shape": [len(rows)], "data": rows})
    return tensors


def tensor_metadata(spec: Spec) -> dict[str, Any]:
    """An input or output as V2 model metadata describes it: -1 for an open dimension."""
    shape = None if spec.shape is None else [-1 if d is None else d for d in spec.shape]
    return {"name": spec.name, "datatype": spec.datatype, "shape": shape}


def response(
    model_name: str,
    outputs: list[OutputTensor],
    model_version: str | None = None,
    request_id: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> Response:
    body: Response = {"model_name": model_name, "outputs": outputs}
    if model_version is not None:
        body["model_version"] = model_version
    if request_id is not None:
        body["id"] = request_id
    if parameters:
        body["parameters"] = parameters
    return body


def error_text(message: str, details: list[dict[str, Any]] | None = None) -> str:
    """An error as V2 says it, one string (`{"error": "<message>"}`), that still names where each
    problem is: `message: inputs.0.datatype: expected FP32, got INT64; ...`."""
    problems = []
    for detail in details or ():
        where = ".".join(str(part) for part in detail.get("loc", ()))
        problems.append(f"{where}: {detail.get('message', '')}" if where else str(detail.get("message", "")))
    return f"{message}: {'; '.join(problems)}" if problems else message


def error_body(message: str, details: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """The protocol's error response body: `{"error": "<message>"}` (clients such as tritonclient
    read `error` as a string)."""
    return {"error": error_text(message, details)}
