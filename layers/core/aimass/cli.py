"""The `aimass` command: run the local stack, manage models and predict against any aimass API."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="aimass: versioned ML predictions, locally or on AWS.", no_args_is_help=True)
models_app = typer.Typer(help="Register, list and alias model versions.", no_args_is_help=True)
app.add_typer(models_app, name="models")
rules_app = typer.Typer(help="Read, save and try a model's business rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
quality_app = typer.Typer(help="Data-quality policy and reports against a baseline.", no_args_is_help=True)
app.add_typer(quality_app, name="quality")
pipeline_app = typer.Typer(help="Retrain a model: start a run, follow it, list runs.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
# Printed commands must stay copy-pasteable: never wrap them at the terminal width.
console = Console(soft_wrap=True)
err = Console(stderr=True)

Endpoint = Annotated[str, typer.Option(envvar="AIMASS_ENDPOINT", help="aimass API to talk to")]
ApiKey = Annotated[str | None, typer.Option(envvar="AIMASS_API_KEY", help="x-api-key header value")]
DEFAULT_ENDPOINT = "http://127.0.0.1:8000"


def _call(method: str, endpoint: str, path: str, api_key: str | None, **kwargs: Any) -> Any:
    import httpx

    headers = {"x-api-key": api_key} if api_key else {}
    try:
        response = httpx.request(method, endpoint.rstrip("/") + path, headers=headers, timeout=60, **kwargs)
    except httpx.HTTPError as error:
        err.print(f"[red]cannot reach {endpoint}: {error}[/red]")
        raise typer.Exit(2) from error
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code >= 400:
        problem = body.get("error", {})
        err.print(
            f"[red]{response.status_code} {problem.get('code', '')}: {problem.get('message', response.text)}"
            "[/red]"
        )
        for detail in problem.get("details", []):
            err.print(f"  {'.'.join(map(str, detail.get('loc', [])))}: {detail.get('message')}")
        raise typer.Exit(1)
    return body


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="AIMASS_PORT")] = 8000,
    aws_port: Annotated[int, typer.Option(envvar="AIMASS_AWS_PORT")] = 5000,
    state_dir: Annotated[
        Path, typer.Option(envvar="AIMASS_STATE_DIR", help="demo models, model cache")
    ] = Path(".aimass"),
    demo: Annotated[bool, typer.Option(help="train and register the demo models")] = True,
) -> None:
    """Start the embedded local stack and serve the API (Ctrl-C stops)."""
    import uvicorn
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from aimass.local.demo import GPU_DEMO
    from aimass.local.stack import LocalStack

    stack = LocalStack(aws_port=aws_port, state_dir=state_dir)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task(f"starting the embedded AWS on {stack.aws_endpoint}")
        stack.start()
        served = stack.register_demos(lambda text: bar.update(task, description=text)) if demo else []
    from aimass.api.app import create_app
    from aimass.config import settings

    base = f"http://{host}:{port}"
    key = settings().api_key
    auth = f" -H 'x-api-key: {key}'" if key else ""
    console.print(f"[bold green]aimass[/bold green] API on {base} (OpenAPI: {base}/docs)")
    console.print(f"embedded AWS on {stack.aws_endpoint}, bucket s3://{stack.bucket}, table {stack.table}")
    for name in served:
        if name == GPU_DEMO:
            console.print(
                f"  model [bold]{name}[/bold] (champion v2 on the emulated SageMaker endpoint "
                f"{stack.gpu_endpoint} at {stack.gpu_endpoint_url}; fallback v1 in the Lambda)"
            )
        else:
            console.print(f"  model [bold]{name}[/bold] (champion v1)")
    if "breast-cancer" in served:
        console.print("try:")
        console.print(f"  curl -s {base}/v1/models{auth}")
        console.print(
            f"  curl -s {base}/v1/models/breast-cancer:predict{auth} -H 'content-type: application/json' "
            "-d @events/bodies/breast_cancer_predict.json"
        )
        console.print(f"  curl -s {base}/v2/models/digits{auth}")
        if settings().pipeline_state_machine_arn:
            console.print("retrain breast-cancer (the retraining pipeline on the embedded Step Functions):")
            console.print(f"  .venv/bin/aimass pipeline run breast-cancer --endpoint {base}")
    # uvicorn shuts down on SIGTERM, then raises the signal again under the handler it found: the
    # default one would end the process before `finally`, leaving the emulated endpoint running.
    signal.signal(signal.SIGTERM, lambda number, _: sys.exit(128 + number))
    try:
        uvicorn.run(create_app(), host=host, port=port, log_level="warning")
    finally:
        stack.stop()


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@models_app.command("push")
def push(
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the .onnx file")],
    features: Annotated[str | None, typer.Option(help="feature names, comma-separated")] = None,
    labels: Annotated[str | None, typer.Option(help="class labels, comma-separated")] = None,
    metadata: Annotated[Path | None, typer.Option(exists=True, help="JSON signature enrichment")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    alias: Annotated[str | None, typer.Option(help="point this alias at the new version")] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="reference dataset for the baseline: a CSV or Parquet file, or an s3:// URI"),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="where it runs: lambda, or sagemaker:ENDPOINT[/TARGET_MODEL] (default: the Lambda, or the "
            "stack's GPU endpoint for a model too large for the Lambda)"
        ),
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
) -> None:
    """Register FILE as the next version of model NAME."""
    enrichment: dict[str, Any] = json.loads(metadata.read_text()) if metadata else {}
    for key, value in (
        ("features", _csv(features)),
        ("class_labels", _csv(labels)),
        ("description", description),
    ):
        if value:
            enrichment[key] = value
    form = {"metadata": json.dumps(enrichment)} if enrichment else {}
    if backend:
        form["backend"] = backend
    files = {"model": (file.name, file.read_bytes(), "application/octet-stream")}
    if reference and reference.startswith("s3://"):
        form["reference_uri"] = reference
    elif reference:
        files["reference"] = _reference_csv(Path(reference))
    with console.status(f"uploading {file.name} ({file.stat().st_size:,} bytes)"):
        record = _call("POST", endpoint, f"/v1/models/{name}/versions", api_key, files=files, data=form)
    console.print(
        f"registered [bold]{name}[/bold] v{record['version']} sha256 {record['sha256'][:12]}… "
        f"served by {record['backend']}"
    )
    if record.get("baseline"):
        console.print(
            f"baseline from {record['baseline']['item_count']:,} rows of {record['baseline']['source']}"
        )
    if alias:
        _call(
            "PUT",
            endpoint,
            f"/v1/models/{name}/aliases/{alias}",
            api_key,
            json={"version": record["version"]},
        )
        console.print(f"{alias} → v{record['version']}")


def _reference_csv(path: Path) -> tuple[str, bytes, str]:
    """The reference file as the API takes it everywhere: CSV. Parquet is converted here, so the
    Lambda needs no Parquet reader."""
    if not path.is_file():
        err.print(f"[red]{path} is not a file[/red]")
        raise typer.Exit(2)
    if path.suffix.lower() != ".parquet":
        return (path.name, path.read_bytes(), "text/csv")
    import pyarrow.csv
    import pyarrow.parquet

    out = pyarrow.BufferOutputStream()
    pyarrow.csv.write_csv(pyarrow.parquet.read_table(path), out)
    return (path.stem + ".csv", out.getvalue().to_pybytes(), "text/csv")


@models_app.command("list")
def list_models(endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None) -> None:
    """List the registered models with their latest version and aliases."""
    table = Table("model", "latest", "aliases", "updated")
    for model in _call("GET", endpoint, "/v1/models", api_key)["models"]:
        aliases = ", ".join(f"{k}→v{v}" for k, v in sorted(model["aliases"].items()))
        table.add_row(model["name"], str(model["latest_version"]), aliases, model["updated_at"])
    console.print(table)


@models_app.command("alias")
def alias(
    name: str, alias: str, version: int, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None
) -> None:
    """Point ALIAS (champion, challenger, any name) of model NAME at VERSION."""
    result = _call("PUT", endpoint, f"/v1/models/{name}/aliases/{alias}", api_key, json={"version": version})
    before = f" (was v{result['previous_version']})" if result.get("previous_version") else ""
    console.print(f"{name}: {alias} → v{result['version']}{before}")


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        err.print(f"[red]{path} is not valid JSON: {error}[/red]")
        raise typer.Exit(2) from error


@rules_app.command("get")
def rules_get(name: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None) -> None:
    """Print the rules model NAME has now."""
    console.print_json(data=_call("GET", endpoint, f"/v1/models/{name}/rules", api_key))


@rules_app.command("put")
def rules_put(
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the ruleset JSON")],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
) -> None:
    """Save FILE as the next ruleset version of model NAME (checked against its signatures)."""
    saved = _call("PUT", endpoint, f"/v1/models/{name}/rules", api_key, json=_json_file(file))
    console.print(f"{name}: rules v{saved['version']} saved ({len(saved['ruleset']['rules'])} rules)")


@rules_app.command("evaluate")
def rules_evaluate(
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help='{"instances": [...], ...}')],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
) -> None:
    """Show which rules fire on the instances in FILE (with `ruleset` in it: try those rules)."""
    console.print_json(
        data=_call("POST", endpoint, f"/v1/models/{name}/rules:evaluate", api_key, json=_json_file(file))
    )


@quality_app.command("policy")
def quality_policy(
    name: str,
    violations: Annotated[
        str | None,
        typer.Option(help="reject | flag | ignore: what a range/category/unknown-feature violation does"),
    ] = None,
    anomalies: Annotated[
        str | None, typer.Option(help="reject | flag | ignore: what an anomaly does")
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
) -> None:
    """Show model NAME's data-quality policy, or change it with --violations / --anomalies."""
    policy = _call("GET", endpoint, f"/v1/models/{name}/quality", api_key)
    if violations or anomalies:
        policy |= {k: v for k, v in (("violations", violations), ("anomalies", anomalies)) if v}
        policy = _call("PUT", endpoint, f"/v1/models/{name}/quality", api_key, json=policy)
    console.print(f"{name}: violations → {policy['violations']}, anomalies → {policy['anomalies']}")


