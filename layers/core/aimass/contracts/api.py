"""What every route may answer: the error body; /health and KServe's / ."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Alive(BaseModel):
    """KServe V1's `GET /`."""

    status: Literal["alive"] = "alive"


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
