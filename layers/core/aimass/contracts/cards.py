"""Model cards (docs/cards.md): the fields a person supplies for a version (owner, intended use, known
limits, risk rating, ...), as they are stored beside it, and the card itself in the content schema of
SageMaker Model Cards (`model_overview`, `intended_uses`, `business_details`, `training_details`,
`evaluation_details`, `additional_information`), so that it can be given to `CreateModelCard` as it
is. Only the parts of that schema the card fills are modelled here, with its types and limits."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from aimass.contracts.common import Contract, utcnow

RiskRating = Literal["High", "Medium", "Low", "Unknown"]  # SageMaker's enum, as it spells it
# SageMaker's limits: a model description of 1024 characters, a custom detail's key of 100 and its
# value of 1024.
MAX_DESCRIPTION = 1024
MAX_DETAIL_KEY = 100
MAX_DETAIL_VALUE = 1024


class CardFieldsUpdate(Contract):
    """The fields of a version's card that a person supplies: each one given is set (`null` clears
    it), the others are left as they are. Where each goes in the card: docs/cards.md."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "owner": "risk-team@example.com",
                    "intended_use": "triage of biopsy results before a pathologist's review",
                    "limits": "trained on one hospital's data; not for screening",
                    "risk_rating": "Medium",
                }
            ]
        },
    )

    owner: str | None = Field(default=None, max_length=1024, description="who maintains the model")
    creator: str | None = Field(default=None, max_length=1024, description="who made it")
    purpose: str | None = Field(default=None, max_length=2048, description="what the model is for")
    intended_use: str | None = Field(default=None, max_length=2048, description="how it is meant to be used")
    factors: str | None = Field(
        default=None, max_length=2048, description="what affects how well it works (data, population, ...)"
    )
    risk_rating: RiskRating | None = None
    risk_explanation: str | None = Field(default=None, max_length=2048, description="why that rating")
    limits: str | None = Field(
        default=None, max_length=2048, description="known limits: caveats and recommendations"
    )
    ethical_considerations: str | None = Field(default=None, max_length=2048)
    business_problem: str | None = Field(default=None, max_length=2048)
    business_stakeholders: str | None = Field(default=None, max_length=2048)
    line_of_business: str | None = Field(default=None, max_length=2048)


class CardFields(CardFieldsUpdate):
    """A version's supplied card fields as the registry keeps them (`MODEL#<name> / CARD#<version>`),
    with who set them last and the revision (each write adds one)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int
    revision: int = Field(default=0, description="writes so far; 0: never set")
    updated_at: str = Field(default_factory=utcnow)
    updated_by: str = ""

    def supplied(self) -> dict[str, Any]:
        """The supplied fields that are set, by name."""
        return {
            k: v
            for k, v in self.model_dump(include=set(CardFieldsUpdate.model_fields)).items()
            if v is not None
        }


class AttributionsSummary(Contract):
    """A version's feature attributions' global summary, as kept beside its files
    (`models/<name>/<version>/card/attributions.json`): computed once, on the first card request that
    lacks it (aimass.cards.attributions), read afterwards. The version's model and background never
    change, so neither does the summary."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "breast-cancer",
                    "version": 1,
                    "attributions": {"worst_radius": 0.071, "mean_radius": 0.012},
                    "method": "kernel_shap",
                    "samples": 512,
                    "seed": 0,
                    "rows": 50,
                    "background_rows": 100,
                    "background_source": "reference sample",
                    "computed_at": "2026-12-06T18:00:00Z",
                }
            ]
        },
    )

    name: str
    version: int
    attributions: dict[str, float] = Field(description="mean |SHAP| per feature, in the version's order")
    method: Literal["kernel_shap"] = "kernel_shap"
    samples: int = Field(description="the coalitions asked for per row explained")
    seed: int
    rows: int = Field(description="the background rows explained (the first ones), each against them all")
    background_rows: int
    background_source: str = Field(description="`reference sample`, or `statistics means`")
    computed_at: str = Field(default_factory=utcnow)


# --- SageMaker Model Card content (the parts filled) ------------------------------------------------


class _Schema(Contract):
    # The content schema refuses properties it does not name; so does the card.
    model_config = ConfigDict(extra="forbid")


class InferenceEnvironment(_Schema):
    container_image: list[str] = Field(max_length=15)


class ModelOverview(_Schema):
    model_id: str | None = None
    model_name: str
    model_description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    model_version: float = Field(ge=1)
    problem_type: str | None = None
    algorithm_type: str | None = None
    model_creator: str | None = None
    model_owner: str | None = None
    model_artifact: list[str] = Field(default_factory=list, max_length=15)
    inference_environment: InferenceEnvironment | None = None


class IntendedUses(_Schema):
    purpose_of_model: str | None = None
    intended_uses: str | None = None
    factors_affecting_model_efficiency: str | None = None
    risk_rating: RiskRating = "Unknown"
    explanations_for_risk_rating: str | None = None


class BusinessDetails(_Schema):
    business_problem: str | None = None
    business_stakeholders: str | None = None
    line_of_business: str | None = None


class TrainingMetric(_Schema):
    name: str
    value: float
    notes: str | None = None


class HyperParameter(_Schema):
    name: str
    value: str


class TrainingJobDetails(_Schema):
    training_arn: str | None = None
    training_datasets: list[str] = Field(default_factory=list, max_length=15)
    training_metrics: list[TrainingMetric] = Field(default_factory=list, max_length=50)
    hyper_parameters: list[HyperParameter] = Field(default_factory=list, max_length=100)


class TrainingDetails(_Schema):
    training_observations: str | None = None
    training_job_details: TrainingJobDetails | None = None


MetricType = Literal["number", "string", "boolean", "matrix", "linear_graph", "bar_chart"]


class MetricDatum(_Schema):
    name: str
    type: MetricType
    value: float | str | bool | list[Any]
    notes: str | None = None
    x_axis_name: str | list[str] | None = None
    y_axis_name: str | list[str] | None = None


class MetricGroup(_Schema):
    name: str
    metric_data: list[MetricDatum]


class EvaluationDetail(_Schema):
    name: str
    evaluation_observation: str | None = None
    evaluation_job_arn: str | None = None
    datasets: list[str] = Field(default_factory=list, max_length=10)
    metadata: dict[str, str] = Field(default_factory=dict)
    metric_groups: list[MetricGroup] = Field(default_factory=list)


class AdditionalInformation(_Schema):
    ethical_considerations: str | None = None
    caveats_and_recommendations: str | None = None
    custom_details: dict[str, str] = Field(
        default_factory=dict,
        description="what the schema has no place for: lineage, baseline, rules, quality policy, "
        "attributions (docs/cards.md names each key); values are JSON text where they are not words",
    )


class ModelCardContent(_Schema):
    """A version's card, in SageMaker Model Card's content schema (docs/cards.md maps each field)."""

    model_overview: ModelOverview
    intended_uses: IntendedUses
    business_details: BusinessDetails
    training_details: TrainingDetails
    evaluation_details: list[EvaluationDetail]
    additional_information: AdditionalInformation