def _instances(path: Path) -> list[Any]:
    """Rows from a JSON file ({"instances": [...]} or a list) or a CSV file with a header row."""
    if path.suffix.lower() != ".csv":
        body = _json_file(path)
        return list(body["instances"] if isinstance(body, dict) else body)
    import csv

    def value(text: str) -> Any:
        if text.strip() == "":
            return None
        try:
            return float(text)
        except ValueError:
            return text

    with path.open(newline="") as source:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(source)]


@quality_app.command("check")
def quality_check(
    name: str,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="rows: JSON or CSV with a header")
    ],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
) -> None:
    """Report FILE's data quality against model NAME's baseline: violations, completeness, drift."""
    report = _call(
        "POST", endpoint, f"/v1/models/{name}/quality:check", api_key, json={"instances": _instances(file)}
    )
    table = Table(
        "feature",
        "check",
        "description",
        title=f"{name} v{report['model']['version']}: {report['item_count']} rows",
    )
    for violation in report["violations"]:
        table.add_row(violation["feature_name"], violation["constraint_check_type"], violation["description"])
    console.print(table)
    drifted = [d["feature"] for d in report["drift"] if d["drifted"]]
    console.print(
        f"drift in {len(drifted)} of {len(report['drift'])} features"
        + (": " + ", ".join(drifted) if drifted else "")
    )
    if report.get("anomalies"):
        a = report["anomalies"]
        console.print(f"anomalies: {a['count']} ({a['rate']:.1%}) above {a['threshold']:.4g}")


