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
- Any type with `Inference-Header-Content-Length`: V2 with the binary tensor data extension (a JSON
  header of that many bytes, then raw tensor data; aimass.protocol.binary).

Responses (`Accept`; absent or `*/*`: in kind with the request):
- JSON: `{"predictions": [...]}` for V1 (one per row: the output's row, or an object keyed by output
  name when there are several), `{"model_name", "id"?, "outputs": [...]}` for V2; a V2 request that
  asks for binary outputs (`binary_data_output`, an output's `binary_data`) gets
  `application/octet-stream` with its own `Inference-Header-Content-Length`, whatever Accept says.
- `application/x-npy`: one output as .npy (the only one, or the one named by the custom attribute
  `outputs=NAME`); `application/x-npz`: every output as .npz. A .npy request with several outputs
  is answered in .npz.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson

from aimass import protocol
from aimass.protocol import arrays, binary, v1, v2
from aimass.protocol.arrays import NPY, NPZ
from aimass.protocol.errors import BadRequest, NotAcceptable, UnsupportedMediaType, field_error

if TYPE_CHECKING:
    from gpu_endpoints.models import Model

JSON = protocol.JSON
OCTET = "application/octet-stream"
ACCEPTED = (JSON, NPY, NPZ)
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"

Protocol = Literal["v1", "v2", "npy", "npz"]


def parse_json(body: bytes | memoryview) -> Any:
    """orjson (8x the standard library's speed on a one-image body, bench/RESULTS.md); what it refuses
    (NaN, integers beyond 64 bits) goes to the standard library, so answers and errors stay the same."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(bytes(body))


def dump_json(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # what orjson cannot write (e.g. integers beyond 64 bits)
        return json.dumps(body, separators=(",", ":")).encode()


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
    # V2: the outputs to answer in binary (True: all of them).
    binary: frozenset[str] | bool = False


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def decode(
    body: bytes,
    content_type: str | None,
    model: Model,
    attributes: Attributes,
    binary_length: str | None = None,
) -> Decoded:
    if binary_length is not None:
        decoded = _v2(binary.decode(body, binary_length, parse_json), model)
    else:
        decoded = _body(body, content_type, model)
    outputs = attributes.outputs or decoded.outputs
    if outputs is not None:
        v2.check_outputs(outputs, model.output_names)
        decoded = replace(decoded, outputs=tuple(outputs))
    return decoded


def _body(body: bytes, content_type: str | None, model: Model) -> Decoded:
    kind = media_type(content_type)
    if kind in ("", OCTET):
        kind = NPY if body.startswith(b"\x93NUMPY") else NPZ if body.startswith(b"PK") else kind
    if kind == JSON or kind.endswith("+json"):
        decoded = _json(body, model)
    elif kind == NPY:
        decoded = Decoded(arrays.npy_feeds(body, model.inputs), "npy")
    elif kind == NPZ:
        decoded = Decoded(arrays.npz_feeds(body, model.inputs), "npz")
    else:
        raise UnsupportedMediaType(
            f"content type {content_type or '(none)'!r} is not supported; send one of {', '.join(ACCEPTED)}"
        )
    return decoded


def _json(body: bytes, model: Model) -> Decoded:
    """V1 (`{"instances": [...]}`, or a bare list of instances) or V2 (`{"inputs": [...]}`), told
    apart by the body's shape: one route takes both, as SageMaker's does."""
    payload = protocol.loads(body, parse_json)
    if isinstance(payload, dict) and "inputs" in payload:
        return _v2(v2.parse(payload), model)
    instances = v1.instances_of({"instances": payload} if isinstance(payload, list) else payload)
    return Decoded(v1.feeds(instances, model.inputs, model.config.features), "v1")


def _v2(request: v2.Request, model: Model) -> Decoded:
    feeds = v2.feeds(request.inputs, model.inputs)
    return Decoded(feeds, "v2", request.outputs, request.id, binary.wanted(request))


# Responses -------------------------------------------------------------------------------------


# The media type of each kind of request, the answer's when Accept leaves it open (.npy only for a
# single output).
IN_KIND: dict[Protocol, str] = {"v1": JSON, "v2": JSON, "npy": NPY, "npz": NPZ}


def negotiate(accept: str | None, decoded: Decoded, model: Model) -> str:
    """The response's media type: the first acceptable one in `Accept` (by q), in kind for */*."""
    if decoded.binary:
        return OCTET
    outputs = decoded.outputs or tuple(model.output_names)
    in_kind = IN_KIND[decoded.protocol]
    if in_kind == NPY and len(outputs) != 1:
        in_kind = NPZ
    if not accept:
        return in_kind
    for kind in _ranked(accept):
        answer = _answer_for(kind, in_kind, outputs)
        if answer is not None:
            return answer
    raise NotAcceptable(f"cannot answer in {accept!r}; the server answers in {', '.join(ACCEPTED)}")


def _ranked(accept: str) -> list[str]:
    """The media types of an Accept header, most wanted first (by q, then as written); q=0 ones left out."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept.split(",")):
        kind, *params = (p.strip() for p in item.split(";"))
        quality = _quality(params) if params else 1.0
        if quality > 0:
            ranked.append((-quality, position, kind.lower()))
    return [kind for _, _, kind in sorted(ranked)]


def _quality(params: list[str]) -> float:
    """An Accept item's q (the last one given): 1 when absent, 0 (not wanted) when unreadable."""
    quality = 1.0
    for param in params:
        key, _, value = param.partition("=")
        if key.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
    return quality


def _answer_for(kind: str, in_kind: str, outputs: tuple[str, ...]) -> str | None:
    """The media type to answer in for an accepted `kind`; None when the server has no such type."""
    if kind in ("*/*", "application/*"):
        return in_kind
    if kind == JSON or kind.endswith("+json"):
        return JSON
    if kind == NPY and len(outputs) != 1:
        raise NotAcceptable(
            f"{NPY} carries one array and the model gives {len(outputs)} outputs "
            f"({', '.join(outputs)}): name one with {CUSTOM_ATTRIBUTES}: outputs=NAME, "
            f"or accept {NPZ}",
        )
    return kind if kind in (NPY, NPZ) else None


def answer(
    outputs: dict[str, Any], decoded: Decoded, media: str, model: Model, rows: int
) -> tuple[bytes, dict[str, str]]:
    """The response body, and the headers that go with it (a binary V2 answer's header length)."""
    if media != OCTET:
        return encode(outputs, decoded, media, model, rows), {}
    chosen = {name: outputs[name] for name in decoded.outputs or tuple(model.output_names)}
    response = v2.response(model.name, v2.output_tensors(chosen), request_id=decoded.request_id)
    content, size = binary.encode(response, decoded.binary, dump_json)
    return content, {binary.HEADER: str(size)}


def encode(outputs: dict[str, Any], decoded: Decoded, media: str, model: Model, rows: int) -> bytes:
    names = decoded.outputs or tuple(model.output_names)
    chosen = {name: outputs[name] for name in names}
    if media == JSON and decoded.protocol == "v2":
        return dump_json(v2.response(model.name, v2.output_tensors(chosen), request_id=decoded.request_id))
    if media == JSON:
        return dump_json({"predictions": v1.predictions(chosen, rows)})
    not_arrays = [name for name, value in chosen.items() if not isinstance(value, np.ndarray)]
    if not_arrays:
        raise NotAcceptable(f"outputs {', '.join(not_arrays)} are not tensors: accept {JSON}")
    if media == NPY:
        return arrays.to_npy(next(iter(chosen.values())))
    return arrays.to_npz(chosen)
