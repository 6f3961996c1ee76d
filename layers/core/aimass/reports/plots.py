"""The plots reports share, drawn with matplotlib's object-oriented API on the Agg canvas (no pyplot and
no global figure state). matplotlib is imported when a plot is drawn: importing this module does not
import it, so that no online path pays for it.

Feature drift: a feature's observed values against the baseline's distribution of it (statistics.json:
a numeric feature's KLL sketch, or its histogram buckets when it has no sketch; a categorical
feature's category counts), as densities on the same bins or as shares per category.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
DRIFT_BINS = 20
MAX_CATEGORIES = 12  # bars per categorical plot; the rest are summed as "other"
CANDIDATE_COLOR, CHAMPION_COLOR, BASELINE_COLOR = "#1f77b4", "#ff7f0e", "#7f7f7f"
DRIFTED_COLOR = "#c62828"


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's observed values, the baseline's distribution of it, and its drift scores
    (`psi`, `ks_statistic`, `ks_p_value`, `chi_square`, `chi_square_p_value`, `drifted`, as
    aimass.quality.report computes them). `values` are numbers, or strings when `categories` is set."""

    name: str
    values: np.ndarray
    reference: np.ndarray | None = None  # the baseline sketch: its sorted values, or their quantiles
    buckets: list[tuple[float, float, float]] | None = None  # (lower, upper, count) without a sketch
    scores: dict[str, Any] = field(default_factory=dict)
    categories: list[tuple[str, float]] | None = None  # a categorical baseline: (value, count)


def most_drifted_first(features: Sequence[FeatureDrift]) -> list[FeatureDrift]:
    """Drifted features first, then by PSI, the KS distance, and (categorical) the chi-square p."""

    def severity(feature: FeatureDrift) -> tuple[bool, float, float, float]:
        s = feature.scores
        return (
            bool(s.get("drifted")),
            float(s.get("psi") or 0.0),
            float(s.get("ks_statistic") or 0.0),
            -float(s.get("chi_square_p_value", 1.0)),
        )

    return sorted(features, key=severity, reverse=True)


def figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawing = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(drawing)
    return drawing


def png(drawing: Figure) -> bytes:
    out = io.BytesIO()
    drawing.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def plain(text: str) -> str:
    """A user's string as matplotlib text: a `$` would otherwise start mathtext."""
    return text.replace("$", r"\$")


def span(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """The range both cover, widened when it is a single value."""
    pooled = np.concatenate([values, reference])
    if not len(pooled):
        return 0.0, 1.0
    low, high = float(pooled.min()), float(pooled.max())
    if high <= low:
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    return low, high


def density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each bin's share of all the values per unit of width (values outside the bins count in the
    total: a snapshot beyond the baseline's range shows as less area, not a rescaled one)."""
    counts, _ = np.histogram(values, bins=edges)
    widths = np.diff(edges)
    found: np.ndarray = counts / (max(len(values), 1) * np.where(widths > 0, widths, 1.0))
    return found


def bucket_edges(buckets: list[tuple[float, float, float]] | None) -> np.ndarray | None:
    """The bins of a baseline's histogram buckets (lower, upper, count), if they are drawable ones."""
    if not buckets:
        return None
    edges = np.array([buckets[0][0], *(b[1] for b in buckets)], dtype=np.float64)
    return edges if np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0) else None


def drift_histograms(
    features: list[FeatureDrift], baseline_version: int | None, observed: str = "snapshot"
) -> bytes:
    """One panel per feature: `observed` (what the rows are called in the legend) against the
    baseline, three panels a row."""
    columns = min(3, len(features))
    rows = -(-len(features) // columns)
    drawing = figure(3.8 * columns, 2.9 * rows)
    baseline = f"baseline v{baseline_version}" if baseline_version is not None else "baseline"
    for index, feature in enumerate(features):
        axes = drawing.add_subplot(rows, columns, index + 1)
        if feature.categories is not None:
            _category_bars(axes, feature, baseline, observed)
        else:
            _numeric_histogram(axes, feature, baseline, observed)
        axes.set_title(plain(feature.name), fontsize="medium")
        axes.set_yticks([])
        s = feature.scores
        figures = [
            f"PSI {s['psi']:.3f}" if s.get("psi") is not None else "",
            f"KS {s['ks_statistic']:.3f}" if s.get("ks_statistic") is not None else "",
            # The pipeline's panels (numeric) never showed a chi-square p, whatever their scores held.
            f"χ² p {s['chi_square_p_value']:.2g}"
            if feature.categories is not None and s.get("chi_square_p_value") is not None
            else "",
            "drifted" if s.get("drifted") else "",
        ]
        axes.set_xlabel(
            " · ".join(f for f in figures if f),
            fontsize="small",
            color=DRIFTED_COLOR if s.get("drifted") else "black",
        )
        if index == 0:
            axes.legend(fontsize="x-small")
    return png(drawing)


def _numeric_histogram(axes: Axes, feature: FeatureDrift, baseline: str, observed: str) -> None:
    values = feature.values
    if feature.reference is not None and len(feature.reference):
        low, high = span(values, feature.reference)
        edges = np.linspace(low, high, DRIFT_BINS + 1)
        expected = density(feature.reference, edges)
    elif (shared := bucket_edges(feature.buckets)) is not None and feature.buckets:
        # Only the baseline's histogram: its buckets are the shared bins.
        edges = shared
        counts = np.array([b[2] for b in feature.buckets], dtype=np.float64)
        expected = counts / (max(counts.sum(), 1.0) * np.diff(edges))
    else:
        low, high = span(values, values)
        edges = np.linspace(low, high, DRIFT_BINS + 1)
        expected = None
    if expected is not None:
        axes.stairs(expected, edges, fill=True, color=BASELINE_COLOR, alpha=0.35, label=baseline)
    axes.stairs(
        density(values, edges), edges, color=CANDIDATE_COLOR, lw=1.8, label=f"{observed} ({len(values)} rows)"
    )


def _category_bars(axes: Axes, feature: FeatureDrift, baseline: str, observed: str) -> None:
    """Each category's share of the baseline and of the rows, side by side; the baseline's most common
    categories first, then any the rows hold and the baseline never did."""
    expected = dict(feature.categories or [])
    seen = Counter(str(v) for v in feature.values)
    names = sorted(expected, key=lambda k: -expected[k]) + sorted(
        seen.keys() - expected.keys(), key=lambda k: -seen[k]
    )
    shown, rest = names[:MAX_CATEGORIES], names[MAX_CATEGORIES:]
    labels = [plain(n) for n in shown] + (["other"] if rest else [])
    reference_total, observed_total = max(sum(expected.values()), 1.0), max(len(feature.values), 1)
    reference = [expected.get(n, 0.0) / reference_total for n in shown]
    found = [seen.get(n, 0) / observed_total for n in shown]
    if rest:
        reference.append(sum(expected.get(n, 0.0) for n in rest) / reference_total)
        found.append(sum(seen.get(n, 0) for n in rest) / observed_total)
    positions = np.arange(len(labels))
    axes.bar(positions - 0.2, reference, width=0.4, color=BASELINE_COLOR, alpha=0.5, label=baseline)
    axes.bar(
        positions + 0.2,
        found,
        width=0.4,
        color=CANDIDATE_COLOR,
        label=f"{observed} ({len(feature.values)} rows)",
    )
    axes.set_xticks(
        positions,
        labels,
        rotation=45 if len(labels) > 4 else 0,
        ha="right" if len(labels) > 4 else "center",
        fontsize="small",
    )
