"""Tables on the terminal (rich), results as JSON, and the same tables as markdown for RESULTS.md."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Wide enough for the tables when the output is a pipe or a log file, where rich would assume 80 columns.
console = Console(width=None if Console().is_terminal else 150)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def add(self, *cells: str) -> None:
        self.rows.append(list(cells))

    def print(self) -> None:
        table = RichTable(title=self.title, title_justify="left", caption=self.note or None)
        for i, column in enumerate(self.columns):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        console.print(table)

    def markdown(self) -> str:
        align = ["---"] + ["---:"] * (len(self.columns) - 1)
        lines = [f"**{self.title}**", "", _md_row(self.columns), _md_row(align)]
        lines += [_md_row(row) for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md_cell(cell) for cell in cells) + " |"


def _md_cell(cell: str) -> str:
    """Markdown drops a cell's leading spaces; non-breaking ones keep the indentation of nested rows."""
    text = cell.lstrip(" ")
    return "&nbsp;" * (len(cell) - len(text)) + text.replace("|", "\\|")


def us(value: float) -> str:
    """Microseconds, with the precision that matters at that size."""
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def ms(value: float) -> str:
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def rate(value: float) -> str:
    return f"{value:,.0f}"


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def write_markdown(name: str, sections: list[tuple[str, list[Table]]], preamble: str) -> Path:
    """Every table of a run as markdown, ready to be copied into bench/RESULTS.md."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    parts = [preamble]
    for heading, tables in sections:
        parts.append(f"## {heading}")
        parts += [table.markdown() for table in tables]
    path = RESULTS_DIR / f"{name}.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path