def _run_parameters(pairs: list[str] | None, file: Path | None) -> dict[str, Any]:
    parameters: dict[str, Any] = _json_file(file) if file else {}
    for pair in pairs or []:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            err.print(f"[red]--param takes KEY=VALUE, not {pair!r}[/red]")
            raise typer.Exit(2)
        try:
            parameters[key] = json.loads(value)
        except json.JSONDecodeError:
            parameters[key] = value  # a bare word: the text itself
    return parameters


def _seconds(state: dict[str, Any]) -> float:
    from datetime import datetime

    entered, exited = (datetime.fromisoformat(state[k]) for k in ("entered_at", "exited_at"))
    return (exited - entered).total_seconds()


def _print_run(run: dict[str, Any]) -> None:
    colour = {"promoted": "green", "rejected": "yellow", "failed": "red"}.get(run.get("decision") or "", "")
    decision = f"[{colour}]{run['decision']}[/{colour}]" if colour else (run.get("decision") or "running")
    console.print(f"{run['model']} run {run['run_id']} ({run['trigger']}): {run['status']}, {decision}")
    if run.get("reason"):
        console.print(f"  {run['reason']}")
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
        console.print(f"  registered v{run['version']}, {run['alias']} → v{run['version']}")
    if run.get("report"):
        console.print(f"  report: {run['report']['url']}")
    if run.get("error"):
        err.print(f"[red]  {run['error']['code']}: {run['error']['message']}[/red]")


def _follow(endpoint: str, api_key: str | None, name: str, run_id: str, timeout: float) -> dict[str, Any]:
    """Poll the run, printing each state as it is left, until it stops."""
    import time

    deadline, shown = time.monotonic() + timeout, 0
    with console.status("starting") as status:
        # A run started outside the API (a schedule) is listed once its Ingest step records it
        runs_path = f"/v1/models/{name}/pipeline/runs?limit=20"
        while not any(r["run_id"] == run_id for r in _call("GET", endpoint, runs_path, api_key)["runs"]):
            if time.monotonic() > deadline:
                err.print(f"[red]run {run_id} was not recorded within {timeout:.0f} s[/red]")
                raise typer.Exit(1)
            time.sleep(0.5)
        while True:
            run = _call("GET", endpoint, f"/v1/models/{name}/pipeline/runs/{run_id}", api_key)
            for state in run["states"][shown:]:
                if state["exited_at"] is None:
                    break
                console.print(f"  [green]✓[/green] {state['name']} ({_seconds(state):.1f} s)")
                shown += 1
            if run["status"] != "RUNNING":
                return run
            if time.monotonic() > deadline:
                err.print(
                    f"[red]still running after {timeout:.0f} s: aimass pipeline status {name} {run_id}[/red]"
                )
                raise typer.Exit(1)
            status.update(run["current_state"] or "between states")
            time.sleep(1)


