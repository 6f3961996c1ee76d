"""`:explain` (KServe's V1 verb) as the OpenAPI document shows it; aimass.serving.explanations answers
it (docs/explain.md)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from aimass.contracts.common import Contract, ModelRef


class ExplainParameters(Contract):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    class_: str | int | None = Field(
        default=None,
        alias="class",
        description="the class whose probability is explained, by name (or index); default: each "
        "instance's predicted class. A regressor's one value needs none",
    )
    samples: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="coalitions evaluated per instance; default 2 x features + 2048. Every coalition "
        "(exact Shapley values) when 2^features - 2 is at most this",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="the seed coalitions are drawn with")
    background: int | None = Field(
        default=None,
        ge=1,
        description="use only the first this many rows of the version's background sample (cost is "
        "linear in them); default: all of them",
    )


class ExplainRequest(Contract):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"instances": [{"mean_radius": 17.99, "mean_texture": 10.38}]},
                {"instances": [[0.0, 1.5, 3.2]], "parameters": {"class": "benign", "samples": 512}},
            ]
        },
    )

    # Instances as `:predict` takes them (aimass.protocol.v1), checked against the signature.
    instances: list[Any] = Field(min_length=1)
    parameters: ExplainParameters = Field(default_factory=ExplainParameters)


class InstanceShap(Contract):
    """One instance's explanation: base_value + sum(attributions) == value (docs/explain.md)."""

    class_: str = Field(alias="class", description="the output explained: a class name, or `value`")
    value: float = Field(description="the model's output explained, for this instance")
    base_value: float = Field(description="E[output] over the background rows")
    attributions: dict[str, float] = Field(description="feature name → its SHAP value")


class ClarifyAttribution(Contract):
    attribution: list[float]


class ClarifyFeature(Contract):
    feature_header: str
    attributions: list[ClarifyAttribution]


class ClarifyExplanations(Contract):
    """SageMaker Clarify online explainability's `explanations`: per record, per feature."""

    kernel_shap: list[list[ClarifyFeature]]


class Background(Contract):
    rows: int
    source: str = Field(description="`reference sample` or `statistics means` (docs/explain.md)")


class ExplainResponse(Contract):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "predictions": [
                        {"label": "benign", "probabilities": {"malignant": 0.02, "benign": 0.98}}
                    ],
                    "shap": [
                        {
                            "class": "benign",
                            "value": 0.98,
                            "base_value": 0.62,
                            "attributions": {"mean_radius": 0.21, "mean_texture": 0.15},
                        }
                    ],
                    "explanations": {
                        "kernel_shap": [
                            [
                                {"feature_header": "mean_radius", "attributions": [{"attribution": [0.21]}]},
                                {"feature_header": "mean_texture", "attributions": [{"attribution": [0.15]}]},
                            ]
                        ]
                    },
                    "samples": 2108,
                    "exact": False,
                    "seed": 0,
                    "background": {"rows": 100, "source": "reference sample"},
                    "model": {"name": "breast-cancer", "version": 1, "backend": "lambda"},
                }
            ]
        }
    )

    predictions: list[Any] = Field(description="as `:predict` answers them (before rules)")
    shap: list[InstanceShap]
    explanations: ClarifyExplanations
    samples: int = Field(description="coalitions evaluated per instance")
    exact: bool = Field(description="every coalition was evaluated: the exact Shapley values")
    seed: int
    background: Background
    model: ModelRef
