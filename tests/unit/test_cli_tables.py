"""Tables of the `aimass` CLI keep what users copy whole, whatever the terminal's width."""

from __future__ import annotations

from rich.console import Console

from aimass.cli.pipeline import runs_table


def test_pipeline_run_ids_are_never_cut_in_a_narrow_terminal() -> None:
    # Given a run and a terminal narrower than its row
    run_id = "breast-cancer-20261206T113000Z-3f2a9c1e"
    run = {"run_id": run_id, "started_at": "2026-12-06T11:30:00+00:00", "trigger": "api",
           "status": "SUCCEEDED", "decision": "promoted"}  # fmt: skip
    terminal = Console(width=60, record=True)

    # When the runs table is printed
    terminal.print(runs_table([run]))

    # Then the id is on one line, whole, and the status is folded rather than cut
    shown = terminal.export_text()
    assert run_id in shown and "…" not in shown
    assert "SUCCEEDED" in "".join(line.split("│")[4].strip() for line in shown.splitlines() if "│" in line)
