"""`aimass monitor`: run a model's monitor over a window of captured traffic now, list its runs, show
one, and draw a run's HTML page (docs/monitoring.md). Through the API, like the other commands: the
run is the server's; the page is drawn here (the API's functions carry no matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from aimass.cli.common import DEFAULT_ENDPOINT, FAILED, ApiKey, AsJson, Endpoint, call, console, show_json

app = typer.Typer(help="Monitor runs of captured traffic against the baseline.", no_args_is_help=True)

Html = Annotated[
    Path | None,
    typer.Option(
        "--html",
        dir_okay=False,
        help="also write the run as one self-contained HTML page with plots (a section per version)",
    ),
]


@app.command("run")
def monitor_run(
    name: str,
    since: Annotated[
        str, typer.Option(help="the window, ending now: seconds, or a number with s, m, h or d")
    ] = "24h",
    html: Html = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Run model NAME's monitor now over the captured traffic of the last SINCE: drift per feature,
    prediction drift, violations, anomaly and flag rates per version. Exits 1 when it found drift,
    so a script can gate on it."""
    window: str | float = float(since) if since.replace(".", "", 1).isdigit() else since
    summary = call("POST", endpoint, f"/v1/models/{name}/monitor:run", api_key, json={"since": window})
    _show(summary, html, endpoint, api_key, as_json)


@app.command("report")
def monitor_report(
    name: str,
    run: Annotated[str, typer.Argument(help="the run's id (aimass monitor reports NAME lists them)")],
    html: Html = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show model NAME's monitor run RUN, and with --html draw its page: the most drifted features
    and the predictions against the baseline, anomaly and flag rates per hour, violations. Exits 1
    when the run found drift."""
    summary = call("GET", endpoint, f"/v1/models/{name}/monitor/runs/{run}", api_key)
    _show(summary, html, endpoint, api_key, as_json)


def _show(
    summary: dict[str, Any], html: Path | None, endpoint: str, api_key: str | None, as_json: bool
) -> None:
    if html is not None:
        html.write_text(_page(summary, endpoint, api_key), encoding="utf-8")
    if as_json:
        show_json(summary)
    else:
        _print_run(summary)
        if html is not None:
            console.print(f"page: {escape(str(html))}")
    if summary.get("outcome") == "drift":
        raise typer.Exit(FAILED)


def _page(summary: dict[str, Any], endpoint: str, api_key: str | None) -> str:
    """The run's page, drawn here from its summary, each judged version's files and baseline."""
    from aimass.monitoring.page import JUDGED, PAGE_FILES, render_run

    name, run = summary["model"], summary["run"]
    files: dict[int, dict[str, Any]] = {}
    baselines: dict[int, dict[str, Any] | None] = {}
    for version in summary.get("versions", []):
        number = version["version"]
        if version["status"] not in JUDGED:
            continue
        route = f"/v1/models/{name}/monitor/runs/{run}/files/{number}"
        files[number] = {file: call("GET", endpoint, f"{route}/{file}", api_key) for file in PAGE_FILES}
        baseline = call("GET", endpoint, f"/v1/models/{name}/versions/{number}/baseline", api_key)
        baselines[number] = baseline["statistics"]
    return render_run(summary, files, baselines)


@app.command("reports")
def monitor_reports(
    name: str,
    limit: Annotated[int, typer.Option(min=1, max=100, help="how many runs, newest first")] = 20,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List model NAME's monitor runs, newest first: window, outcome, drifted features."""
    listed = call("GET", endpoint, f"/v1/models/{name}/monitor/runs", api_key, params={"limit": limit})
    if as_json:
        return show_json(listed)
    table = Table("run", "window", "rows", "outcome", "drifted", title=f"{name}: monitor runs")
    for run in listed["runs"]:
        window = run.get("window") or {}
        drifted = sorted({f for v in run.get("versions", []) for f in v.get("drifted_features") or []})
        table.add_row(
            run["run"],
            f"{window.get('start', '?')} → {window.get('end', '?')}",
            str(run.get("rows", "")),
            run["outcome"] + (f" ({escape(run['error'])})" if run.get("error") else ""),
            escape(", ".join(drifted)),
        )
    console.print(table)


def _print_run(summary: dict[str, Any]) -> None:
    if summary.get("status") != "succeeded":  # a failed or unfinished run (monitor report)
        error = f": {escape(summary['error'])}" if summary.get("error") else ""
        console.print(f"{summary['model']} run {summary['run']}: {summary['outcome']}{error}")
        return
    window = summary["window"]
    console.print(
        f"{summary['model']} run {summary['run']}: {summary['rows']} rows from {window['start']} to "
        f"{window['end']}: {summary['outcome']}"
    )
    skipped = summary.get("skipped_objects", 0) + summary.get("skipped_lines", 0)
    if skipped:
        console.print(
            f"  skipped {summary['skipped_objects']} objects and {summary['skipped_lines']} lines "
            "that are not capture lines of this model"
        )
    if summary.get("truncated"):
        console.print(f"  read the newest {summary['max_rows']} rows only (the run's row cap)")
    for version in summary["versions"]:
        head = f"  v{version['version']}: {version['status']}, {version['rows']} rows"
        if version.get("reason"):
            console.print(f"{head}: {escape(version['reason'])}")
            continue
        drifted = version["drifted_features"]
        console.print(
            f"{head}; drift in {len(drifted)} of {len(version['features_checked'])} features"
            + (": " + escape(", ".join(drifted)) if drifted else "")
        )
        predictions = version["prediction_drift"]
        said = "drifted" if predictions.get("drifted") else predictions.get("status", "")
        rate = version.get("anomaly_rate")
        console.print(
            f"    predictions {said}; {version['violations']} violations; "
            f"flagged {version['flag_rate']:.1%}" + (f"; anomalous {rate:.1%}" if rate is not None else "")
        )
