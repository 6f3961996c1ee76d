"""`aimass pipeline`: retraining runs (start, follow, list) and the stack's retraining schedules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from aimass.cli.common import (
    DEFAULT_ENDPOINT,
    FAILED,
    USAGE,
    ApiKey,
    AsJson,
    AwsEndpoint,
    Endpoint,
    Region,
    call,
    console,
    err,
    fail,
    json_file,
    print_error,
    show_json,
    use_aws,
)
from aimass.pipeline.notices import problem_place

app = typer.Typer(help="Retrain a model: start a run, follow it, list runs.", no_args_is_help=True)


def _run_parameters(pairs: list[str] | None, file: Path | None) -> dict[str, Any]:
    parameters: dict[str, Any] = json_file(file) if file else {}
    for pair in pairs or []:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise fail(f"--param takes KEY=VALUE, not {pair!r}", USAGE)
        try:
            parameters[key] = json.loads(value)
        except json.JSONDecodeError:
            parameters[key] = value  # a bare word: the text itself
    return parameters


def _seconds(state: dict[str, Any]) -> float:
    from datetime import datetime

    entered, exited = (datetime.fromisoformat(state[k]) for k in ("entered_at", "exited_at"))
    return (exited - entered).total_seconds()


def _state_line(state: dict[str, Any], after_failure: bool, running: bool) -> str:
    """One state as the run passed it: ✓ done, ✗ where the run failed, · the failure path after it
    (never a tick: those states report the failure), `now` while in it."""
    if state["exited_at"] is None:  # the one it is in, or the Fail state it ended in
        return f"  [bold]…[/bold] {state['name']} ([bold]now[/bold])" if running else f"  · {state['name']}"
    took = f"{_seconds(state):.1f} s"
    if state.get("failed"):
        return f"  [red]✗[/red] {state['name']} ({took})"
    if after_failure:
        return f"  [dim]·[/dim] {state['name']} ({took})"
    return f"  [green]✓[/green] {state['name']} ({took})"


def _print_states(
    states: list[dict[str, Any]], out: Console, failed_before: bool = False, running: bool = True
) -> bool:
    """Print the states; whether the run has failed in one of them (or before them)."""
    for state in states:
        out.print(_state_line(state, failed_before, running))
        failed_before = failed_before or bool(state.get("failed"))
    return failed_before


def _problem_line(problem: dict[str, Any]) -> str:
    return f"    ✗ {problem_place(problem)}: {problem['message']}"


def _print_error(error: dict[str, Any]) -> None:
    step = f" in {error['step']}" if error.get("step") else ""
    print_error(f"  failed{step}: {error['code']}: {error['message']}")
    for problem in error.get("problems") or []:
        print_error(_problem_line(problem))
    if error.get("more"):
        print_error(f"    … and {error['more']} more problems")


def _released(run: dict[str, Any]) -> str:
    """How the run's version was released: an alias move, or the release its policy chose."""
    release = run.get("release")
    if release is None:
        return f"{run['alias']} → v{run['version']}"
    version = release["version"]
    if release["state"] == "released" and release["rollout"] is not None:
        what = f"{release['mode']} rollout of v{version} started"
    else:
        what = {
            "released": f"champion → v{version}",
            "pending_approval": f"v{version} waits for approval (aimass release approve|reject)",
            "scheduled": f"v{version} is scheduled for release",
        }.get(release["state"], f"release of v{version} {release['state']}")
    return f"{what}; follow it with `{release['follow']}`"


def _print_run(run: dict[str, Any]) -> None:
    colour = {"promoted": "green", "rejected": "yellow", "failed": "red"}.get(run.get("decision") or "", "")
    decision = f"[{colour}]{run['decision']}[/{colour}]" if colour else (run.get("decision") or "running")
    console.print(f"{run['model']} run {run['run_id']} ({run['trigger']}): {run['status']}, {decision}")
    if run.get("reason"):
        console.print(f"  {escape(run['reason'])}")  # it may quote values in brackets
    if run.get("candidate"):
        champion = run.get("champion") or {}
        table = Table(
            "metric", "candidate", f"champion v{run['champion_version']}" if champion else "champion"
        )
        for metric, value in run["candidate"].items():
            mark = " ◀" if metric == run.get("metric") else ""
            other = champion.get(metric)
            table.add_row(metric + mark, f"{value:.4f}", "" if other is None else f"{other:.4f}")
        console.print(table)
    if run.get("version"):
        console.print(f"  registered v{run['version']}, {_released(run)}")
    if run.get("report"):
        console.print(f"  report: {run['report']['url']}")
    if run.get("error"):
        _print_error(run["error"])


def _follow(
    endpoint: str, api_key: str | None, name: str, run_id: str, timeout: float, out: Console
) -> dict[str, Any]:
    """Poll the run, printing each state on `out` as it is left, until it stops."""
    import time

    deadline, shown, failed = time.monotonic() + timeout, 0, False
    with out.status("starting") as status:
        # A run started outside the API (a schedule) is listed once its Ingest step records it
        runs_path = f"/v1/models/{name}/pipeline/runs?limit=20"
        while not any(r["run_id"] == run_id for r in call("GET", endpoint, runs_path, api_key)["runs"]):
            if time.monotonic() > deadline:
                raise fail(f"run {run_id} was not recorded within {timeout:.0f} s")
            time.sleep(0.5)
        while True:
            run = call("GET", endpoint, f"/v1/models/{name}/pipeline/runs/{run_id}", api_key)
            pending = run["states"][shown:]  # printed once left, in order
            left = next((i for i, state in enumerate(pending) if state["exited_at"] is None), len(pending))
            failed = _print_states(pending[:left], out, failed)
            shown += left
            if run["status"] != "RUNNING":
                return run
            if time.monotonic() > deadline:
                raise fail(f"still running after {timeout:.0f} s: aimass pipeline status {name} {run_id}")
            status.update(run["current_state"] or "between states")
            time.sleep(1)


