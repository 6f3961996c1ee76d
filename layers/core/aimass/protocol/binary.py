"""The Open Inference Protocol's binary tensor data extension, requests and responses.

A binary request is a JSON header of `Inference-Header-Content-Length` bytes, then the raw data of
each input that has `parameters.binary_data_size`, in the order of `inputs`: little-endian, row
major; a BYTES element as a 4-byte little-endian length and its bytes; BOOL one byte. A response
carries an output in binary when the request asks for it (`parameters.binary_data_output: true` for
every output, or an output's `parameters.binary_data: true`): the header of the response names its
JSON part's length the same way.

Only a request with the header goes through here: a JSON request pays nothing for the extension."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from aimass.protocol import loads, v2
from aimass.protocol.errors import BadRequest, ValidationFailed, field_error
from aimass.protocol.tensors import NUMPY_DTYPES, V2_DATATYPES

HEADER = "Inference-Header-Content-Length"
OCTET = "application/octet-stream"
# The numpy type of each fixed-size V2 datatype, as it is on the wire.
WIRE_DTYPES = {
    datatype: np.dtype(NUMPY_DTYPES[name]).newbyteorder("<")
    for name, datatype in V2_DATATYPES.items()
    if datatype != "BYTES"
}
_LENGTH = struct.Struct("<I")


def header_length(value: str, body_size: int) -> int:
    """The JSON header's length from `Inference-Header-Content-Length`; BadRequest when it is not
    a length within the body."""
    length = int(value) if value.strip().isdigit() else -1
    if not 0 < length <= body_size:
        raise BadRequest(
            f"{HEADER} must be the length of the JSON header, 1 to {body_size} bytes",
            [field_error(["headers", HEADER], f"got {value!r}", "value_error")],
        )
    return length


def decode(body: bytes, length: str, parse: Callable[[bytes], Any] = json.loads) -> v2.Request:
    """A binary V2 request: its JSON header parsed and checked as any V2 request, each binary input's
    data read from the bytes after it (the tensor's data is then a typed array)."""
    size = header_length(length, len(body))
    payload = loads(body[:size], parse)
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if isinstance(inputs, list):
        payload = {**payload, "inputs": _with_data(inputs, memoryview(body)[size:])}
    return v2.parse(payload)


def _binary_size(tensor: Any) -> Any:
    parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
    return parameters.get("binary_data_size") if isinstance(parameters, dict) else None


def _with_data(inputs: list[Any], data: memoryview) -> list[Any]:
    """The inputs with each binary one's data read from `data`, in order; every problem named."""
    errors: list[dict[str, Any]] = []
    result: list[Any] = []
    offset = 0
    for index, tensor in enumerate(inputs):
        size = _binary_size(tensor)
        if size is None:
            result.append(tensor)
            continue
        loc: list[str | int] = ["body", "inputs", index, "parameters", "binary_data_size"]
        if type(size) is not int or size < 0:
            errors.append(field_error(loc, "expected a non-negative integer", "type_error"))
            break  # where the next tensor starts is unknown
        if offset + size > len(data):
            errors.append(
                field_error(loc, f"{size} bytes, but {len(data) - offset} are left in the body", "too_short")
            )
            break
        chunk = data[offset : offset + size]
        offset += size
        if "data" in tensor:
            errors.append(field_error(["body", "inputs", index, "data"], "data given twice", "duplicate"))
            continue
        array = _tensor_data(tensor, chunk, loc, errors)
        result.append(tensor if array is None else {**tensor, "data": array})
    if not errors and offset != len(data):
        errors.append(
            field_error(["body"], f"{len(data) - offset} bytes after the last input's data", "too_long")
        )
    if errors:
        raise ValidationFailed("the binary data does not match the inputs' binary_data_size", errors)
    return result


def _tensor_data(
    tensor: dict[str, Any], chunk: memoryview, loc: list[str | int], errors: list[dict[str, Any]]
) -> np.ndarray | None:
    """One input's binary data as a flat array; None (and no error) when its datatype or shape is not
    readable, which parsing the header then reports."""
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        return None
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_elements(chunk, count, loc, errors)
    dtype = WIRE_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        return None
    if len(chunk) != count * dtype.itemsize:
        expected = f"{count * dtype.itemsize} bytes ({count} {datatype} values for shape {shape})"
        errors.append(field_error(loc, f"expected {expected}, got {len(chunk)}", "shape_mismatch"))
        return None
    return np.frombuffer(chunk, dtype=dtype).astype(dtype.newbyteorder("="))


def _bytes_elements(
    chunk: memoryview, count: int, loc: list[str | int], errors: list[dict[str, Any]]
) -> np.ndarray | None:
    """BYTES elements, each a 4-byte little-endian length then its bytes, as strings."""
    values: list[str] = []
    offset = 0
    while offset < len(chunk) and len(values) <= count:
        if offset + 4 > len(chunk):
            break
        (size,) = _LENGTH.unpack_from(chunk, offset)
        element = bytes(chunk[offset + 4 : offset + 4 + size])
        if len(element) != size:
            break
        try:
            values.append(element.decode())
        except UnicodeDecodeError:
            errors.append(field_error(loc, f"element {len(values)} is not UTF-8 text", "type_error"))
            return None
        offset += 4 + size
    if offset != len(chunk) or len(values) != count:
        errors.append(
            field_error(
                loc,
                f"expected {count} length-prefixed BYTES elements filling the data exactly",
                "shape_mismatch",
            )
        )
        return None
    return np.array(values, dtype=object)


def wanted(request: v2.Request) -> frozenset[str] | bool:
    """The outputs to answer in binary: True for all of them (`binary_data_output`), else those whose
    `parameters.binary_data` is true."""
    if request.parameters.get("binary_data_output") is True:
        return True
    return request.binary_outputs


def encode(
    response: v2.Response, binary: frozenset[str] | bool, dumps: Callable[[Any], bytes]
) -> tuple[bytes, int]:
    """A response with the outputs in `binary` as raw data after the JSON header: the body, and the
    header's length (for `Inference-Header-Content-Length`)."""
    chunks: list[bytes] = []
    outputs: list[dict[str, Any]] = []
    for output in response["outputs"]:
        if binary is True or (binary and output["name"] in binary):
            raw = _raw(output["datatype"], output["data"])
            chunks.append(raw)
            rest = {k: v for k, v in output.items() if k != "data"}
            outputs.append({**rest, "parameters": {"binary_data_size": len(raw)}})
        else:
            outputs.append(dict(output))
    header = dumps({**response, "outputs": outputs})
    return b"".join([header, *chunks]), len(header)


def _raw(datatype: str, data: list[Any]) -> bytes:
    if datatype == "BYTES":
        elements = [v if isinstance(v, bytes) else str(v).encode() for v in data]
        return b"".join(_LENGTH.pack(len(e)) + e for e in elements)
    return np.asarray(data, dtype=WIRE_DTYPES[datatype]).tobytes()
