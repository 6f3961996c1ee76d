"""The data-quality page: one self-contained HTML page (inline CSS, no script, no external URL, each
plot inline as a base64 PNG) on rows against a version's baseline, with the look of the pipeline's
evaluation report (aimass.reports). `aimass quality check --html`, `aimass batch --html` and the
monitor's runs write it.

Its input is a `DriftPage`, plain data. `page_from_quality_report` builds one from what
aimass.quality.report.quality_report returns, the rows' values per feature and the version's
statistics.json; `render` turns it into the page (a str). The fields:

DriftPage
- model: the model's name.
- versions: the version or versions whose rows these are (a monitor window may span a rollout).
- subject: what the rows are, in words, shown under the title: "rows of checks.csv",
  "batch file incoming/m/x.csv", "window 2026-12-05T16:00Z to 2026-12-06T16:00Z".
- observed: the rows' short name in the plots' legends ("rows", "batch", "window").
- generated_at: when the page's figures were computed, ISO 8601.
- rows: how many rows were judged (quality_report's `item_count`).
- features: one FeatureDrift (aimass.reports.plots) per feature that has drift scores: `name`, the
  rows' `values` (numbers, finite; strings for a categorical feature), the baseline's distribution
  (`reference`: its KLL sketch's values; else `buckets`: (lower, upper, count); `categories`:
  (value, count) for a categorical one) and `scores`: the feature's entry of quality_report's
  `drift` (`method`, `psi`, `ks_statistic`, `ks_p_value` or `chi_square`, `chi_square_p_value`,
  and `drifted`). The MAX_DRIFT_PLOTS most drifted are drawn; all are in the table.
- violations: Model Monitor's constraint_violations.json entries (`feature_name`,
  `constraint_check_type`, `description`), as quality_report's `violations`.
- completeness: the share of rows with a value, per feature.
- anomalies: quality_report's `anomalies` ({count, rate, threshold}; threshold may be left out), or
  None (no anomaly model).
- flag_rate: the share of rows the data-quality policy flagged, when known (captured traffic).
- live_accuracy and labelled: the share of labelled rows predicted right, and how many were
  labelled (feedback), when known.
- predictions: a PredictionDistribution when the rows' predictions are known: `values` (class labels
  as strings, or numbers), the baseline's (`baseline_classes`: class -> count, or
  `baseline_values`: its predicted values) and `scores` (any of `psi`, `ks_statistic`,
  `chi_square_p_value`, `drifted`).
- rates: RateBuckets, one per hour (`start` ISO 8601, `rows`, `anomalies`, `flagged`), when the rows
  have times; drawn as the anomaly and flag rates per hour.
- thresholds: the drift thresholds used (quality_report's `thresholds`).
- skipped: features left out of the figures, each {feature, reason} (a monitor run's
  `features_skipped`: personal features).
- note: a sentence shown first when the page judges nothing (too few rows, no baseline).

Domain code: data in, a str out. matplotlib is imported when a plot is drawn, never on import.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from aimass.quality.checks import RequestChecks
from aimass.quality.report import lenient_matrix
from aimass.reports.page import MISSING, STYLE, definitions, escape, figure_html, head, number, table
from aimass.reports.plots import (
    BASELINE_COLOR,
    CANDIDATE_COLOR,
    CHAMPION_COLOR,
    DRIFT_BINS,
    FeatureDrift,
    density,
    drift_histograms,
    figure,
    most_drifted_first,
    plain,
    png,
    span,
)

MAX_DRIFT_PLOTS = 12
MAX_CLASS_BARS = 20  # classes drawn in the prediction plot; the rest are summed as "other"
PAGE_STYLE = STYLE + ".note{padding:.6rem 1rem;border-left:6px solid #f9a825;background:#fff8e1}\n"


@dataclass(frozen=True)
class PredictionDistribution:
    """The rows' predictions and the baseline's: classes (bars) or values (a histogram)."""

    values: Sequence[Any]
    baseline_classes: Mapping[str, float] | None = None
    baseline_values: np.ndarray | None = None
    scores: Mapping[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> bool:
        return self.baseline_classes is not None or any(isinstance(v, str) for v in self.values)


@dataclass(frozen=True)
class RateBucket:
    """One hour of rows: how many, and how many were anomalous (None: no anomaly model) or flagged."""

    start: str
    rows: int
    anomalies: int | None = 0
    flagged: int = 0


@dataclass(frozen=True)
class DriftPage:
    """What the page shows (the module's docstring says each field)."""

    model: str
    versions: Sequence[int]
    subject: str
    rows: int
    features: Sequence[FeatureDrift]
    violations: Sequence[Mapping[str, str]]
    observed: str = "rows"
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    completeness: Mapping[str, float] = field(default_factory=dict)
    anomalies: Mapping[str, Any] | None = None
    flag_rate: float | None = None
    live_accuracy: float | None = None
    labelled: int | None = None
    predictions: PredictionDistribution | None = None
    rates: Sequence[RateBucket] = ()
    thresholds: Mapping[str, float] = field(default_factory=dict)
    skipped: Sequence[Mapping[str, str]] = ()
    note: str | None = None

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in most_drifted_first(self.features) if f.scores.get("drifted")]


