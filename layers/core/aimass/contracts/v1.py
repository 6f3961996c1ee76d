"""The V1 protocol (TF-Serving / KServe V1) as the OpenAPI document shows it; aimass.protocol.v1
decodes it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from aimass.contracts.common import Contract, ModelRef


class PredictRequest(Contract):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"instances": [{"mean_radius": 17.99, "mean_texture": 10.38}]},
                {"instances": [[0.0, 1.5, 3.2]]},
            ]
        }
    )

    # Each instance is an object keyed by feature (or input) name, or a (nested) list. Their contents
    # are checked against the model's signature, with field-level details, by inference.tensors.
    instances: list[Any] = Field(min_length=1)


class PredictResponse(Contract):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "predictions": [
                        {"label": "benign", "probabilities": {"malignant": 0.02, "benign": 0.98}}
                    ],
                    "model": {"name": "breast-cancer", "version": 1, "backend": "lambda"},
                }
            ]
        }
    )

    predictions: list[Any]
    model: ModelRef
    prediction_ids: list[str] | None = Field(
        default=None,
        description="one per prediction, for POST /v1/models/{name}/feedback; absent when the request "
        "was not captured (capture off, or sampled out)",
    )
    fallback: Fallback | None = Field(
        default=None,
        description="present when another version than the one the request resolved to answered "
        "(`model`): its endpoint was throttled or down and the `fallback` alias's version answered, or "
        "its artifact failed its sha256 check and the version that last served the request answered",
    )
    steps: list[StepDetail] | None = Field(
        default=None,
        description="with `?detail=steps`: each step of a graph version, in the graph's order "
        "(docs/composition.md); empty for a version of one model",
    )
    variant: Literal["stable", "canary", "pinned"] | None = Field(
        default=None,
        description="why `model` served it: `stable` or `canary` under the model's traffic policy "
        "(GET /v1/models/{name}/traffic) for a request that named no version, `pinned` when it named one",
    )


class StepDetail(Contract):
    step: str = Field(description="the step's name: a sequence step's `name`, else the member `name@version`")
    model: ModelRef = Field(description="the member version that ran it")
    predictions: list[Any] = Field(description="its predictions as V1 answers them, one per instance it took")
    instances: list[int] | None = Field(
        default=None, description="a switch's branch: the indexes of the request's instances it took"
    )


class Fallback(Contract):
    from_: ModelRef = Field(alias="from", description="the version that could not answer")
    reason: str = Field(
        description="its error code: backend_throttled, backend_unavailable, backend_error, "
        "artifact_integrity (its artifact is refused; checked again after a back-off)"
    )
    message: str
