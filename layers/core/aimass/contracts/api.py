"""What every route may answer: the error body; /health and KServe's / ."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from aimass.contracts.common import Contract


class ErrorDetail(Contract):
    code: str
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorResponse(Contract):
    error: ErrorDetail


class Alive(Contract):
    """KServe V1's `GET /`."""

    status: Literal["alive"] = "alive"


class Health(Contract):
    status: Literal["ok"] = "ok"
    version: str
