"""The typed answers the code passes around (TypedDicts, free on the hot path) and the pydantic
contracts that document them in the OpenAPI document name the same fields."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from aimass.contracts.common import ModelRef
from aimass.contracts.v1 import Fallback, PredictResponse
from aimass.contracts.v2 import InferResponse, InferTensor
from aimass.protocol import v2
from aimass.serving.pipeline import FallbackNote, V1Answer
from aimass.serving.store import VersionRef


def fields(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


@pytest.mark.parametrize(
    ("typed", "contract"),
    [
        (V1Answer, PredictResponse),
        (VersionRef, ModelRef),
        (FallbackNote, Fallback),
        (v2.Response, InferResponse),
    ],
)
def test_a_typed_answer_has_exactly_its_contracts_fields(typed: Any, contract: type[BaseModel]) -> None:
    assert set(typed.__annotations__) == fields(contract)


def test_an_output_tensor_is_an_infer_tensor_without_parameters() -> None:
    assert set(v2.OutputTensor.__annotations__) == fields(InferTensor) - {"parameters"}