@app.command("run")
def pipeline_run(
    name: str,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="KEY=VALUE: a training setting for this run (VALUE as JSON, or text)"
        ),
    ] = None,
    parameters: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="JSON file of training settings")
    ] = None,
    wait: Annotated[bool, typer.Option(help="follow the run to its end")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to follow it")] = 3600.0,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Retrain model NAME: start a pipeline run and show its states as they pass. With --json: the
    run as `pipeline status --json` shows it once it stopped (with --no-wait: the run id)."""
    overrides = _run_parameters(param, parameters)
    started = call(
        "POST",
        endpoint,
        f"/v1/models/{name}/pipeline:run",
        api_key,
        json={"parameters": overrides} if overrides else {},
    )
    if not wait and as_json:
        return show_json(started)
    _finish(endpoint, api_key, name, started["run_id"], wait, timeout, as_json)


def _finish(
    endpoint: str, api_key: str | None, name: str, run_id: str, wait: bool, timeout: float, as_json: bool
) -> None:
    """A started run: said, followed if asked, shown at its end; exit 1 when it failed."""
    progress = err if as_json else console
    progress.print(f"started run {run_id} of {name}")
    if not wait:
        return
    run = _follow(endpoint, api_key, name, run_id, timeout, progress)
    if as_json:
        show_json(run)
    else:
        _print_run(run)
    if run["status"] == "FAILED":
        raise typer.Exit(FAILED)


@app.command("status")
def pipeline_status(
    name: str,
    run_id: str,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """A run's states, metrics and release decision."""
    run = call("GET", endpoint, f"/v1/models/{name}/pipeline/runs/{run_id}", api_key)
    if as_json:
        return show_json(run)
    _print_states(run["states"], console, running=run["status"] == "RUNNING")
    _print_run(run)


@app.command("runs")
def pipeline_runs(
    name: str,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Model NAME's pipeline runs, newest first."""
    runs = call("GET", endpoint, f"/v1/models/{name}/pipeline/runs?limit={limit}", api_key)
    if as_json:
        return show_json(runs)
    console.print(runs_table(runs["runs"]))


def runs_table(runs: list[dict[str, Any]]) -> Table:
    """Runs, one a row. Run ids are copied into `pipeline status`: however narrow the terminal, they
    are never cut or wrapped; the other columns fold (wrap anywhere) rather than lose characters."""
    longest_id = max((len(run["run_id"]) for run in runs), default=0)
    table = Table(
        Column("run", no_wrap=True, min_width=longest_id),
        *(Column(header, overflow="fold") for header in ("started", "trigger", "status", "decision")),
    )
    for run in runs:
        table.add_row(run["run_id"], run["started_at"], run["trigger"], run["status"], run["decision"] or "")
    return table


@app.command("schedules")
def pipeline_schedules(
    aws_endpoint: AwsEndpoint = None,
    stage: Annotated[str, typer.Option(envvar="AIMASS_STAGE")] = "local",
    region: Region = "us-east-1",
    as_json: AsJson = False,
) -> None:
    """The stack's retraining schedules (EventBridge Scheduler)."""
    use_aws(aws_endpoint, region, AIMASS_STAGE=stage)
    from aimass.cli.pipeline_schedules import list_schedules

    schedules = list_schedules()
    if as_json:
        return show_json({"schedules": schedules})
    table = Table("schedule", "model", "when", "state", "window")
    for found in schedules:
        window = f"{found['flexible_window_minutes']} min" if found["flexible_window_minutes"] else "on time"
        table.add_row(
            found["name"],
            found["model"] or "",
            f"{found['expression']} {found['timezone']}",
            found["state"],
            window,
        )
    console.print(table)


@app.command("schedule-run")
def pipeline_schedule_run(
    schedule: str,
    wait: Annotated[bool, typer.Option(help="follow the run to its end")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to follow it")] = 3600.0,
    aws_endpoint: AwsEndpoint = None,
    stage: Annotated[str, typer.Option(envvar="AIMASS_STAGE")] = "local",
    region: Region = "us-east-1",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Run retraining schedule SCHEDULE now, as EventBridge Scheduler does when it fires."""
    use_aws(aws_endpoint, region, AIMASS_STAGE=stage)
    from aimass.cli.pipeline_schedules import list_schedules, run_schedule
    from aimass.errors import AimassError

    try:
        execution = run_schedule(schedule)
    except AimassError as error:
        raise fail(error.message) from error
    model = next(found["model"] for found in list_schedules() if found["name"] == schedule)
    run_id = execution.rsplit(":", 1)[1]
    if not wait and as_json:
        return show_json({"run_id": run_id, "model": model, "execution_arn": execution})
    _finish(endpoint, api_key, model, run_id, wait, timeout, as_json)