@pipeline_app.command("run")
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
) -> None:
    """Retrain model NAME: start a pipeline run and show its states as they pass."""
    overrides = _run_parameters(param, parameters)
    started = _call(
        "POST",
        endpoint,
        f"/v1/models/{name}/pipeline:run",
        api_key,
        json={"parameters": overrides} if overrides else {},
    )
    console.print(f"started run {started['run_id']}")
    if not wait:
        return
    run = _follow(endpoint, api_key, name, started["run_id"], timeout)
    _print_run(run)
    if run["status"] == "FAILED":
        raise typer.Exit(1)


@pipeline_app.command("status")
def pipeline_status(
    name: str, run_id: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None
) -> None:
    """A run's states, metrics and release decision."""
    run = _call("GET", endpoint, f"/v1/models/{name}/pipeline/runs/{run_id}", api_key)
    for state in run["states"]:
        took = f"{_seconds(state):.1f} s" if state["exited_at"] else "[bold]now[/bold]"
        console.print(f"  {state['name']} ({took})")
    _print_run(run)


@pipeline_app.command("runs")
def pipeline_runs(
    name: str,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
) -> None:
    """Model NAME's pipeline runs, newest first."""
    table = Table("run", "started", "trigger", "status", "decision")
    for run in _call("GET", endpoint, f"/v1/models/{name}/pipeline/runs?limit={limit}", api_key)["runs"]:
        table.add_row(run["run_id"], run["started_at"], run["trigger"], run["status"], run["decision"] or "")
    console.print(table)


AwsEndpoint = Annotated[
    str,
    typer.Option(envvar="AIMASS_AWS_ENDPOINT_URL", help="the local stack's AWS endpoint; '' for AWS itself"),
]
Region = Annotated[str, typer.Option(envvar="AWS_DEFAULT_REGION")]
LOCAL_AWS = "http://127.0.0.1:5000"


def _use_aws(endpoint: str, region: str, **settings: str) -> None:
    """Point this process's aimass settings at an AWS: the local stack's (fake credentials), or AWS."""
    os.environ.update({"AWS_DEFAULT_REGION": region, **settings})
    if endpoint:
        os.environ["AIMASS_AWS_ENDPOINT_URL"] = endpoint
        if "AWS_ACCESS_KEY_ID" not in os.environ:
            from aimass.local.stack import FAKE_CREDENTIALS

            os.environ.update(FAKE_CREDENTIALS)


@pipeline_app.command("schedules")
def pipeline_schedules(
    aws_endpoint: AwsEndpoint = LOCAL_AWS,
    stage: Annotated[str, typer.Option(envvar="AIMASS_STAGE")] = "local",
    region: Region = "us-east-1",
) -> None:
    """The stack's retraining schedules (EventBridge Scheduler)."""
    _use_aws(aws_endpoint, region, AIMASS_STAGE=stage)
    from aimass.pipeline.schedules import list_schedules

    table = Table("schedule", "model", "when", "state", "window")
    for found in list_schedules():
        window = f"{found['flexible_window_minutes']} min" if found["flexible_window_minutes"] else "on time"
        table.add_row(
            found["name"],
            found["model"] or "",
            f"{found['expression']} {found['timezone']}",
            found["state"],
            window,
        )
    console.print(table)


