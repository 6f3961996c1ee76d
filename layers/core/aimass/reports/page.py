"""The look of a report page: its CSS, escaping, numbers and figures (a PNG inline as a data: URI, so
that the page opens whole from one link, with nothing fetched from elsewhere)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

MISSING = "&ndash;"  # an empty cell, in HTML

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:72rem;
padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#555;margin-top:0}code{font-size:.9em;background:#f4f4f4;padding:0 .2em;word-break:break-all}
.decision{padding:.6rem 1rem;border-left:6px solid;border-radius:3px;margin:1rem 0}
.promoted{border-color:#2e7d32;background:#edf7ed}.rejected{border-color:#c62828;background:#fdecea}
.decision h2{border:0;margin:.2rem 0}
table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f4f4f4}
tr.gate td{background:#fff8e1;font-weight:600}.pass{color:#2e7d32}.fail{color:#c62828}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{color:#555}dd{margin:0}
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


def head(title: str, style: str = STYLE) -> list[str]:
    """The page's opening lines, up to and including `<body>`."""
    return [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(title)}</title><style>{style}</style></head><body>",
    ]


def figure_html(name: str | None, png: bytes, alt: str, caption: str) -> str:
    """A figure with its PNG inline. With a `name`, the image links to that file beside the page (for a
    copy of the folder or a download); without one the page is all there is."""
    data = base64.b64encode(png).decode("ascii")
    image = f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'
    if name is not None:
        image = f'<a href="{escape(name)}">{image}</a>'
    return f"<figure>{image}<figcaption>{escape(caption)}</figcaption></figure>"


def table(css: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table of cells already in HTML."""
    return (
        f'<table class="{css}"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in header)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
        + "</tbody></table>"
    )


def definitions(items: Sequence[tuple[str, str]]) -> str:
    """A list of (label, value in HTML) pairs."""
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