# --- building one ------------------------------------------------------------------------------------


def values_by_feature(checks: RequestChecks, instances: list[Any]) -> dict[str, list[Any]]:
    """Each feature's values in the rows (objects keyed by feature or plain lists, read as the quality
    report reads them: a missing or mistyped value is left out)."""
    matrix, _, _, _ = lenient_matrix(checks, instances)
    found: dict[str, list[Any]] = {}
    for j, column in enumerate(checks.columns):
        values = matrix[:, j]
        found[column.name] = [v for v in values.tolist() if v is not None and v == v]  # v == v: not NaN
    return found


def feature_drift(
    scores: Mapping[str, Any], values: Sequence[Any], statistics: Mapping[str, Any] | None
) -> FeatureDrift:
    """One feature's drift scores (an entry of quality_report's `drift`), its values in the rows and
    its baseline's distribution from statistics.json (its entry under `features`, found by name)."""
    name = str(scores["feature"])
    described: Mapping[str, Any] = next(
        (f for f in (statistics or {}).get("features", []) if f.get("name") == name), {}
    )
    numbers = described.get("numerical_statistics") or {}
    kll = numbers.get("distribution", {}).get("kll", {})
    sketch = (kll.get("sketch") or {}).get("data")
    buckets = [(b["lower_bound"], b["upper_bound"], b["count"]) for b in kll.get("buckets") or []]
    strings = (described.get("string_statistics") or {}).get("distribution", {}).get("categorical", {})
    categorical = "buckets" in strings or scores.get("method") == "chi_square"
    if categorical:
        observed = np.asarray([str(v) for v in values if v is not None], dtype=object)
    else:
        observed = np.asarray([v for v in values if v is not None], dtype=np.float64)
        observed = observed[np.isfinite(observed)]
    return FeatureDrift(
        name=name,
        values=observed,
        reference=np.asarray(sketch[0], dtype=np.float64)
        if sketch and sketch[0] and not categorical
        else None,
        buckets=(buckets or None) if not categorical else None,
        scores={k: v for k, v in scores.items() if k != "feature"},
        categories=[(str(b["value"]), float(b["count"])) for b in strings.get("buckets", [])]
        if categorical
        else None,
    )


def page_from_quality_report(
    report: Mapping[str, Any],
    *,
    model: str,
    versions: Sequence[int],
    subject: str,
    values: Mapping[str, Sequence[Any]],
    statistics: Mapping[str, Any] | None,
    observed: str = "rows",
    **optional: Any,
) -> DriftPage:
    """A DriftPage from a quality_report(...) result (or the QualityReport the API returns), the rows'
    values per feature (values_by_feature) and the version's statistics.json. `optional` takes the
    DriftPage fields the report has no part in: generated_at, predictions, rates, flag_rate,
    live_accuracy, labelled, note."""
    return DriftPage(
        model=model,
        versions=tuple(versions),
        subject=subject,
        observed=observed,
        rows=int(report["item_count"]),
        features=[feature_drift(d, values.get(d["feature"], ()), statistics) for d in report["drift"]],
        violations=list(report["violations"]),
        completeness=dict(report.get("completeness") or {}),
        anomalies=report.get("anomalies"),
        thresholds=dict(report.get("thresholds") or {}),
        **optional,
    )


