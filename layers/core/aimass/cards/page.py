"""A version's card as one self-contained HTML page, with the look of the project's other pages
(aimass.reports): the card's sections in order, the metrics and the feature attributions as bar
plots, the baseline's distribution of each feature from its statistics.json.

The registry function draws it (`GET .../card` with `Accept: text/html`), and the functions carry no
matplotlib: the plots are inline SVG (aimass.reports.svg). Domain code: data in, a str out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aimass.cards.content import (
    ATTRIBUTIONS_MEANING,
    BASELINE,
    CardInputs,
    build,
    feature_summaries,
    graph_members,
    rules_summary,
)
from aimass.contracts.cards import MetricGroup, ModelCardContent
from aimass.reports import svg
from aimass.reports.page import MISSING, definitions, escape, head, number, table
from aimass.reports.plots import BASELINE_COLOR, CANDIDATE_COLOR, CHAMPION_COLOR, MAX_CATEGORIES

MAX_BASELINE_PLOTS = 12  # features drawn; every feature is in the table
MAX_ATTRIBUTION_BARS = 30


def render(inputs: CardInputs, content: ModelCardContent | None = None) -> str:
    """The page of the card `build(inputs)` makes (or `content`, already built from them)."""
    content = content or build(inputs)
    overview = content.model_overview
    title = f"Model card: {overview.model_name} v{inputs.record.version}"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(overview.model_description or "")}</p>',
        _overview(inputs, content),
        _intended(content),
        _training(inputs, content),
        _evaluation(content),
        _baseline(inputs),
        _attributions(inputs),
        _in_force(inputs),
        _limits(content),
    ]
    parts = [
        *head(title),
        *body,
        '<footer><p class="meta">Written by aimass. The same card as JSON, in SageMaker Model Card\'s '
        "content schema: <code>GET /v1/models/{name}/versions/{v}/card</code>.</p></footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _text(value: str | None) -> str:
    return escape(value) if value else MISSING


def _overview(inputs: CardInputs, content: ModelCardContent) -> str:
    o, record = content.model_overview, inputs.record
    custom = content.additional_information.custom_details
    items = [
        ("model", escape(o.model_name)),
        ("version", str(record.version)),
        ("problem type", _text(o.problem_type)),
        ("algorithm", _text(o.algorithm_type)),
        ("owner", _text(o.model_owner)),
        ("creator", _text(o.model_creator)),
        ("created", escape(record.created_at)),
        ("served by", f"<code>{escape(record.backend)}</code>"),
        ("inputs", f"<code>{_text(custom.get('inputs'))}</code>"),
        ("outputs", f"<code>{_text(custom.get('outputs'))}</code>"),
        ("features", _text(custom.get("features"))),
        ("classes", _text(custom.get("classes"))),
        ("aliases", _text(custom.get("aliases"))),
        (
            "artifact",
            f"<code>{escape(record.artifact_uri)}</code> (sha256 <code>{escape(record.sha256)}</code>)",
        ),
    ]
    if inputs.archived:
        items.append(("archived", "yes: no alias, and `latest` skips it"))
    return '<section id="overview"><h2>Overview</h2>' + definitions(items) + "</section>"


def _intended(content: ModelCardContent) -> str:
    uses, business = content.intended_uses, content.business_details
    items = [
        ("purpose", _text(uses.purpose_of_model)),
        ("intended use", _text(uses.intended_uses)),
        ("factors affecting it", _text(uses.factors_affecting_model_efficiency)),
        ("risk rating", escape(uses.risk_rating)),
        ("why that rating", _text(uses.explanations_for_risk_rating)),
        ("business problem", _text(business.business_problem)),
        ("stakeholders", _text(business.business_stakeholders)),
        ("line of business", _text(business.line_of_business)),
    ]
    return '<section id="intended-use"><h2>Intended use</h2>' + definitions(items) + "</section>"


def _training(inputs: CardInputs, content: ModelCardContent) -> str:
    training = content.training_details
    custom = content.additional_information.custom_details
    job = training.training_job_details
    items = [
        ("how it was made", _text(training.training_observations)),
        ("dataset", f"<code>{_text(custom.get('lineage.dataset_uri'))}</code>"),
        ("dataset sha256", f"<code>{_text(custom.get('lineage.dataset_sha256'))}</code>"),
        ("pipeline run", f"<code>{_text(custom.get('lineage.pipeline_run'))}</code>"),
        ("parent version", _text(custom.get("lineage.parent_version"))),
        ("training job", _text(job.training_arn if job else None)),
    ]
    graph = inputs.record.graph
    if graph is not None:
        items.insert(
            0, ("composed as", f"a graph version: <code>{escape(graph.spec.kind)}</code> of its members")
        )
    parts = ['<section id="training"><h2>Training data and lineage</h2>', definitions(items)]
    if graph is not None:
        parts.append(
            table(
                "members",
                ["member, as the graph gives it", "resolved to, when the graph was made"],
                [
                    [f"<code>{escape(g)}</code>", f"<code>{escape(r)}</code>"]
                    for g, r in graph_members(inputs.record)
                ],
            )
        )
    if job and job.hyper_parameters:
        parts.append(
            table(
                "parameters",
                ["parameter", "value"],
                [[escape(p.name), f"<code>{escape(p.value)}</code>"] for p in job.hyper_parameters],
            )
        )
    return "".join(parts) + "</section>"


def _metric_values(group: MetricGroup) -> dict[str, float]:
    return {
        d.name: float(d.value) for d in group.metric_data if d.type == "number" and isinstance(d.value, float)
    }


def _evaluation(content: ModelCardContent) -> str:
    parts = ['<section id="evaluation"><h2>Evaluation</h2>']
    measured = [d for d in content.evaluation_details if d.name not in (BASELINE,) and d.metric_groups]
    measured = [d for d in measured if any(_metric_values(g) for g in d.metric_groups)]
    if not measured:
        parts.append("<p>No metrics were registered with this version.</p>")
    for detail in measured:
        groups = [(g.name, _metric_values(g)) for g in detail.metric_groups if _metric_values(g)]
        names = sorted({name for _, values in groups for name in values})
        parts.append(f"<h3>{escape(detail.name)}</h3>")
        if detail.evaluation_observation:
            parts.append(f"<p>{escape(detail.evaluation_observation)}</p>")
        if detail.datasets:
            parts.append("<p>on " + ", ".join(f"<code>{escape(d)}</code>" for d in detail.datasets) + "</p>")
        if "report" in detail.metadata:
            parts.append(f"<p>evaluation report: <code>{escape(detail.metadata['report'])}</code></p>")
        parts.append(
            table(
                "metrics",
                ["metric", *(escape(g) for g, _ in groups)],
                [[escape(n), *(number(values.get(n)) for _, values in groups)] for n in names],
            )
        )
        series = [
            svg.Series(g, [values.get(n) for n in names], color)
            for (g, values), color in zip(
                groups, (CANDIDATE_COLOR, CHAMPION_COLOR, BASELINE_COLOR), strict=False
            )
        ]
        champion = ", beside the champion's on the same rows" if len(groups) > 1 else ""
        parts.append(
            svg.figure(
                svg.bar_chart(names, series, f"Bar plot of the metrics: {', '.join(names)}"),
                "The version's metrics" + champion,
            )
        )
    return "".join(parts) + "</section>"


def _baseline(inputs: CardInputs) -> str:
    record = inputs.record
    parts = ['<section id="baseline"><h2>Baseline</h2>']
    if record.baseline is None or inputs.statistics is None:
        parts.append("<p>This version was registered without a reference dataset: it has no baseline.</p>")
        return "".join(parts) + "</section>"
    parts.append(
        f"<p>{record.baseline.item_count:,} rows of <code>{escape(record.baseline.source)}</code> "
        f"(statistics.json: <code>{escape(record.baseline.statistics_uri)}</code>)</p>"
    )
    summaries = feature_summaries(inputs.statistics)
    parts.append(
        table(
            "baseline",
            ["feature", "mean", "std dev", "min", "max", "missing", "distinct", "most common"],
            [
                [
                    escape(s["name"]),
                    *(number(s.get(k)) for k in ("mean", "std_dev", "min", "max")),
                    str(s["missing"]),
                    str(s["distinct"]) if "distinct" in s else MISSING,
                    escape(s["top"]) if s.get("top") is not None else MISSING,
                ]
                for s in summaries
            ],
        )
    )
    drawn = [f for f in inputs.statistics.get("features", []) if _drawable(f)][:MAX_BASELINE_PLOTS]
    if drawn:
        parts.append(
            svg.figure(
                svg.histograms([_panel(f) for f in drawn], "Histograms of the baseline's features"),
                f"The baseline's distribution of {len(drawn)} of its {len(summaries)} features "
                "(statistics.json's histogram buckets; a categorical feature's category counts).",
            )
        )
    return "".join(parts) + "</section>"


def _drawable(entry: Mapping[str, Any]) -> bool:
    numeric = entry.get("numerical_statistics") or {}
    buckets = numeric.get("distribution", {}).get("kll", {}).get("buckets")
    strings = (entry.get("string_statistics") or {}).get("distribution", {}).get("categorical", {})
    return bool(buckets) or bool(strings.get("buckets"))


def _panel(entry: Mapping[str, Any]) -> svg.Panel:
    name = str(entry.get("name"))
    numeric = entry.get("numerical_statistics")
    if numeric is not None:
        buckets = numeric["distribution"]["kll"]["buckets"]
        return svg.Panel(
            name,
            [float(b["count"]) for b in buckets],
            edges=[float(buckets[0]["lower_bound"]), *(float(b["upper_bound"]) for b in buckets)],
        )
    categories = entry["string_statistics"]["distribution"]["categorical"]["buckets"][:MAX_CATEGORIES]
    return svg.Panel(
        name, [float(c["count"]) for c in categories], labels=[str(c["value"]) for c in categories]
    )


def _attributions(inputs: CardInputs) -> str:
    attributions = inputs.attributions
    if not attributions:
        if inputs.attributions_note is None:
            return ""
        return (
            '<section id="attributions"><h2>Feature attributions</h2>'
            f"<p>No summary for this version: {escape(inputs.attributions_note)}</p></section>"
        )
    how = "; ".join(f"{k}: {v}" for k, v in inputs.attributions_metadata.items())
    ranked = sorted(attributions.items(), key=lambda kv: -abs(kv[1]))
    shown = ranked[:MAX_ATTRIBUTION_BARS]
    more = f" (the {len(shown)} largest of {len(ranked)})" if len(ranked) > len(shown) else ""
    bars = svg.horizontal_bars(
        [k for k, _ in shown],
        [abs(v) for _, v in shown],
        CANDIDATE_COLOR,
        "Bar plot of the mean |SHAP| per feature",
    )
    return (
        '<section id="attributions"><h2>Feature attributions</h2>'
        f"<p>{escape(ATTRIBUTIONS_MEANING)}{escape(more)}.</p>"
        + (f'<p class="meta">{escape(how)}</p>' if how else "")
        + svg.figure(bars, "mean |SHAP| per feature, largest first")
        + table("attributions", ["feature", "mean |SHAP|"], [[escape(k), number(v)] for k, v in ranked])
        + "</section>"
    )


def _in_force(inputs: CardInputs) -> str:
    policy = inputs.quality_policy
    parts = [
        '<section id="in-force"><h2>Rules and quality policy in force</h2>',
        definitions(
            [
                ("rules", escape(rules_summary(inputs.ruleset))),
                ("violations", escape(policy.violations)),
                ("anomalies", escape(policy.anomalies)),
                (
                    "personal data",
                    escape(policy.pii) + (" of " + escape(", ".join(policy.pii_features)))
                    if policy.pii_features
                    else escape(policy.pii),
                ),
            ]
        ),
    ]
    if inputs.ruleset is not None and inputs.ruleset.ruleset.rules:
        parts.append(
            table(
                "rules",
                ["rule", "stage", "when", "then"],
                [
                    [
                        escape(r.id),
                        escape(r.stage),
                        f"<code>{escape(r.when)}</code>",
                        f"<code>{escape(json.dumps(r.then.model_dump(exclude_none=True)))}</code>",
                    ]
                    for r in inputs.ruleset.ruleset.rules
                ],
            )
        )
    return "".join(parts) + "</section>"


def _limits(content: ModelCardContent) -> str:
    info = content.additional_information
    items = [
        ("known limits", _text(info.caveats_and_recommendations)),
        ("ethical considerations", _text(info.ethical_considerations)),
    ]
    return '<section id="limits"><h2>Known limits</h2>' + definitions(items) + "</section>"
