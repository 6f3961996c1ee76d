"""`aimass plan`: what to deploy for a model at a request rate, and what it costs a month
(aimass.capacity, docs/capacity.md). The version's record comes from the API; its model file from
the AWS the command works on (S3), checked against its sha256; the load test runs on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from aimass.cli.common import (
    DEFAULT_ENDPOINT,
    USAGE,
    ApiKey,
    AsJson,
    AwsEndpoint,
    Endpoint,
    Region,
    call,
    console,
    fail,
    json_file,
    show_json,
    use_aws,
)

ROWS = 1000


def plan(
    name: str,
    rps: Annotated[float, typer.Option("--rps", min=0.001, help="requests per second to serve")],
    p99_ms: Annotated[
        float | None, typer.Option("--p99-ms", min=0.1, help="the p99 latency bound, in ms (none: no bound)")
    ] = None,
    version: Annotated[
        int | None, typer.Option(help="the version to plan for (default: champion, else the latest)")
    ] = None,
    prices: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="a JSON price table instead of the built-in one"),
    ] = None,
    runs: Annotated[int, typer.Option(min=20, max=100_000, help="timed calls per batch size")] = 300,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    aws_endpoint: AwsEndpoint = None,
    region: Region = "us-east-1",
    as_json: AsJson = False,
) -> None:
    """Plan model NAME for RPS requests/s: a Lambda memory size with reserved and provisioned
    concurrency or SnapStart, or SageMaker instances with their autoscaling target, each with its
    monthly cost, from a short load test of the version on this machine (docs/capacity.md)."""
    from aimass import artifacts, capacity, compression
    from aimass.contracts.registry import ModelVersion
    from aimass.errors import AimassError
    from aimass.serving.backends.onnx import new_session

    table = capacity.PRICES if prices is None else _prices(json_file(prices), prices)
    detail = call("GET", endpoint, f"/v1/models/{name}", api_key)
    chosen = version or detail["aliases"].get("champion") or detail["latest_version"]
    found = [v for v in detail["versions"] if v["version"] == chosen]
    if not found:
        raise fail(f"{name} has no version {chosen}", USAGE)
    record = ModelVersion.model_validate(found[0])
    use_aws(aws_endpoint, region)
    try:
        with console.status(f"load-testing {name} v{chosen} on this machine"):
            model = artifacts.verified(record.artifact_uri, record.sha256)
            rows = _rows(record, compression, artifacts)
            given = compression.feeds(record.signature, rows)
            costs = capacity.measure(new_session(model), given, len(model), runs)
    except AimassError as error:  # a file that changed, a model that cannot be fed rows here
        raise fail(f"{name} v{chosen}: {error.message}") from error
    result = capacity.plan(rps, p99_ms, costs, table)
    if as_json:
        return show_json({"name": name, "version": chosen, **result.as_dict()})
    _print(name, chosen, result)


def _prices(data: Any, path: Path) -> Any:
    from aimass.capacity import Prices

    try:
        return Prices.from_dict(data)
    except TypeError as error:
        raise fail(f"{path} is not a price table (docs/capacity.md): {error}", USAGE) from error


def _rows(record: Any, compression: Any, artifacts: Any) -> Any:
    """Rows to time: drawn from the version's baseline, or zeros when it has none."""
    import numpy as np

    from aimass.quality.columns import columns_of

    if record.baseline is None:
        columns = columns_of(record.signature) or []
        return np.zeros((ROWS, len(columns)))
    ref = record.baseline
    statistics = json.loads(artifacts.verified(ref.statistics_uri, ref.sha256["statistics.json"]))
    return compression.rows_from_baseline(statistics, record.signature, ROWS).matrix


def _print(name: str, version: int, result: Any) -> None:
    costs = result.costs
    bound = f", p99 ≤ {result.p99_ms:g} ms" if result.p99_ms is not None else ""
    console.print(f"[bold]{name}[/bold] v{version} at {result.rps:g} req/s{bound}")
    console.print(
        f"measured here: model p50 {costs.model_p50_ms:.3f} ms, p99 {costs.model_p99_ms:.3f} ms "
        f"({costs.measured_on}); handler +{costs.handler_p50_ms:.3f} ms, server CPU "
        f"{costs.server_cpu_ms:.2f} ms per request (recorded)"
    )
    table = Table("option", "memory", "concurrency", "p99 ms", "meets", "$ / month", title="Lambda")
    for o in result.lambda_options:
        count = f"reserved {o.reserved_concurrency}" + (
            f", provisioned {o.provisioned_concurrency}" if o.provisioned_concurrency else ""
        )
        table.add_row(
            o.kind,
            f"{o.memory_mb} MB",
            count,
            f"{o.duration_p99_ms:.2f}",
            _yes(o.meets_p99),
            f"{o.monthly_usd:,.2f}",
        )
    console.print(table)
    table = Table(
        "instance",
        "count",
        "req/s each",
        "target/min",
        "p99 ms",
        "meets",
        "$ / month",
        title="SageMaker endpoint",
    )
    for e in result.sagemaker_options:
        table.add_row(
            e.instance_type + (f" ({e.gpu})" if e.gpu else ""),
            str(e.instances),
            f"{e.per_instance_req_s:,.0f}",
            f"{e.invocations_per_instance:,}",
            "-" if e.p99_ms is None else f"{e.p99_ms:.1f}",
            _yes(e.meets_p99),
            f"{e.monthly_usd:,.2f}",
        )
    console.print(table)
    for e in result.sagemaker_options:
        if e.gpu:
            console.print(f"{e.instance_type}: {'; '.join(e.notes)}")
    which = "cheapest" if result.p99_ms is None else "cheapest that meets the bound"
    console.print(f"{which}: [bold]{result.recommended}[/bold]")
    console.print("target/min: the autoscaling target, InvocationsPerInstance (per instance, per minute)")
    console.print(f"prices: {result.prices_date}, {result.prices_source}")


def _yes(meets: bool | None) -> str:
    return "?" if meets is None else "yes" if meets else "no"
