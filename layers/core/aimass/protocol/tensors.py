"""Values to tensors: the element types, shapes and strict value checks both protocols share.

JSON values are checked one by one before they become a tensor: numpy would silently turn `"1.5"`
or `true` into a float, which hides client bugs. The usual clean request converts in one vectorised
pass; only a request with a problem is walked value by value, to say where each problem is."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass.protocol.errors import MAX_DETAILS, ValidationFailed, field_error

# Element types by name (as a model's signature writes them), with their numpy and V2 types.
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
# ONNX Runtime's type strings for tensors; anything else (ZipMap's seq(map(...))) is not a tensor.
ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}
_FLOAT_MAX = {t: float(np.finfo(NUMPY_DTYPES[t]).max) for t in ("float16", "float32", "float64")}

# Where a value is, as a JSON path, from its index in the tensor (first: the row).
Where = Callable[[tuple[int, ...]], list[str | int]]


@dataclass(frozen=True)
class Spec:
    """One model input as the codecs check it. `dtype` is an element type of NUMPY_DTYPES (None: a
    type no payload can carry, named by `onnx_type`); `shape` None: any rank; a None dimension: any
    size."""

    name: str
    dtype: str | None
    shape: tuple[int | None, ...] | None
    onnx_type: str = ""

    @classmethod
    def of_onnx(cls, name: str, onnx_type: str, shape: Any) -> Spec:
        """A graph input or output as ONNX Runtime describes it (a symbolic or unknown dimension is
        open; no shape at all: any rank)."""
        dims = None if shape is None else tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)
        return cls(name, ONNX_TYPES.get(onnx_type), dims, onnx_type)

    @property
    def datatype(self) -> str:
        """The V2 datatype; BYTES for what has no tensor type (as V2 carries it)."""
        return V2_DATATYPES.get(self.dtype or "", "BYTES")

    @property
    def numpy_dtype(self) -> np.dtype[Any] | None:
        return None if self.dtype is None else np.dtype(NUMPY_DTYPES[self.dtype])

    def element_type(self) -> str:
        if self.dtype is None:
            raise ValidationFailed(f"input {self.name!r} has type {self.onnx_type}, which cannot be sent")
        return self.dtype


# The same by numpy dtype: an answer names each output's datatype, and str(dtype) costs microseconds.
V2_BY_DTYPE = {np.dtype(kind): datatype for kind, datatype in V2_DATATYPES.items() if kind != "string"}


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype of an output array (strings and other objects: BYTES)."""
    return V2_BY_DTYPE.get(array.dtype, "BYTES")


def class_probabilities(row: dict[Any, Any], labels: Sequence[str] | None = None) -> dict[str, float]:
    """One row of a ZipMap output ({class: probability}) keyed by class name: an integer class is an
    index into `labels` (skl2onnx numbers the classes of integer targets 0..n-1, the order of the
    class labels); a string class, or one that `labels` do not cover, keeps its own name."""
    if not labels:
        return {str(k): float(v) for k, v in row.items()}
    count = len(labels)
    return {
        (labels[k] if isinstance(k, int) and 0 <= k < count else str(k)): float(v) for k, v in row.items()
    }


def fits(shape: tuple[int, ...], spec: tuple[int | None, ...] | None) -> bool:
    if spec is None:
        return True
    return len(shape) == len(spec) and all(s is None or s == d for d, s in zip(shape, spec, strict=True))


def shape_text(spec: tuple[int | None, ...] | None) -> str:
    if spec is None:
        return "any shape"
    return "[" + ", ".join("N" if d is None else str(d) for d in spec) + "]"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def value_error(value: Any, dtype: str) -> str | None:
    """Why a JSON value cannot go into a tensor of this element type, or None when it can."""
    kind = type(value)
    if dtype == "string":
        return None if kind is str else f"expected a string, got {json_type(value)}"
    if dtype == "bool":
        return None if kind is bool else f"expected a boolean, got {json_type(value)}"
    if kind is bool or kind not in (int, float):
        return f"expected a number, got {json_type(value)}"
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


def convert_clean(flat: np.ndarray, dtype: str) -> np.ndarray | None:
    """Vectorised conversion of a flat object array when every value is clean (the usual case); None
    sends the caller to the value-by-value check that explains what is wrong."""
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


def convert(flat: np.ndarray, dtype: str, where: Callable[[int], list[str | int]]) -> np.ndarray:
    """A flat object array as a flat tensor of `dtype`, or ValidationFailed naming each bad value
    (`where`: the path of the value at a flat position)."""
    tensor = convert_clean(flat, dtype)
    if tensor is not None:
        return tensor
    errors = []
    for position, value in enumerate(flat):
        problem = value_error(value, dtype)
        if problem:
            errors.append(field_error(where(position), problem, "type_error"))
            if len(errors) >= MAX_DETAILS:
                break
    if errors:
        raise ValidationFailed(f"values do not fit the input's type ({dtype})", errors)
    return flat.astype(NUMPY_DTYPES[dtype])


