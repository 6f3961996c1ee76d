"""The JSON the API writes."""

from __future__ import annotations

import json
import math

from aimass.api.responses import JSON


def test_non_finite_model_outputs_are_written_as_null_not_invalid_json() -> None:
    body = JSON({"predictions": [math.nan, 1.0, [math.inf]]}).body
    assert json.loads(body) == {"predictions": [None, 1.0, [None]]}
