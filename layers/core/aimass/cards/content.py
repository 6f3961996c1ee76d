"""A version's card as SageMaker Model Card content, built from plain data: the version record, the
fields a person supplied, its baseline's statistics.json, the rules and quality policy in force, and
(optionally) the feature attributions' global summary. docs/cards.md maps each field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aimass.contracts.cards import (
    MAX_DESCRIPTION,
    MAX_DETAIL_VALUE,
    AdditionalInformation,
    BusinessDetails,
    CardFields,
    EvaluationDetail,
    HyperParameter,
    IntendedUses,
    MetricDatum,
    MetricGroup,
    ModelCardContent,
    ModelOverview,
    TrainingDetails,
    TrainingJobDetails,
)
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import ModelVersion, TensorSpec
from aimass.contracts.rules import RulesetVersion

BASELINE = "baseline"
ATTRIBUTIONS = "feature attributions"
ATTRIBUTIONS_MEANING = "mean |SHAP| per feature over the version's baseline rows"


@dataclass(frozen=True)
class CardInputs:
    """What a card is made of, read from the registry (aimass.cards.inputs_for) or given by a test.
    `attributions`: mean |SHAP| per feature over the baseline, when known (aimass.explain's summary);
    the card has that section only then, with `attributions_metadata` (how it was computed, where it
    is kept). `attributions_note`: why the version has no summary (it cannot be explained)."""

    record: ModelVersion
    fields: CardFields | None = None
    statistics: Mapping[str, Any] | None = None
    ruleset: RulesetVersion | None = None
    quality_policy: QualityPolicy = field(default_factory=QualityPolicy)
    aliases: tuple[str, ...] = ()
    archived: bool = False
    attributions: Mapping[str, float] | None = None
    attributions_metadata: Mapping[str, str] = field(default_factory=dict)
    attributions_note: str | None = None

    @property
    def supplied(self) -> dict[str, Any]:
        return self.fields.supplied() if self.fields else {}


def clip(text: str, limit: int = MAX_DETAIL_VALUE) -> str:
    """Text within a schema limit: cut, with an ellipsis, when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def problem_type(record: ModelVersion) -> str | None:
    signature = record.signature
    classes = signature.class_labels or signature.output_classes
    if signature.task == "classification" or signature.class_labels:
        if classes:
            return "Binary Classification" if len(classes) == 2 else "Multiclass Classification"
        return "Classification"
    if signature.task == "regression":
        return "Regression"
    return None


def tensors(specs: list[TensorSpec]) -> str:
    return ", ".join(f"{s.name} {s.dtype}{['?' if d is None else d for d in s.shape]}" for s in specs)


def parent_version(lineage: Mapping[str, Any]) -> int | None:
    """The version this one was made from: the one the pipeline retrained, or the one compressed."""
    parent = lineage.get("parent_version", lineage.get("compressed_from"))
    return parent if isinstance(parent, int) else None


def graph_members(record: ModelVersion) -> list[tuple[str, str]]:
    """A graph version's members: each as its spec gives it (`name@alias` or `name@3`) and the version
    it was resolved to when the graph was created (`name@1`); none for another version."""
    if record.graph is None:
        return []
    return [(m.given, f"{m.name}@{m.version}") for m in record.graph.members]


def evaluation_report(lineage: Mapping[str, Any]) -> str | None:
    report = (lineage.get("evaluation") or {}).get("report")
    return report if isinstance(report, str) else None


def rules_summary(ruleset: RulesetVersion | None) -> str:
    if ruleset is None:
        return "none"
    rules = ruleset.ruleset.rules
    stages = [
        f"{stage}: " + ", ".join(r.id for r in rules if r.stage == stage)
        for stage in ("pre", "post")
        if any(r.stage == stage for r in rules)
    ]
    return f"v{ruleset.version} ({ruleset.ruleset.hit_policy} hit), {len(rules)} rules" + (
        "; " + "; ".join(stages) if stages else ""
    )


def feature_summaries(statistics: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Each feature of statistics.json in a few numbers: `name`, `missing`, and a numeric feature's
    `mean`, `std_dev`, `min`, `max`, or a categorical one's `distinct` and `top` (its most common
    value)."""
    found = []
    for entry in (statistics or {}).get("features", []):
        numeric = entry.get("numerical_statistics")
        strings = entry.get("string_statistics")
        stats = numeric or strings or {}
        summary: dict[str, Any] = {
            "name": str(entry.get("name")),
            "missing": int(stats.get("common", {}).get("num_missing", 0)),
        }
        if numeric is not None:
            summary.update({k: numeric.get(k) for k in ("mean", "std_dev", "min", "max")})
        elif strings is not None:
            buckets = strings.get("distribution", {}).get("categorical", {}).get("buckets", [])
            summary["distinct"] = int(strings.get("distinct_count", len(buckets)))
            summary["top"] = str(buckets[0]["value"]) if buckets else None
        found.append(summary)
    return found


def _overview(inputs: CardInputs) -> ModelOverview:
    record, supplied = inputs.record, inputs.supplied
    trained = inputs.record.lineage.get("trained") or {}
    return ModelOverview(
        model_id=f"aimass:{record.name}:{record.version}",
        model_name=record.name,
        model_description=clip(record.description, MAX_DESCRIPTION) if record.description else None,
        model_version=record.version,
        problem_type=problem_type(record),
        algorithm_type=trained.get("estimator"),
        model_creator=supplied.get("creator") or record.created_by,
        model_owner=supplied.get("owner"),
        model_artifact=[record.artifact_uri],
    )


def _training(record: ModelVersion) -> TrainingDetails:
    lineage = record.lineage
    trained, dataset = lineage.get("trained") or {}, lineage.get("dataset") or {}
    parent = parent_version(lineage)
    observations = []
    if trained:
        observations.append(
            f"{trained.get('estimator')} trained on {trained.get('train_rows')} rows "
            f"({trained.get('backend', 'in the pipeline')})"
            + (f", retraining v{parent}" if "parent_version" in lineage else "")
            + (f", started by {lineage['trigger']}" if lineage.get("trigger") else "")
        )
    if "compressed_from" in lineage:
        method = (lineage.get("compression") or {}).get("method", "compressed")
        observations.append(f"a {method} copy of v{lineage['compressed_from']}")
    if not trained and not dataset:
        return TrainingDetails(training_observations="; ".join(observations) or None)
    job = trained.get("training_job") or {}
    params = trained.get("params") or {}
    return TrainingDetails(
        training_observations="; ".join(observations) or None,
        training_job_details=TrainingJobDetails(
            training_arn=job.get("arn") if isinstance(job, dict) else None,
            training_datasets=[dataset["uri"]] if dataset.get("uri") else [],
            hyper_parameters=[
                HyperParameter(name=str(k), value=json.dumps(v, default=str))
                for k, v in sorted(params.items())
            ][:100],
        ),
    )


def _numbers(values: Mapping[str, Any]) -> list[MetricDatum]:
    return [
        MetricDatum(name=k, type="number", value=float(v))
        for k, v in sorted(values.items())
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]


def _evaluations(inputs: CardInputs) -> list[EvaluationDetail]:
    record, lineage = inputs.record, inputs.record.lineage
    details = []
    if record.metrics:
        evaluation = lineage.get("evaluation") or {}
        compared = lineage.get("compared_with") or {}
        groups = [MetricGroup(name="metrics", metric_data=_numbers(record.metrics))]
        if compared.get("metrics"):
            groups.append(
                MetricGroup(
                    name=f"champion v{compared.get('version')} on the same rows",
                    metric_data=_numbers(compared["metrics"]),
                )
            )
        report = evaluation_report(lineage)
        dataset = (lineage.get("dataset") or {}).get("uri")
        details.append(
            EvaluationDetail(
                name="held-out evaluation" if evaluation or compared else "registered metrics",
                evaluation_observation=evaluation.get("gate"),
                datasets=[dataset] if dataset else [],
                metadata={
                    k: str(v)
                    for k, v in (("report", report), ("holdout_rows", evaluation.get("holdout_rows")))
                    if v is not None
                },
                metric_groups=groups,
            )
        )
    if inputs.statistics is not None and record.baseline is not None:
        groups = []
        for summary in feature_summaries(inputs.statistics):
            data = _numbers({k: v for k, v in summary.items() if k not in ("name", "top")})
            if summary.get("top") is not None:
                data.append(MetricDatum(name="top", type="string", value=summary["top"]))
            groups.append(MetricGroup(name=summary["name"], metric_data=data))
        details.append(
            EvaluationDetail(
                name=BASELINE,
                evaluation_observation=f"{record.baseline.item_count} rows of {record.baseline.source}",
                datasets=[record.baseline.source[:1024]],
                metadata={"statistics": record.baseline.statistics_uri},
                metric_groups=groups,
            )
        )
    if inputs.attributions:
        ranked = sorted(inputs.attributions.items(), key=lambda kv: -abs(kv[1]))
        details.append(
            EvaluationDetail(
                name=ATTRIBUTIONS,
                evaluation_observation=ATTRIBUTIONS_MEANING,
                metadata=dict(inputs.attributions_metadata),
                metric_groups=[
                    MetricGroup(
                        name="mean |SHAP|",
                        metric_data=[
                            MetricDatum(
                                name="mean |SHAP| per feature",
                                type="bar_chart",
                                value=[float(v) for _, v in ranked],
                                x_axis_name=[k for k, _ in ranked],
                                y_axis_name="mean |SHAP|",
                            )
                        ],
                    )
                ],
            )
        )
    return details


def _attributions_detail(attributions: Mapping[str, float]) -> str:
    """The largest attributions first, as many as fit in a custom detail's value."""
    ranked = sorted(attributions.items(), key=lambda kv: -abs(kv[1]))
    kept: dict[str, float] = {}
    for name, value in ranked:
        if len(json.dumps({**kept, name: round(float(value), 6)})) > MAX_DETAIL_VALUE:
            break
        kept[name] = round(float(value), 6)
    return json.dumps(kept)


def _custom(inputs: CardInputs) -> dict[str, str]:
    record, lineage = inputs.record, inputs.record.lineage
    signature = record.signature
    dataset = lineage.get("dataset") or {}
    parent = parent_version(lineage)
    details: dict[str, Any] = {
        "created_at": record.created_at,
        "created_by": record.created_by,
        "backend": record.backend,
        "sha256": record.sha256,
        "size_bytes": record.size_bytes,
        "inputs": tensors(signature.inputs),
        "outputs": tensors(signature.outputs),
        "features": ", ".join(f.name for f in signature.features or []) or None,
        "classes": ", ".join(signature.class_labels or signature.output_classes or []) or None,
        "aliases": ", ".join(inputs.aliases) or None,
        "archived": "true" if inputs.archived else None,
        "lineage.dataset_uri": dataset.get("uri"),
        "lineage.dataset_sha256": dataset.get("sha256"),
        "lineage.pipeline_run": lineage.get("execution"),
        "lineage.trigger": lineage.get("trigger"),
        "lineage.parent_version": parent,
        "graph.kind": record.graph.spec.kind if record.graph else None,
        "graph.members": ", ".join(
            given if given == resolved else f"{given} = {resolved}"
            for given, resolved in graph_members(record)
        )
        or None,
        "graph.spec": record.graph.spec.model_dump_json(exclude_none=True) if record.graph else None,
        "evaluation_report": evaluation_report(lineage),
        "baseline": f"{record.baseline.item_count} rows of {record.baseline.source}"
        if record.baseline
        else None,
        "rules": rules_summary(inputs.ruleset),
        "quality_policy": inputs.quality_policy.model_dump_json(),
        "feature_attributions": _attributions_detail(inputs.attributions) if inputs.attributions else None,
        "feature_attributions_note": None if inputs.attributions else inputs.attributions_note,
        "card_revision": inputs.fields.revision if inputs.fields else None,
        "card_updated_by": inputs.fields.updated_by if inputs.fields else None,
        "card_updated_at": inputs.fields.updated_at if inputs.fields else None,
    }
    return {k: clip(str(v)) for k, v in details.items() if v is not None}


def build(inputs: CardInputs) -> ModelCardContent:
    """The card's content: what the registry knows, the supplied fields, and what has no place in the
    schema under `additional_information.custom_details`."""
    supplied = inputs.supplied
    return ModelCardContent(
        model_overview=_overview(inputs),
        intended_uses=IntendedUses(
            purpose_of_model=supplied.get("purpose"),
            intended_uses=supplied.get("intended_use"),
            factors_affecting_model_efficiency=supplied.get("factors"),
            risk_rating=supplied.get("risk_rating", "Unknown"),
            explanations_for_risk_rating=supplied.get("risk_explanation"),
        ),
        business_details=BusinessDetails(
            business_problem=supplied.get("business_problem"),
            business_stakeholders=supplied.get("business_stakeholders"),
            line_of_business=supplied.get("line_of_business"),
        ),
        training_details=_training(inputs.record),
        evaluation_details=_evaluations(inputs),
        additional_information=AdditionalInformation(
            ethical_considerations=supplied.get("ethical_considerations"),
            caveats_and_recommendations=supplied.get("limits"),
            custom_details=_custom(inputs),
        ),
    )