@pipeline_app.command("schedule-run")
def pipeline_schedule_run(
    schedule: str,
    wait: Annotated[bool, typer.Option(help="follow the run to its end")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to follow it")] = 3600.0,
    aws_endpoint: AwsEndpoint = LOCAL_AWS,
    stage: Annotated[str, typer.Option(envvar="AIMASS_STAGE")] = "local",
    region: Region = "us-east-1",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
) -> None:
    """Run retraining schedule SCHEDULE now, as EventBridge Scheduler does when it fires."""
    _use_aws(aws_endpoint, region, AIMASS_STAGE=stage)
    from aimass.errors import AimassError
    from aimass.pipeline.schedules import list_schedules, run_schedule

    try:
        execution = run_schedule(schedule)
    except AimassError as error:
        err.print(f"[red]{error.message}[/red]")
        raise typer.Exit(1) from error
    model = next(found["model"] for found in list_schedules() if found["name"] == schedule)
    run_id = execution.rsplit(":", 1)[1]
    console.print(f"started run {run_id} of {model}")
    if not wait:
        return
    run = _follow(endpoint, api_key, model, run_id, timeout)
    _print_run(run)
    if run["status"] == "FAILED":
        raise typer.Exit(1)


@app.command()
def predict(
    name: str,
    data: Annotated[str | None, typer.Option(help="JSON body, e.g. '{\"instances\": [[...]]}'")] = None,
    file: Annotated[
        Path | None, typer.Option(exists=True, help="file with the JSON body ('-' for stdin)")
    ] = None,
    version: Annotated[int | None, typer.Option()] = None,
    alias: Annotated[str | None, typer.Option()] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
) -> None:
    """Send a V1 predict request for model NAME and print the response."""
    text = data if data is not None else (file.read_text() if file else sys.stdin.read())
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        err.print(f"[red]the request body is not valid JSON: {error}[/red]")
        raise typer.Exit(2) from error
    if isinstance(body, list):
        body = {"instances": body}
    path = f"/v1/models/{name}" + (f"/versions/{version}" if version else f"/labels/{alias}" if alias else "")
    console.print_json(data=_call("POST", endpoint, path + ":predict", api_key, json=body))


@app.command()
def batch(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="rows: .csv, .jsonl or .parquet, optionally .gz"),
    ],
    model: Annotated[str, typer.Option(help="the model that predicts every row")],
    id_column: Annotated[
        str | None,
        typer.Option(help="column naming each row (default: `id` if present, else the row number)"),
    ] = None,
    carry: Annotated[str | None, typer.Option(help="input columns copied to the predictions, a,b,c")] = None,
    alias: Annotated[str, typer.Option(help="the version this alias points at predicts")] = "champion",
    version: Annotated[int | None, typer.Option(help="this version predicts (instead of an alias)")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for the outputs (default: next to FILE)")] = None,
    local: Annotated[bool, typer.Option(help="predict on this machine, without S3 (same code)")] = False,
    bucket: Annotated[str, typer.Option(envvar="AIMASS_BUCKET", help="artifacts bucket")] = "aimass-local",
    s3_endpoint: Annotated[
        str,
        typer.Option(
            envvar="AIMASS_AWS_ENDPOINT_URL", help="the local stack's AWS endpoint; '' for AWS itself"
        ),
    ] = "http://127.0.0.1:5000",
    registry_table: Annotated[str, typer.Option(envvar="AIMASS_REGISTRY_TABLE")] = "aimass-registry",
    region: Annotated[str, typer.Option(envvar="AWS_DEFAULT_REGION")] = "us-east-1",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the report")] = 900.0,
) -> None:
    """Predict every row of FILE with MODEL: upload it under incoming/<model>/, wait for the report,
    download the predictions, rejected rows and report (or, with --local, do the same here)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from aimass.batch.job import Options
    from aimass.batch.remote import download, local_outputs, s3_client, upload, wait_for_report

    options = Options(id_column=id_column, carry=tuple(_csv(carry) or ()), alias=alias, version=version)
    out_dir = out or file.parent
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn()]
    if local:
        report = _batch_here(file, model, options, out_dir, bucket, s3_endpoint, registry_table, region)
        written = local_outputs(out_dir, file.name)
        written["report"].write_text(json.dumps(report, indent=2))
    else:
        s3 = s3_client(s3_endpoint, region)
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"uploading {file.name}", total=file.stat().st_size)
            drop = upload(s3, bucket, model, file, options, lambda sent: bar.advance(task, sent))
            bar.update(task, description=f"predicting s3://{bucket}/{drop.key}")
            try:
                report = wait_for_report(s3, drop, timeout)
            except TimeoutError as error:
                err.print(f"[red]{error}[/red]")
                raise typer.Exit(1) from error
        written = download(s3, report, out_dir, file.name)
    _print_batch_report(report, written)
    if report["status"] != "succeeded":
        raise typer.Exit(1)


def _batch_here(
    file: Path, model: str, options: Any, out_dir: Path, bucket: str, endpoint: str, table: str, region: str
) -> dict[str, Any]:
    """The batch job in this process: the model and its checks from the registry, files on disk."""
    from rich.progress import Progress

    _use_aws(endpoint, region, AIMASS_BUCKET=bucket, AIMASS_REGISTRY_TABLE=table)
    from aimass import wiring
    from aimass.batch.formats import FileFormat
    from aimass.batch.job import Outputs, predict_file
    from aimass.batch.remote import local_outputs

    targets = local_outputs(out_dir, file.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"predicting {file.name}", total=None)
        report = predict_file(
            wiring.predictor(),
            model,
            file,
            FileFormat.of(file.name),
            Outputs(targets["predictions"], targets["rejected"]),
            options,
            lambda rows: bar.update(task, description=f"predicting {file.name}: {rows:,} rows"),
        )
    if report["status"] == "succeeded":
        report["outputs"] = {k: str(targets[k]) for k in ("predictions", "rejected")}
    return {"file": {"path": str(file)}, **report}


def _print_batch_report(report: dict[str, Any], written: dict[str, Path]) -> None:
    rows = report.get("rows") or {}
    model = report.get("model") or {}
    if report["status"] != "succeeded":
        problem = report.get("error") or {}
        err.print(f"[red]failed: {problem.get('code')}: {problem.get('message')}[/red]")
    else:
        console.print(
            f"{model.get('name')} v{model.get('version')}: {rows.get('in', 0):,} rows in, "
            f"{rows.get('predicted', 0):,} predicted, {rows.get('rejected', 0):,} rejected "
            f"({report['timing']['seconds']} s)"
        )
        quality = report.get("quality") or {}
        drifted = (report.get("drift") or {}).get("drifted") or []
        console.print(
            f"flagged {quality.get('rows_flagged', 0):,}, anomalies {quality.get('anomalies', 0):,}, "
            f"drift in {len(drifted)} features" + (": " + ", ".join(drifted) if drifted else "")
        )
    for kind, path in written.items():
        console.print(f"  {kind}: {path}")


# --- GPU endpoints: deploy a version to a SageMaker endpoint, see what one runs (docs/gpu.md) ---------

gpu_app = typer.Typer(
    help="Deploy versions to SageMaker GPU endpoints; see what they run.", no_args_is_help=True
)
app.add_typer(gpu_app, name="gpu")

MinInstances = Annotated[int, typer.Option(help="the fewest instances autoscaling leaves")]
MaxInstances = Annotated[int, typer.Option(help="the most instances autoscaling gives")]
TargetInvocations = Annotated[
    float, typer.Option(help="invocations per instance per minute that autoscaling keeps near")
]
ScaleInCooldown = Annotated[int, typer.Option(help="seconds after a scale-in before the next")]
ScaleOutCooldown = Annotated[int, typer.Option(help="seconds after a scale-out before the next")]


class _Steps:
    """aimass.endpoints' progress on the terminal: a line per step, the endpoint's status on the spinner."""

    def __init__(self, status: Any) -> None:
        self.status = status

    def step(self, text: str) -> None:
        console.print(f"  [green]✓[/green] {text}")

    def waiting(self, text: str) -> None:
        self.status.update(text)


def _refused(error: Exception) -> typer.Exit:
    """An aimass error (with its field details) or AWS's, printed; the exit to raise."""
    from aimass.errors import AimassError

    if isinstance(error, AimassError):
        err.print(f"[red]{error.code}: {error.message}[/red]")
        for detail in error.details:
            err.print(f"  {'.'.join(map(str, detail.get('loc', [])))}: {detail.get('message')}")
    else:
        err.print(f"[red]AWS: {error}[/red]")
    return typer.Exit(1)


