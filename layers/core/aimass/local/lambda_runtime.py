"""What the Lambda runtime does for a handler, done in-process: import it by path, pass a context."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimass.local.template import REPO_ROOT

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class LambdaContext:
    """The context object the runtime passes: the attributes Powertools and Mangum read."""

    function_name: str = "aimass-online"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:aimass-online"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    function_version: str = "$LATEST"
    timeout_s: float = 900.0
    _deadline: float = field(init=False, repr=False, default=0.0)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """As the runtime's: what is left of the function's Timeout (Powertools idempotency reads it)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_function(code_uri: str | Path, handler: str) -> Handler:
    """A template function's handler: `Handler: module.attribute` under its `CodeUri` folder, imported
    by path under its own module name, as the runtime does. A relative CodeUri is the repo's."""
    root = REPO_ROOT / code_uri
    module, _, attribute = handler.rpartition(".")
    spec = importlib.util.spec_from_file_location(
        f"function_{root.name}", root / f"{module.replace('.', '/')}.py"
    )
    assert spec and spec.loader
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    entry: Handler = getattr(loaded, attribute)
    return entry


def load_handler(function: str, attribute: str = "handler") -> Handler:
    """functions/<function>/app.py imported by path under its own module name, as the runtime does."""
    return load_function(Path("functions") / function, f"app.{attribute}")