# --- the page ------------------------------------------------------------------------------------------


def render(page: DriftPage) -> str:
    """The page, whole."""
    versions = ", ".join(f"v{v}" for v in page.versions) or MISSING
    title = f"Data-quality report: {page.model}"
    return _page(
        f"{title}, {page.subject}",
        [
            f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{escape(versions)} · {escape(page.subject)} · {page.rows} rows · '
            f"generated {escape(page.generated_at)}</p>",
            *_sections(page, "h2"),
        ],
    )


def render_versions(pages: Sequence[DriftPage], title: str, subject: str) -> str:
    """One page of several versions' rows (a monitor run's window that spans a rollout): a section
    per version, each with the sections `render` draws (one version: those sections alone)."""
    generated = max((p.generated_at for p in pages), default="")
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(", ".join(f"v{v}" for p in pages for v in p.versions) or MISSING)} · '
        f"{escape(subject)} · {sum(p.rows for p in pages)} rows · generated {escape(generated)}</p>",
    ]
    if len(pages) == 1:  # its own subject says more than the run's (a sample's size)
        page = pages[0]
        more = f'<p class="meta">{escape(page.subject)}</p>' if page.subject != subject else ""
        return _page(f"{title}, {subject}", [*parts, more, *_sections(page, "h2")])
    for page in pages:
        versions = ", ".join(f"v{v}" for v in page.versions)
        parts += [
            f'<h2 id="{escape(versions)}">{escape(versions)}: {page.rows} rows</h2>',
            f'<p class="meta">{escape(page.subject)}</p>',
            *_sections(page, "h3"),
        ]
    return _page(f"{title}, {subject}", parts)