def _shape_of(value: Any) -> list[int] | None:
    try:
        array = np.array(value, dtype=object)
    except ValueError:
        return None
    if array.dtype == object and any(isinstance(v, list) for v in array.reshape(-1)):
        return None  # lists of unequal lengths inside: ragged
    return list(array.shape)


def to_tensor(rows: list[Any], spec: Spec, where: Where) -> np.ndarray:
    """Per-row JSON values stacked into one tensor of the spec's type and shape, or ValidationFailed
    naming each offending row or value (`where`: the JSON path of an index, row first)."""
    dtype = spec.element_type()
    try:
        array: np.ndarray | None = np.array(rows, dtype=object)
    except ValueError:
        array = None
    row_spec = spec.shape[1:] if spec.shape is not None else None
    # Any rank: the rows only need one shape; a list left inside the array means they differ.
    if array is not None and spec.shape is None and any(isinstance(v, list) for v in array.reshape(-1)):
        array = None
    if array is None or not fits(array.shape[1:], row_spec):
        raise ValidationFailed(
            f"instances do not match input {spec.name!r}", _row_shape_errors(rows, spec, where)
        )
    shape = array.shape
    cells = max(1, math.prod(shape[1:]))

    def at(position: int) -> list[str | int]:
        row, offset = divmod(position, cells)
        index = tuple(int(i) for i in np.unravel_index(offset, shape[1:])) if len(shape) > 1 else ()
        return where((row, *index))

    try:
        flat = convert(array.reshape(-1), dtype, at)
    except ValidationFailed as error:
        raise ValidationFailed(
            f"instances have values that do not fit input {spec.name!r} ({dtype})", error.details
        ) from None
    return flat.reshape(shape)


def _row_shape_errors(rows: list[Any], spec: Spec, where: Where) -> list[dict[str, Any]]:
    row_spec = spec.shape[1:] if spec.shape is not None else None
    first = _shape_of(rows[0]) if rows else None
    errors = []
    for i, row in enumerate(rows):
        got = _shape_of(row)
        ok = got is not None and (fits(tuple(got), row_spec) if row_spec is not None else got == first)
        if not ok:
            expected = shape_text(row_spec) if row_spec is not None else f"the first row's {first}"
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


def from_array(array: np.ndarray, spec: Spec, loc: list[str | int]) -> np.ndarray:
    """A binary array (.npy, .npz, V2 binary data) as the input's tensor: same kind of element
    (a float array for a float input, ...), a shape that fits, and values within the type's range."""
    dtype_name = spec.element_type()
    dtype = np.dtype(NUMPY_DTYPES[dtype_name])
    if not fits(array.shape, spec.shape):
        raise ValidationFailed(
            f"the array does not match input {spec.name!r}",
            [
                field_error(
                    loc, f"expected shape {shape_text(spec.shape)}, got {list(array.shape)}", "shape_mismatch"
                )
            ],
        )
    source = array.dtype
    if dtype.kind == "O":
        if source.kind not in "UO":
            raise ValidationFailed(
                f"the array does not fit input {spec.name!r}",
                [field_error(loc, f"expected strings, got {source}", "type_error")],
            )
        return array.astype(object)
    if source != dtype and not np.can_cast(source, dtype, casting="same_kind"):
        raise ValidationFailed(
            f"the array does not fit input {spec.name!r} ({spec.datatype})",
            [
                field_error(
                    loc,
                    f"expected {dtype} (or a type that converts to it without changing kind), got {source}",
                    "type_error",
                )
            ],
        )
    index = _out_of_range(array, dtype)
    if index is not None:
        raise ValidationFailed(
            f"the array does not fit input {spec.name!r} ({spec.datatype})",
            [field_error([*loc, *index], f"{array[index]} is out of the {dtype} range", "type_error")],
        )
    return array.astype(dtype, copy=False)


def _out_of_range(array: np.ndarray, dtype: np.dtype[Any]) -> tuple[int, ...] | None:
    """The first value that does not fit `dtype` (a narrower type of the same kind), if any."""
    if not array.size or (array.dtype.itemsize <= dtype.itemsize and array.dtype.kind == dtype.kind):
        return None
    if dtype.kind in "iu":
        limits = np.iinfo(dtype)
        bad = (array < limits.min) | (array > limits.max)
    elif dtype.kind == "f" and array.dtype.kind in "iuf":
        finite = np.isfinite(array)
        bad = finite & (np.abs(array, where=finite, out=np.zeros(array.shape)) > np.finfo(dtype).max)
    else:
        return None
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])
