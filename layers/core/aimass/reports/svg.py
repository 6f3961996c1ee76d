"""Simple plots as inline SVG, for pages that an API function draws: bar charts and histograms, with
the colours of aimass.reports.plots. The functions carry no matplotlib (importing it costs about a
second of cold start, docs/quality.md), and a bar is a rectangle: these need nothing but text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aimass.reports.page import escape
from aimass.reports.plots import BASELINE_COLOR

FONT = 'font-family="system-ui,sans-serif" font-size="11"'


@dataclass(frozen=True)
class Series:
    """One bar per label (None: no bar), in a colour, named in the legend."""

    name: str
    values: Sequence[float | None]
    color: str


@dataclass(frozen=True)
class Panel:
    """One histogram: numeric `edges` (n + 1) with n `counts`, or categories: `labels` with `counts`."""

    title: str
    counts: Sequence[float]
    edges: Sequence[float] | None = None
    labels: Sequence[str] | None = None


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" {FONT}>'
        + "".join(body)
        + "</svg>"
    )


def _short(text: str, length: int = 18) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _number(value: float) -> str:
    return f"{value:.3g}"


def bar_chart(labels: Sequence[str], series: Sequence[Series], label: str) -> str:
    """Vertical bars, one group per label, a bar per series; a zero line when a value is negative."""
    values = [v for s in series for v in s.values if v is not None]
    low, high = min([0.0, *values]), max([0.0, *values]) or 1.0
    group = max(28.0, 22.0 * len(series) + 12)
    left, top, bottom, plot_h = 48.0, 24.0 + 14 * (len(series) > 1), 58.0, 160.0
    width = max(left + group * len(labels) + 12, left + 150.0 * len(series) * (len(series) > 1))  # the legend
    scale = plot_h / ((high - low) or 1.0)

    def y(value: float) -> float:
        return top + (high - value) * scale

    body = [
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - 6:.1f}" y2="{y(0):.1f}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{y(high) + 4:.1f}" text-anchor="end">{_number(high)}</text>',
    ]
    if low < 0:
        body.append(f'<text x="{left - 4}" y="{y(low) + 4:.1f}" text-anchor="end">{_number(low)}</text>')
    bar_w = (group - 12) / max(len(series), 1)
    for i, name in enumerate(labels):
        x0 = left + i * group + 6
        for j, s in enumerate(series):
            value = s.values[i]
            if value is None:
                continue
            y_top, y_end = sorted((y(value), y(0)))
            body.append(
                f'<rect x="{x0 + j * bar_w:.1f}" y="{y_top:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{max(y_end - y_top, 0.5):.1f}" fill="{s.color}">'
                f"<title>{escape(name)} {escape(s.name)}: {_number(value)}</title></rect>"
            )
        cx = x0 + (group - 12) / 2
        body.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 14:.1f}" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {top + plot_h + 14:.1f})">{escape(_short(name))}</text>'
        )
    if len(series) > 1:
        for j, s in enumerate(series):
            x = left + j * 150
            body.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{s.color}"/>')
            body.append(f'<text x="{x + 14}" y="13">{escape(_short(s.name, 22))}</text>')
    return _svg(width, top + plot_h + bottom, body, label)


def horizontal_bars(labels: Sequence[str], values: Sequence[float], color: str, label: str) -> str:
    """One horizontal bar per label, top to bottom in the order given, with its value."""
    high = max([0.0, *values]) or 1.0
    left, row, plot_w = 150.0, 18.0, 300.0
    body = []
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        y = 6 + i * row
        length = max(value, 0.0) / high * plot_w
        body.append(
            f'<text x="{left - 6}" y="{y + 12:.1f}" text-anchor="end">{escape(_short(name, 24))}</text>'
            f'<rect x="{left}" y="{y + 2:.1f}" width="{max(length, 0.5):.1f}" height="{row - 5}" '
            f'fill="{color}">'
            f"<title>{escape(name)}: {_number(value)}</title></rect>"
            f'<text x="{left + length + 4:.1f}" y="{y + 12:.1f}">{_number(value)}</text>'
        )
    return _svg(left + plot_w + 60, 12 + row * len(labels), body, label)


def histograms(panels: Sequence[Panel], label: str, columns: int = 3) -> str:
    """Small histograms, `columns` a row: each panel's counts as bars on its own scale."""
    panel_w, panel_h, gap = 230.0, 120.0, 16.0
    columns = max(1, min(columns, len(panels)))
    rows = -(-len(panels) // columns)
    body = []
    for index, panel in enumerate(panels):
        x0 = (index % columns) * (panel_w + gap)
        y0 = (index // columns) * (panel_h + 44)
        body.append(
            f'<text x="{x0 + panel_w / 2:.1f}" y="{y0 + 12:.1f}" text-anchor="middle" font-weight="600">'
            f"{escape(_short(panel.title, 32))}</text>"
        )
        base, height = y0 + 18 + panel_h, panel_h - 6
        top = max([*panel.counts, 0.0]) or 1.0
        count = max(len(panel.counts), 1)
        step = panel_w / count
        for i, value in enumerate(panel.counts):
            h = value / top * height
            body.append(
                f'<rect x="{x0 + i * step:.1f}" y="{base - h:.1f}" width="{max(step - 1, 0.5):.1f}" '
                f'height="{h:.1f}" fill="{BASELINE_COLOR}" fill-opacity="0.6"/>'
            )
        body.append(f'<line x1="{x0}" y1="{base}" x2="{x0 + panel_w}" y2="{base}" stroke="#999"/>')
        if panel.edges is not None and len(panel.edges) >= 2:
            body.append(
                f'<text x="{x0}" y="{base + 13:.1f}">{_number(panel.edges[0])}</text>'
                f'<text x="{x0 + panel_w}" y="{base + 13:.1f}" text-anchor="end">'
                f"{_number(panel.edges[-1])}</text>"
            )
        elif panel.labels is not None:
            shown = ", ".join(_short(str(v), 10) for v in panel.labels[:4])
            body.append(f'<text x="{x0}" y="{base + 13:.1f}">{escape(shown)}</text>')
    return _svg(columns * (panel_w + gap), rows * (panel_h + 44), body, label)


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"