@gpu_app.command("deploy")
def gpu_deploy(
    name: str,
    version: int,
    image: Annotated[
        str | None,
        typer.Option(
            envvar="AIMASS_DEPLOY_IMAGE_URI", help="the inference image in ECR (default: the endpoint's)"
        ),
    ] = None,
    role_arn: Annotated[
        str | None,
        typer.Option(
            envvar="AIMASS_DEPLOY_ROLE_ARN", help="the role the endpoint runs as (default: the endpoint's)"
        ),
    ] = None,
    instance_type: Annotated[
        str | None, typer.Option(help="default: the endpoint's, or ml.g5.xlarge for a new one")
    ] = None,
    instance_count: Annotated[
        int | None, typer.Option(help="default: as many as run now, or --min-instances for a new endpoint")
    ] = None,
    min_instances: MinInstances = 1,
    max_instances: MaxInstances = 4,
    target_invocations: TargetInvocations = 6000.0,
    scale_in_cooldown_s: ScaleInCooldown = 900,
    scale_out_cooldown_s: ScaleOutCooldown = 300,
    canary_percent: Annotated[
        int, typer.Option(help="the canary: % of the new fleet that takes traffic first (1-50)")
    ] = 10,
    linear_step_percent: Annotated[
        int | None, typer.Option(help="shift traffic in steps of this % instead (10-50)")
    ] = None,
    wait_interval_s: Annotated[
        int, typer.Option(help="baking time after each traffic step, watched by the alarms")
    ] = 600,
    termination_wait_s: Annotated[
        int, typer.Option(help="final baking with all traffic on the new fleet, before the old goes")
    ] = 600,
    max_execution_s: Annotated[
        int | None, typer.Option(help="SageMaker's limit for the whole update (default: waits + 3600)")
    ] = None,
    rollback_alarm: Annotated[
        list[str] | None,
        typer.Option("--rollback-alarm", help="a CloudWatch alarm that rolls the update back (repeatable)"),
    ] = None,
    capture_percent: Annotated[int, typer.Option(help="% of requests captured (0: none)")] = 10,
    batching: Annotated[bool, typer.Option(help="dynamic batching in the server")] = True,
    max_batch_size: Annotated[int, typer.Option(help="rows per model call at most")] = 32,
    max_queue_delay_ms: Annotated[float, typer.Option(help="how long a batch waits for more")] = 5.0,
    memory_mb: Annotated[float | None, typer.Option(help="the model's memory footprint (MB)")] = None,
    endpoint_name: Annotated[
        str | None, typer.Option(help="the SageMaker endpoint (default: the version's backend's)")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="deploy to --endpoint-name though the version names another")
    ] = False,
    wait: Annotated[bool, typer.Option(help="wait for InService, then register autoscaling")] = True,
    timeout_s: Annotated[
        float | None, typer.Option(help="seconds to wait (default: SageMaker's limit + 3600)")
    ] = None,
    aws_endpoint: AwsEndpoint = LOCAL_AWS,
    region: Region = "us-east-1",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
) -> None:
    """Deploy version VERSION of model NAME to its SageMaker endpoint: package it, then create the
    endpoint or update it blue/green (canary or linear, rolled back by the alarms), wait, autoscale."""
    from aimass.contracts import ModelVersion

    record = ModelVersion.model_validate(
        _call("GET", endpoint, f"/v1/models/{name}/versions/{version}", api_key)
    )
    _use_aws(aws_endpoint, region)
    from botocore.exceptions import BotoCoreError, ClientError

    from aimass import endpoints
    from aimass.errors import AimassError

    request = endpoints.DeployRequest(
        image=image,
        role_arn=role_arn,
        instance_type=instance_type,
        instance_count=instance_count,
        endpoint=endpoint_name,
        force=force,
        capture_percent=capture_percent,
        batching=endpoints.Batching(batching, max_batch_size, max_queue_delay_ms, memory_mb),
        traffic=endpoints.Traffic(
            mode="linear" if linear_step_percent else "canary",
            step_percent=linear_step_percent or canary_percent,
            wait_interval_s=wait_interval_s,
            termination_wait_s=termination_wait_s,
            max_execution_s=max_execution_s,
            alarms=tuple(rollback_alarm or ()),
        ),
        scaling=endpoints.Scaling(
            min_instances, max_instances, target_invocations, scale_in_cooldown_s, scale_out_cooldown_s
        ),
        wait=wait,
        timeout_s=timeout_s,
    )
    console.print(f"deploying {name} v{version} ({record.backend})")
    try:
        with console.status("checking") as status:
            done = endpoints.deploy(record, request, _Steps(status))
    except (AimassError, ClientError, BotoCoreError) as error:
        raise _refused(error) from error
    _print_deployment(record, done, endpoint)
    if done.rolled_back:
        raise typer.Exit(1)


