"""What the Lambda runtime does for a handler, done in-process: import it by path, pass a context."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
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


def load_handler(function: str, attribute: str = "handler") -> Handler:
    """functions/<function>/app.py imported by path under its own module name, as the runtime does."""
    spec = importlib.util.spec_from_file_location(
        f"function_{function}", REPO_ROOT / "functions" / function / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Handler = getattr(module, attribute)
    return handler
