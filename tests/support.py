"""Helpers the test layers share (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())  # type: ignore[no-any-return]


def retrained(model: bytes) -> bytes:
    """The same graph in other bytes (another sha256), as a retrained model's file would be."""
    import onnx

    proto = onnx.load_from_string(model)
    proto.doc_string = "retrained"
    return bytes(proto.SerializeToString())
