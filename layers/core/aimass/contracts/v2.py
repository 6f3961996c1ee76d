"""The Open Inference Protocol (V2) as the OpenAPI document shows it; aimass.protocol.v2 decodes it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from aimass.contracts.common import Contract

V2Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]


class InferTensor(Contract):
    name: str
    shape: list[int]
    datatype: V2Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferOutputRequest(Contract):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(Contract):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [0.1, 0.2, 0.3]}]}
            ]
        }
    )

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[InferOutputRequest] | None = None


class InferResponse(Contract):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="aimass's additions: data-quality findings, `rules`, `prediction_ids`, and "
        "`fallback` (the shape of V1's `fallback`: another version than the one asked for answered, "
        "`model_version`, and why)",
    )
    outputs: list[InferTensor]


class V2TensorMetadata(Contract):
    name: str
    datatype: V2Datatype
    shape: list[int]


class V2ModelMetadata(Contract):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2Ready(Contract):
    name: str
    ready: bool


class V2ServerReady(Contract):
    ready: bool
    reason: str | None = Field(
        default=None, description="why not (503): AWS (the registry, the artifacts) cannot be reached now"
    )