def _page(title: str, body: list[str]) -> str:
    parts = [
        *head(title, PAGE_STYLE),
        *body,
        '<footer><p class="meta">Written by aimass: the baseline is the version\'s statistics.json, '
        "computed from its reference dataset.</p></footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _sections(page: DriftPage, h: str) -> list[str]:
    """The page's sections under headings `h` (h2 on a page of its own, h3 within a version's)."""
    parts = [
        f'<p class="note">{escape(page.note)}</p>' if page.note else "",
        f"<{h}>Summary</{h}>",
        _summary(page),
        f"<{h}>Feature drift</{h}>",
        _drift_section(page),
    ]
    if page.predictions is not None:
        parts += [f"<{h}>Predictions</{h}>", _predictions_section(page, page.predictions)]
    if page.rates:
        parts += [f"<{h}>Rates over time</{h}>", _rates_section(page.rates)]
    parts += [f"<{h}>Violations</{h}>", _violations(page.violations)]
    return parts


def _rate(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2%}"


def _summary(page: DriftPage) -> str:
    drifted = page.drifted
    names = ": " + ", ".join(f"<code>{escape(n)}</code>" for n in drifted) if drifted else ""
    anomalies = page.anomalies
    accuracy = _rate(page.live_accuracy)
    if page.live_accuracy is not None and page.labelled is not None:
        accuracy += f" on {page.labelled} labelled rows"
    items = [
        ("rows", str(page.rows)),
        ("drifted features", f"{len(drifted)} of {len(page.features)}{names}"),
        ("violations", str(len(page.violations))),
        (
            "anomaly rate",
            MISSING
            if anomalies is None
            else f"{_rate(anomalies['rate'])} ({anomalies['count']} rows"
            + (f" above {anomalies['threshold']:.4g})" if anomalies.get("threshold") is not None else ")"),
        ),
        ("quality-flag rate", _rate(page.flag_rate)),
        ("live accuracy", accuracy),
    ]
    if page.skipped:
        items.insert(
            2,
            (
                "features skipped",
                "; ".join(
                    f"<code>{escape(s.get('feature', ''))}</code>: {escape(s.get('reason', ''))}"
                    for s in page.skipped
                ),
            ),
        )
    return definitions(items)


def _drift_section(page: DriftPage) -> str:
    if not page.features:
        return (
            "<p>No drift figures: the version has no baseline, or there are too few rows to compare "
            f"(at least {page.thresholds.get('min_drift_rows', 30):g} values of a feature).</p>"
        )
    ranked = most_drifted_first(page.features)
    version = page.versions[0] if len(page.versions) == 1 else None
    against = f"v{version}'s baseline" if version is not None else "the baseline"
    parts = [
        f"<p>{len(page.drifted)} of {len(ranked)} features drifted from {escape(against)}, "
        "most drifted first.</p>"
    ]
    plotted = [f for f in ranked if len(f.values)][:MAX_DRIFT_PLOTS]
    if plotted:
        parts.append(
            figure_html(
                None,
                drift_histograms(plotted, version, page.observed),
                f"Distributions of the most drifted features: {page.observed} against baseline",
                f"The {len(plotted)} most drifted features: the {page.observed}'s values against the "
                "baseline (densities on the same bins; shares per category).",
            )
        )
    rows = []
    for feature in ranked:
        s = feature.scores
        flag = s.get("drifted")
        rows.append(
            [
                escape(feature.name),
                escape(s.get("method", MISSING)),
                number(s.get("psi")),
                number(s.get("ks_statistic")),
                MISSING if s.get("ks_p_value") is None else f"{s['ks_p_value']:.3g}",
                number(s.get("chi_square")),
                MISSING if s.get("chi_square_p_value") is None else f"{s['chi_square_p_value']:.3g}",
                _rate(page.completeness.get(feature.name)),
                MISSING if flag is None else ('<span class="fail">yes</span>' if flag else "no"),
            ]
        )
    header = [
        "feature",
        "method",
        "PSI",
        "KS distance",
        "KS p-value",
        "χ²",
        "χ² p-value",
        "complete",
        "drifted",
    ]
    parts.append(table("drift", header, rows))
    if page.thresholds:
        limits = ", ".join(f"{escape(k)} {v:g}" for k, v in sorted(page.thresholds.items()))
        parts.append(f'<p class="meta">Thresholds: {limits}.</p>')
    return "\n".join(parts)


def _predictions_section(page: DriftPage, predictions: PredictionDistribution) -> str:
    kind = "classes" if predictions.classes else "values"
    drawn = (
        _class_bars(predictions, page.observed)
        if predictions.classes
        else _value_histogram(predictions, page.observed)
    )
    s = predictions.scores
    figures = [
        f"PSI {s['psi']:.3f}" if s.get("psi") is not None else "",
        f"KS distance {s['ks_statistic']:.3f}" if s.get("ks_statistic") is not None else "",
        f"χ² p-value {s['chi_square_p_value']:.3g}" if s.get("chi_square_p_value") is not None else "",
        '<span class="fail">drifted</span>' if s.get("drifted") else ("no drift" if "drifted" in s else ""),
    ]
    baseline = predictions.baseline_classes is not None or predictions.baseline_values is not None
    return "\n".join(
        [
            figure_html(
                None,
                drawn,
                f"Predicted {kind}: {page.observed} against baseline",
                f"The {len(predictions.values)} predicted {kind} of the {page.observed}"
                + (" against the baseline's predictions." if baseline else " (no baseline predictions)."),
            ),
            f"<p>{' · '.join(f for f in figures if f)}</p>" if any(figures) else "",
        ]
    ).rstrip("\n")


def _class_bars(predictions: PredictionDistribution, observed: str) -> bytes:
    seen = Counter(str(v) for v in predictions.values)
    expected = {str(k): float(v) for k, v in (predictions.baseline_classes or {}).items()}
    names = sorted(seen.keys() | expected.keys(), key=lambda k: (-expected.get(k, 0.0), -seen[k], k))
    shown, rest = names[:MAX_CLASS_BARS], names[MAX_CLASS_BARS:]
    found_total, expected_total = max(sum(seen.values()), 1), max(sum(expected.values()), 1.0)
    found = [seen[n] / found_total for n in shown] + (
        [sum(seen[n] for n in rest) / found_total] if rest else []
    )
    reference = [expected.get(n, 0.0) / expected_total for n in shown]
    reference += [sum(expected.get(n, 0.0) for n in rest) / expected_total] if rest else []
    labels = [plain(n) for n in shown] + (["other"] if rest else [])
    drawing = figure(max(5.0, 0.5 * len(labels) + 2.5), 3.8)
    axes = drawing.add_subplot()
    positions = np.arange(len(labels))
    if expected:
        axes.bar(positions - 0.2, reference, width=0.4, color=BASELINE_COLOR, alpha=0.5, label="baseline")
    axes.bar(
        positions + (0.2 if expected else 0.0),
        found,
        width=0.4 if expected else 0.6,
        color=CANDIDATE_COLOR,
        label=f"{observed} ({sum(seen.values())} rows)",
    )
    tilted = len(labels) > 4
    axes.set_xticks(positions, labels, rotation=45 if tilted else 0, ha="right" if tilted else "center")
    axes.set_ylabel("share of rows")
    axes.set_title("Predicted classes")
    axes.legend(fontsize="small")
    return png(drawing)


def _value_histogram(predictions: PredictionDistribution, observed: str) -> bytes:
    values = np.asarray([v for v in predictions.values if v is not None], dtype=np.float64)
    values = values[np.isfinite(values)]
    reference = predictions.baseline_values
    reference = None if reference is None else np.asarray(reference, dtype=np.float64)
    low, high = span(values, values if reference is None else reference)
    edges = np.linspace(low, high, DRIFT_BINS + 1)
    drawing = figure(6.5, 3.8)
    axes = drawing.add_subplot()
    if reference is not None and len(reference):
        axes.stairs(
            density(reference, edges), edges, fill=True, color=BASELINE_COLOR, alpha=0.35, label="baseline"
        )
    axes.stairs(
        density(values, edges), edges, color=CANDIDATE_COLOR, lw=1.8, label=f"{observed} ({len(values)} rows)"
    )
    axes.set_yticks([])
    axes.set_xlabel("predicted value")
    axes.set_title("Predicted values")
    axes.legend(fontsize="small")
    return png(drawing)


def _rates_section(rates: Sequence[RateBucket]) -> str:
    from matplotlib.ticker import PercentFormatter

    drawing = figure(8.0, 3.8)
    axes = drawing.add_subplot()
    hours = [_hour(b.start) for b in rates]
    # Without an anomaly model there is no anomaly rate to draw, rather than one of 0 %
    shares: list[tuple[float | None, float]] = [
        (
            None if b.anomalies is None else (b.anomalies / b.rows if b.rows else 0.0),
            b.flagged / b.rows if b.rows else 0.0,
        )
        for b in rates
    ]
    if all(a is not None for a, _ in shares):
        axes.plot(
            hours, [a for a, _ in shares], marker="o", ms=3, color=CANDIDATE_COLOR, label="anomaly rate"
        )
    axes.plot(
        hours, [f for _, f in shares], marker="o", ms=3, color=CHAMPION_COLOR, label="quality-flag rate"
    )
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_ylabel("share of the hour's rows")
    axes.set_title("Rates per hour")
    axes.legend(fontsize="small")
    drawing.autofmt_xdate()
    rows = [
        [escape(b.start), str(b.rows), _rate(a), _rate(f)] for b, (a, f) in zip(rates, shares, strict=True)
    ]
    return "\n".join(
        [
            figure_html(
                None,
                png(drawing),
                "Anomaly and quality-flag rates per hour",
                "The share of each hour's rows that were anomalous, and that the quality policy flagged.",
            ),
            table("rates", ["hour", "rows", "anomaly rate", "quality-flag rate"], rows),
        ]
    )


def _hour(start: str) -> datetime:
    return datetime.fromisoformat(start.replace("Z", "+00:00"))


def _violations(violations: Sequence[Mapping[str, str]]) -> str:
    if not violations:
        return "<p>None: every feature is within its baseline's constraints.</p>"
    rows = [
        [
            escape(v.get("feature_name", "")),
            f"<code>{escape(v.get('constraint_check_type', ''))}</code>",
            escape(v.get("description", "")),
        ]
        for v in violations
    ]
    return table("violations", ["feature", "check", "description"], rows)
