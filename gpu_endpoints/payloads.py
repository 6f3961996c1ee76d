"""Request bodies to ONNX feeds, outputs to response bodies; every refusal says where and why.

Requests (`Content-Type`):
- `application/json`, V1: `{"instances": [...]}` (or a bare list), one instance per row. For a
  single-input model an instance is that input's row (nested lists), or an object keyed by feature
  name when the model's config.json names `features`; for several inputs, an object keyed by input
  name.
- `application/json`, V2 (Open Inference Protocol): `{"id"?, "inputs": [{"name", "shape",
  "datatype", "data"}], "outputs"?: [{"name"}]}`, data flat (row-major) or nested.
- `application/x-npy`: one .npy array, the input of a single-input model.
- `application/x-npz`: an .npz archive, one array per input name.
- `application/octet-stream` (or no type): a .npy or .npz body, recognised by its first bytes.

Responses (`Accept`; absent or `*/*`: in kind with the request):
- JSON: `{"predictions": [...]}` for V1 (one per row: the output's row, or an object keyed by output
  name when there are several), `{"model_name", "id"?, "outputs": [...]}` for V2.
- `application/x-npy`: one output as .npy (the only one, or the one named by the custom attribute
  `outputs=NAME`); `application/x-npz`: every output as .npz. A .npy request with several outputs
  is answered in .npz.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gpu_endpoints.errors import (
    MAX_DETAILS,
    BadJson,
    BadRequest,
    InvalidInput,
    NotAcceptable,
    UnsupportedMediaType,
    field_error,
)

if TYPE_CHECKING:
    from gpu_endpoints.models import Model, TensorInfo

JSON = "application/json"
NPY = "application/x-npy"
NPZ = "application/x-npz"
OCTET = "application/octet-stream"
ACCEPTED = (JSON, NPY, NPZ)
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"

Protocol = Literal["v1", "v2", "npy", "npz"]
Where = Callable[[tuple[int, ...]], list[str | int]]


@dataclass(frozen=True)
class Attributes:
    """What the server reads in `X-Amzn-SageMaker-Custom-Attributes` (`key=value` pairs separated by
    `;`; other keys are passed through untouched): `batching=off` runs the request alone,
    `outputs=a,b` limits the outputs answered."""

    batching: bool = True
    outputs: tuple[str, ...] | None = None


def custom_attributes(header: str | None) -> Attributes:
    if not header:
        return Attributes()
    pairs: dict[str, str] = {}
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            pairs[key.strip().lower()] = value.strip()
    batching = True
    if "batching" in pairs:
        value = pairs["batching"].lower()
        if value not in {"on", "off", "true", "false", "1", "0"}:
            raise BadRequest(
                "bad custom attribute",
                [
                    field_error(
                        ["headers", CUSTOM_ATTRIBUTES, "batching"], "expected on or off", "value_error"
                    )
                ],
            )
        batching = value in {"on", "true", "1"}
    outputs = (
        tuple(n.strip() for n in pairs["outputs"].split(",") if n.strip()) if "outputs" in pairs else None
    )
    return Attributes(batching, outputs or None)


@dataclass(frozen=True)
class Decoded:
    feeds: dict[str, np.ndarray]
    protocol: Protocol
    # The outputs to answer with (None: all of them) and the V2 request id to echo.
    outputs: tuple[str, ...] | None = None
    request_id: str | None = None


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def decode(body: bytes, content_type: str | None, model: Model, attributes: Attributes) -> Decoded:
    kind = media_type(content_type)
    if kind in ("", OCTET):
        kind = NPY if body.startswith(b"\x93NUMPY") else NPZ if body.startswith(b"PK") else kind
    if kind == JSON or kind.endswith("+json"):
        decoded = _json(body, model)
    elif kind == NPY:
        decoded = _npy(body, model)
    elif kind == NPZ:
        decoded = _npz(body, model)
    else:
        raise UnsupportedMediaType(
            f"content type {content_type or '(none)'!r} is not supported; send one of {', '.join(ACCEPTED)}"
        )
    outputs = attributes.outputs or decoded.outputs
    if outputs is not None:
        unknown = [n for n in outputs if n not in model.output_names]
        if unknown:
            known = ", ".join(model.output_names)
            raise InvalidInput(
                "unknown outputs requested",
                [
                    field_error(["outputs", n], f"no such output; the model gives {known}", "unknown_output")
                    for n in unknown
                ],
            )
        decoded = Decoded(decoded.feeds, decoded.protocol, tuple(outputs), decoded.request_id)
    return decoded


# JSON ------------------------------------------------------------------------------------------


def _json(body: bytes, model: Model) -> Decoded:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadJson(f"the body is not valid JSON: {error}") from None
    if isinstance(payload, list):
        return Decoded(_instances(payload, model), "v1")
    if isinstance(payload, dict):
        if "inputs" in payload:
            return _v2(payload, model)
        if "instances" in payload:
            return Decoded(_instances(payload["instances"], model), "v1")
    raise InvalidInput(
        'expected {"instances": [...]} (V1) or {"inputs": [...]} (Open Inference Protocol V2)',
        [field_error(["body"], "neither instances nor inputs given", "missing")],
    )


def _instances(instances: Any, model: Model) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise InvalidInput(
            "instances must be a list", [field_error(["instances"], "expected a list", "type_error")]
        )
    if not instances:
        raise InvalidInput(
            "no instances given", [field_error(["instances"], "expected at least one", "too_short")]
        )
    inputs = model.inputs
    objects = [isinstance(instance, dict) for instance in instances]
    if len(inputs) == 1 and not any(objects):
        return {inputs[0].name: to_tensor(instances, inputs[0], lambda index: ["instances", *index])}
    features = model.config.features
    if len(inputs) == 1 and features and all(objects):
        return {inputs[0].name: _feature_rows(instances, features, inputs[0])}
    names = [info.name for info in inputs]
    errors: list[dict[str, Any]] = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            keyed_by = "feature name" if len(inputs) == 1 and features else "input name"
            expected = ", ".join(features if len(inputs) == 1 and features else names)
            errors.append(
                field_error(
                    ["instances", i], f"expected an object keyed by {keyed_by} ({expected})", "type_error"
                )
            )
            continue
        errors += [
            field_error(["instances", i, n], "required input is missing", "missing")
            for n in names
            if n not in instance
        ]
        errors += [
            field_error(["instances", i, k], "unknown input", "unknown_input")
            for k in instance
            if k not in names
        ]
        if len(errors) >= MAX_DETAILS:
            break
    if errors:
        raise InvalidInput("instances do not match the model's inputs", errors)
    return {
        info.name: to_tensor(
            [instance[info.name] for instance in instances],
            info,
            _keyed_where(info.name),
        )
        for info in inputs
    }


def _keyed_where(name: str) -> Where:
    """Where a value of an instance keyed by input name is: instances[i][name][...]."""
    return lambda index: ["instances", *index[:1], name, *index[1:]]


def _under(loc: list[str | int]) -> Where:
    return lambda index: [*loc, *index]


def _feature_rows(instances: list[dict[str, Any]], features: Sequence[str], info: TensorInfo) -> np.ndarray:
    known = set(features)
    errors: list[dict[str, Any]] = []
    rows = []
    for i, instance in enumerate(instances):
        errors += [
            field_error(["instances", i, f], "required feature is missing", "missing")
            for f in features
            if f not in instance
        ]
        errors += [
            field_error(["instances", i, k], "unknown feature", "unknown_feature")
            for k in instance
            if k not in known
        ]
        rows.append([instance.get(f) for f in features])
        if len(errors) >= MAX_DETAILS:
            break
    if errors:
        raise InvalidInput("instances do not match the model's features", errors)
    names = list(features)
    return to_tensor(
        rows,
        info,
        lambda index: ["instances", index[0], names[index[1]]] if len(index) > 1 else ["instances", *index],
    )


def _v2(payload: dict[str, Any], model: Model) -> Decoded:
    tensors = payload.get("inputs")
    errors: list[dict[str, Any]] = []
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput(
            "inputs must be a non-empty list",
            [field_error(["inputs"], "expected a non-empty list", "type_error")],
        )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        errors.append(field_error(["id"], "expected a string", "type_error"))
    specs = {info.name: info for info in model.inputs}
    given: set[str] = set()
    feeds: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        loc: list[str | int] = ["inputs", index]
        if not isinstance(tensor, dict):
            errors.append(
                field_error(loc, "expected an object with name, shape, datatype and data", "type_error")
            )
            continue
        missing = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
        if missing:
            errors += [field_error([*loc, k], "field required", "missing") for k in missing]
            continue
        name, shape, datatype, data = (tensor[k] for k in ("name", "shape", "datatype", "data"))
        info = specs.get(name) if isinstance(name, str) else None
        if info is None:
            errors.append(
                field_error(
                    [*loc, "name"],
                    f"unknown input {name!r}; the model takes {', '.join(specs)}",
                    "unknown_input",
                )
            )
            continue
        if name in given:
            errors.append(field_error([*loc, "name"], f"input {name!r} given twice", "duplicate_input"))
            continue
        given.add(name)
        if datatype != info.datatype:
            errors.append(
                field_error(
                    [*loc, "datatype"], f"expected {info.datatype}, got {datatype!r}", "datatype_mismatch"
                )
            )
            continue
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            errors.append(
                field_error([*loc, "shape"], "expected a list of non-negative integers", "type_error")
            )
            continue
        if not _fits(tuple(shape), info.shape):
            errors.append(
                field_error(
                    [*loc, "shape"], f"expected {_shape_text(info.shape)}, got {shape}", "shape_mismatch"
                )
            )
            continue
        try:
            flat = np.asarray(data, dtype=object).reshape(-1)
        except ValueError:
            errors.append(field_error([*loc, "data"], "data is ragged", "shape_mismatch"))
            continue
        if flat.size != math.prod(shape):
            errors.append(
                field_error([*loc, "data"], f"{flat.size} values for shape {shape}", "shape_mismatch")
            )
            continue
        try:
            feeds[name] = to_tensor(flat.tolist(), info, _under([*loc, "data"]), check_shape=False).reshape(
                shape
            )
        except InvalidInput as error:
            errors += error.details
    errors += [
        field_error(["inputs"], f"required input {n!r} is missing", "missing")
        for n in specs
        if n not in given
    ]
    requested = payload.get("outputs")
    outputs: tuple[str, ...] | None = None
    if requested is not None:
        if not isinstance(requested, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
        ):
            errors.append(field_error(["outputs"], 'expected a list of {"name": ...}', "type_error"))
        else:
            outputs = tuple(o["name"] for o in requested) or None
    if errors:
        raise InvalidInput("inputs do not match the model's signature", errors)
    return Decoded(feeds, "v2", outputs, request_id)


# Values ----------------------------------------------------------------------------------------


def _fits(shape: tuple[int, ...], spec: tuple[int | None, ...] | None) -> bool:
    if spec is None:
        return True
    return len(shape) == len(spec) and all(s is None or s == d for d, s in zip(shape, spec, strict=True))


def _shape_text(spec: tuple[int | None, ...] | None) -> str:
    if spec is None:
        return "any shape"
    return "[" + ", ".join("N" if d is None else str(d) for d in spec) + "]"


def _kind_ok(kind: str, target: str) -> bool:
    """May values of numpy kind `kind` go into a tensor of kind `target` (before range checks)?"""
    if target == "f":
        return kind in "iuf"
    if target in "iu":
        return kind in "iuf"  # floats only when integral: checked after
    if target == "b":
        return kind == "b"
    return kind == "U"  # strings


def _value_problem(value: Any, target: str) -> str | None:
    if target == "O":
        return None if isinstance(value, str) else f"expected a string, got {_json_type(value)}"
    if target == "b":
        return None if isinstance(value, bool) else f"expected a boolean, got {_json_type(value)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {_json_type(value)}"
    if target in "iu" and isinstance(value, float) and not value.is_integer():
        return f"expected an integer, got {value}"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def to_tensor(values: list[Any], info: TensorInfo, where: Where, check_shape: bool = True) -> np.ndarray:
    """JSON values (one item per row) as a tensor of the input's dtype and shape, or InvalidInput
    naming each offending row or value."""
    dtype = info.dtype
    if dtype is None:
        raise InvalidInput(f"input {info.name!r} has type {info.onnx_type}, which JSON cannot carry")
    try:
        raw = np.asarray(values)
    except (ValueError, TypeError):
        raw = None
    if raw is None:
        raise InvalidInput(f"values of input {info.name!r} are ragged", _shape_details(values, info, where))
    row_spec = info.shape[1:] if info.shape else None
    if check_shape and info.shape is not None and not _fits(raw.shape, info.shape):
        raise InvalidInput(
            f"values do not match input {info.name!r}",
            _shape_details(values, info, where)
            or [
                field_error(
                    where(()),
                    f"expected each row to have shape {_shape_text(row_spec)}, got {list(raw.shape[1:])}",
                    "shape_mismatch",
                )
            ],
        )
    target = dtype.kind
    if not _kind_ok(raw.dtype.kind, target):
        details = _value_details(values, target, where) or [
            field_error(where(()), f"values out of the {dtype} range", "type_error")
        ]
        raise InvalidInput(f"values do not fit input {info.name!r} ({info.datatype})", details)
    return _cast(raw, dtype, info, where)


def _cast(raw: np.ndarray, dtype: np.dtype[Any], info: TensorInfo, where: Where) -> np.ndarray:
    target = dtype.kind
    if target == "O":
        return raw.astype(object)
    if target in "iu":
        if raw.dtype.kind == "f":
            integral = np.isfinite(raw) & (raw == np.round(raw))
            if not integral.all():
                index = tuple(int(i) for i in np.argwhere(~integral)[0])
                raise InvalidInput(
                    f"values do not fit input {info.name!r} ({info.datatype})",
                    [field_error(where(index), f"expected an integer, got {raw[index]}", "type_error")],
                )
        limits = np.iinfo(dtype)
        if raw.size and (raw.min() < limits.min or raw.max() > limits.max):
            index = tuple(int(i) for i in np.argwhere((raw < limits.min) | (raw > limits.max))[0])
            raise InvalidInput(
                f"values do not fit input {info.name!r} ({info.datatype})",
                [field_error(where(index), f"{raw[index]} is out of the {dtype} range", "type_error")],
            )
    elif (
        target == "f"
        and raw.dtype.kind in "iuf"
        and raw.size
        and np.dtype(raw.dtype).itemsize > dtype.itemsize
    ):
        finite = np.isfinite(raw)
        big = finite & (np.abs(raw, where=finite, out=np.zeros(raw.shape)) > np.finfo(dtype).max)
        if big.any():
            index = tuple(int(i) for i in np.argwhere(big)[0])
            raise InvalidInput(
                f"values do not fit input {info.name!r} ({info.datatype})",
                [field_error(where(index), f"{raw[index]} is out of the {dtype} range", "type_error")],
            )
    return raw.astype(dtype, copy=False)


def _shape_of(value: Any) -> list[int] | None:
    try:
        return list(np.asarray(value, dtype=object).shape)
    except ValueError:
        return None


def _shape_details(values: list[Any], info: TensorInfo, where: Where) -> list[dict[str, Any]]:
    row_spec = info.shape[1:] if info.shape else None
    first = _shape_of(values[0]) if values else None
    errors = []
    for i, value in enumerate(values):
        got = _shape_of(value)
        ok = got is not None and (_fits(tuple(got), row_spec) if row_spec is not None else got == first)
        if not ok:
            expected = _shape_text(row_spec) if row_spec is not None else f"the first row's {first}"
            errors.append(
                field_error(
                    where((i,)),
                    f"expected shape {expected}, got {'ragged' if got is None else got}",
                    "shape_mismatch",
                )
            )
            if len(errors) >= MAX_DETAILS:
                break
    return errors


def _value_details(values: list[Any], target: str, where: Where) -> list[dict[str, Any]]:
    errors = []
    for index, value in np.ndenumerate(np.asarray(values, dtype=object)):
        problem = _value_problem(value, target)
        if problem:
            errors.append(field_error(where(tuple(int(i) for i in index)), problem, "type_error"))
            if len(errors) >= MAX_DETAILS:
                break
    return errors


# .npy / .npz -----------------------------------------------------------------------------------


def _npy(body: bytes, model: Model) -> Decoded:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise BadRequest(f"the body is not a .npy array: {error}") from None
    if not isinstance(array, np.ndarray):
        raise BadRequest("the body is an .npz archive: send it as application/x-npz")
    if len(model.inputs) != 1:
        names = ", ".join(i.name for i in model.inputs)
        raise InvalidInput(
            f"the model takes {len(model.inputs)} inputs ({names}): "
            "send application/x-npz, one array per input",
            [field_error(["body"], "one array for several inputs", "input_count")],
        )
    info = model.inputs[0]
    return Decoded({info.name: _from_array(array, info, ["body"])}, "npy")


def _npz(body: bytes, model: Model) -> Decoded:
    try:
        archive = np.load(io.BytesIO(body), allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise BadRequest("the body is a .npy array, not an .npz archive: send it as application/x-npy")
        arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise BadRequest(f"the body is not an .npz archive: {error}") from None
    specs = {info.name: info for info in model.inputs}
    errors = [
        field_error(["body", n], "required input is missing", "missing") for n in specs if n not in arrays
    ]
    errors += [field_error(["body", n], "unknown input", "unknown_input") for n in arrays if n not in specs]
    feeds: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if name in specs:
            try:
                feeds[name] = _from_array(array, specs[name], ["body", name])
            except InvalidInput as error:
                errors += error.details
    if errors:
        raise InvalidInput("the arrays do not match the model's inputs", errors)
    return Decoded(feeds, "npz")


def _from_array(array: np.ndarray, info: TensorInfo, loc: list[str | int]) -> np.ndarray:
    dtype = info.dtype
    if dtype is None:
        raise InvalidInput(f"input {info.name!r} has type {info.onnx_type}, which cannot be sent")
    if info.shape is not None and not _fits(array.shape, info.shape):
        raise InvalidInput(
            f"the array does not match input {info.name!r}",
            [
                field_error(
                    loc,
                    f"expected shape {_shape_text(info.shape)}, got {list(array.shape)}",
                    "shape_mismatch",
                )
            ],
        )
    source = array.dtype
    if dtype.kind == "O":
        if source.kind != "U":
            raise InvalidInput(
                f"the array does not fit input {info.name!r}",
                [field_error(loc, f"expected strings, got {source}", "type_error")],
            )
        return array.astype(object)
    if source != dtype and not np.can_cast(source, dtype, casting="same_kind"):
        raise InvalidInput(
            f"the array does not fit input {info.name!r} ({info.datatype})",
            [
                field_error(
                    loc,
                    f"expected {dtype} (or a type that converts to it without changing kind), got {source}",
                    "type_error",
                )
            ],
        )
    return _cast(array, dtype, info, _under(loc))


# Responses -------------------------------------------------------------------------------------


def negotiate(accept: str | None, decoded: Decoded, model: Model) -> str:
    """The response's media type: the first acceptable one in `Accept` (by q), in kind for */*."""
    outputs = decoded.outputs or tuple(model.output_names)
    in_kind = {"v1": JSON, "v2": JSON, "npy": NPY if len(outputs) == 1 else NPZ, "npz": NPZ}[decoded.protocol]
    if not accept:
        return in_kind
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept.split(",")):
        kind, *params = (p.strip() for p in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, kind.lower()))
    for _, _, kind in sorted(ranked):
        if kind in ("*/*", "application/*"):
            return in_kind
        if kind == JSON or kind.endswith("+json"):
            return JSON
        if kind in (NPY, NPZ):
            if kind == NPY and len(outputs) != 1:
                raise NotAcceptable(
                    f"{NPY} carries one array and the model gives {len(outputs)} outputs "
                    f"({', '.join(outputs)}): name one with {CUSTOM_ATTRIBUTES}: outputs=NAME, "
                    f"or accept {NPZ}",
                )
            return kind
    raise NotAcceptable(f"cannot answer in {accept!r}; the server answers in {', '.join(ACCEPTED)}")


