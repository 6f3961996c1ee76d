"""Helpers the test layers share (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"


class Clock:
    """A clock a test moves by hand: `clock.now += 6`."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def error_of(response: Any) -> dict[str, Any]:
    """The API's error object of a response, which must be JSON."""
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]  # type: ignore[no-any-return]


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())  # type: ignore[no-any-return]


def retrained(model: bytes) -> bytes:
    """The same graph in other bytes (another sha256), as a retrained model's file would be."""
    import onnx

    proto = onnx.load_from_string(model)
    proto.doc_string = "retrained"
    return bytes(proto.SerializeToString())