def _shifting(deployment: dict[str, Any]) -> str:
    """A DeploymentConfig in words: how traffic moves, how long it bakes, what rolls it back."""
    policy = deployment["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    wait = routing["WaitIntervalInSeconds"]
    step = (routing.get("CanarySize") or routing.get("LinearStepSize") or {}).get("Value")
    how = {
        "CANARY": f"canary {step} % for {wait} s, then all",
        "LINEAR": f"linear, {step} % more every {wait} s",
        "ALL_AT_ONCE": f"all at once, then {wait} s",
    }.get(routing["Type"], routing["Type"])
    alarms = [a["AlarmName"] for a in deployment.get("AutoRollbackConfiguration", {}).get("Alarms", [])]
    return (
        f"{how}; final baking {policy.get('TerminationWaitInSeconds', 0)} s; "
        f"rollback alarms: {', '.join(alarms) or 'none'}"
    )


def _print_deployment(record: Any, done: Any, api: str) -> None:
    colour = "red" if done.rolled_back else "green"
    outcome = f"rolled back to {done.previous_config}" if done.rolled_back else done.status
    model, version = record.name, record.version
    console.print(
        f"[bold]{model} v{version} → {done.endpoint}: {done.action}[/bold] ([{colour}]{outcome}[/{colour}])"
    )
    count = "as many as ran before" if done.instance_count_retained else str(done.instance_count)
    console.print(f"  config      {done.endpoint_config}: primary {done.instance_type} x {count}")
    console.print(f"  package     {done.package.uri} (sha256 {done.package.sha256[:12]}…)")
    console.print(f"  image       {done.image}")
    bucket = done.package.uri.split("/")[2]
    capture = (
        f"{done.capture_percent} % → s3://{bucket}/capture/_endpoints/" if done.capture_percent else "off"
    )
    console.print(f"  capture     {capture}")
    if done.deployment_config:
        console.print(f"  blue/green  {_shifting(done.deployment_config)}")
    if done.previous_config:
        console.print(f"  previous    {done.previous_config} (what a rollback goes back to)")
    if done.autoscaling:
        scaling = done.autoscaling
        console.print(
            f"  autoscaling {scaling.min_instances} to {scaling.max_instances} instances at "
            f"{scaling.target_invocations:g} invocations/instance/min"
        )
    for note in done.notes:
        console.print(f"  [yellow]note[/yellow]: {note}")
    if done.rolled_back:
        err.print(
            f"[red]v{version} is not serving: the alarms rolled it back; {done.endpoint} runs as before[/red]"
        )
        return
    if done.status == "InService":
        console.print("next, once it answers as it should, move the alias:")
        console.print(f"  aimass models alias {model} champion {version} --endpoint {api}")
    if done.previous_config:
        console.print("to go back by hand later:")
        console.print(
            f"  aws sagemaker update-endpoint --endpoint-name {done.endpoint} "
            f"--endpoint-config-name {done.previous_config}"
        )


@gpu_app.command("status")
def gpu_status(
    endpoint_name: Annotated[str, typer.Argument(metavar="ENDPOINT", help="the SageMaker endpoint")],
    aws_endpoint: AwsEndpoint = LOCAL_AWS,
    region: Region = "us-east-1",
) -> None:
    """What endpoint ENDPOINT runs: status, config, variants and instances, version, autoscaling."""
    _use_aws(aws_endpoint, region)
    from botocore.exceptions import BotoCoreError, ClientError

    from aimass import endpoints
    from aimass.errors import AimassError

    try:
        report = endpoints.endpoint_report(endpoint_name)
    except (AimassError, ClientError, BotoCoreError) as error:
        raise _refused(error) from error
    colour = "green" if report.status == "InService" else "yellow"
    console.print(
        f"[bold]{report.endpoint}[/bold]: [{colour}]{report.status}[/{colour}], config {report.config}"
    )
    if report.failure_reason:
        err.print(f"[red]  {report.failure_reason}[/red]")
    if report.pending:
        console.print(f"  deploying {report.pending}")
    if report.served:
        served = report.served
        console.print(
            f"  serves {served.get('aimass:model')} v{served.get('aimass:version')} "
            f"(sha256 {served.get('aimass:sha256', '')[:12]}…) from {report.model_data_url}"
        )
    table = Table("variant", "instance type", "instances (current/desired)", "weight", "image")
    for variant in report.variants:
        table.add_row(
            variant.name,
            variant.instance_type or "",
            f"{variant.current_instances}/{variant.desired_instances}",
            "" if variant.weight is None else f"{variant.weight:g}",
            variant.image or "",
        )
    console.print(table)
    capture = report.capture or {}
    if capture.get("EnableCapture"):
        percent = capture.get("CurrentSamplingPercentage", capture.get("InitialSamplingPercentage"))
        console.print(f"  capture {percent} % → {capture.get('DestinationS3Uri')}")
    else:
        console.print("  capture off")
    if report.autoscaling:
        scaling = report.autoscaling
        target = (
            f", target {scaling.target_invocations:g} invocations/instance/min"
            if scaling.target_invocations
            else ""
        )
        console.print(f"  autoscaling {scaling.min_instances} to {scaling.max_instances} instances{target}")
    else:
        console.print("  autoscaling not registered")
    if (report.last_deployment or {}).get("BlueGreenUpdatePolicy"):
        console.print(f"  last update {_shifting(report.last_deployment)}")


@gpu_app.command("autoscale")
def gpu_autoscale(
    endpoint_name: Annotated[str, typer.Argument(metavar="ENDPOINT", help="the SageMaker endpoint")],
    min_instances: MinInstances = 1,
    max_instances: MaxInstances = 4,
    target_invocations: TargetInvocations = 6000.0,
    scale_in_cooldown_s: ScaleInCooldown = 900,
    scale_out_cooldown_s: ScaleOutCooldown = 300,
    aws_endpoint: AwsEndpoint = LOCAL_AWS,
    region: Region = "us-east-1",
) -> None:
    """Register (or change) the autoscaling of ENDPOINT's variant `primary`."""
    _use_aws(aws_endpoint, region)
    from botocore.exceptions import BotoCoreError, ClientError

    from aimass import endpoints
    from aimass.errors import AimassError

    scaling = endpoints.Scaling(
        min_instances, max_instances, target_invocations, scale_in_cooldown_s, scale_out_cooldown_s
    )
    try:
        endpoints.check_request(endpoints.DeployRequest(scaling=scaling))
        registered = endpoints.register_scaling(endpoint_name, scaling)
    except (AimassError, ClientError, BotoCoreError) as error:
        raise _refused(error) from error
    console.print(
        f"{endpoint_name}: autoscaling {registered.min_instances} to {registered.max_instances} instances at "
        f"{registered.target_invocations:g} invocations/instance/min"
    )


def main() -> None:
    os.environ.setdefault("SAM_CLI_TELEMETRY", "0")
    app()
