"""The wire protocols every aimass server speaks, and their error kinds: V1 (`v1`), the Open
Inference Protocol V2 (`v2`), `.npy`/`.npz` arrays (`arrays`), over the shared tensor checks
(`tensors`).

numpy only: no web framework, no pydantic. The Lambda API and the inference server in
gpu_endpoints/ (whose container ships this package beside it) decode and encode with the same
code, so a payload gets the same answer, or the same error, from either."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aimass.protocol.errors import BadJson

JSON = "application/json"


def loads(body: bytes, parse: Callable[[bytes], Any] = json.loads) -> Any:
    """A JSON body, or BadJson saying why it is not one. `parse` is any JSON parser that raises
    ValueError on bad input: a server that has a faster one than the standard library's passes it."""
    try:
        return parse(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadJson(f"the request body is not valid JSON: {error}") from None
