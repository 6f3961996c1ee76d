"""Helpers the test layers share (fixtures live in conftest.py)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"


def load_function(name: str) -> ModuleType:
    """A function's app.py, imported by path as the Lambda runtime would."""
    spec = importlib.util.spec_from_file_location(f"function_{name}", REPO / "functions" / name / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())  # type: ignore[no-any-return]


@dataclass
class LambdaContext:
    """The fields of the Lambda runtime's context object that Powertools reads."""

    function_name: str = "aimass-online"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:aimass-online"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