def encode(outputs: dict[str, Any], decoded: Decoded, media: str, model: Model, rows: int) -> bytes:
    names = decoded.outputs or tuple(model.output_names)
    chosen = {name: outputs[name] for name in names}
    if media == JSON:
        if decoded.protocol == "v2":
            body: dict[str, Any] = {"model_name": model.name}
            if decoded.request_id is not None:
                body["id"] = decoded.request_id
            body["outputs"] = [_v2_tensor(name, value) for name, value in chosen.items()]
        else:
            body = {"predictions": predictions(chosen, rows)}
        return json.dumps(body, separators=(",", ":")).encode()
    not_arrays = [name for name, value in chosen.items() if not isinstance(value, np.ndarray)]
    if not_arrays:
        raise NotAcceptable(f"outputs {', '.join(not_arrays)} are not tensors: accept {JSON}")
    buffer = io.BytesIO()
    if media == NPY:
        np.save(buffer, next(iter(chosen.values())), allow_pickle=False)
    else:
        np.savez(buffer, **chosen)
    return buffer.getvalue()


def predictions(outputs: dict[str, Any], rows: int) -> list[Any]:
    """One prediction per row: the output's row, or an object keyed by output name when several."""
    columns = {
        name: value.tolist() if isinstance(value, np.ndarray) else list(value)
        for name, value in outputs.items()
    }
    if len(columns) == 1:
        return next(iter(columns.values()))
    if any(len(column) != rows for column in columns.values()):
        return [columns]  # outputs without a row per instance: one prediction for the request
    return [{name: column[i] for name, column in columns.items()} for i in range(rows)]


def _v2_tensor(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, np.ndarray):
        datatype = "BYTES" if value.dtype == object else _v2_datatype(value.dtype)
        return {
            "name": name,
            "datatype": datatype,
            "shape": list(value.shape),
            "data": value.reshape(-1).tolist(),
        }
    rows = [
        json.dumps(item if not isinstance(item, dict) else {str(k): v for k, v in item.items()})
        for item in value
    ]
    return {"name": name, "datatype": "BYTES", "shape": [len(rows)], "data": rows}


def _v2_datatype(dtype: np.dtype[Any]) -> str:
    from gpu_endpoints.models import V2_DATATYPES

    return V2_DATATYPES.get(np.dtype(dtype), "BYTES")
