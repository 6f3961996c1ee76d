"""`aimass quality`: a model's data-quality policy, and reports on rows against its baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from aimass.cli.common import (
    DEFAULT_ENDPOINT,
    FAILED,
    ApiKey,
    AsJson,
    Endpoint,
    call,
    comma_list,
    console,
    json_file,
    show_json,
)

app = typer.Typer(help="Data-quality policy and reports against a baseline.", no_args_is_help=True)


@app.command("policy")
def quality_policy(
    name: str,
    violations: Annotated[
        str | None,
        typer.Option(help="reject | flag | ignore: what a range/category/unknown-feature violation does"),
    ] = None,
    anomalies: Annotated[
        str | None, typer.Option(help="reject | flag | ignore: what an anomaly does")
    ] = None,
    pii: Annotated[
        str | None,
        typer.Option(help="erase | tokenise: what stored copies hold of personal features' values"),
    ] = None,
    pii_features: Annotated[
        str | None,
        typer.Option(help='features personal in every version, comma-separated ("": none)'),
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show model NAME's data-quality policy, or change it with --violations / --anomalies / --pii /
    --pii-features."""
    policy = call("GET", endpoint, f"/v1/models/{name}/quality", api_key)
    changes: dict[str, Any] = {
        k: v for k, v in (("violations", violations), ("anomalies", anomalies), ("pii", pii)) if v
    }
    if pii_features is not None:
        changes["pii_features"] = comma_list(pii_features) or []
    if changes:
        policy = call("PUT", endpoint, f"/v1/models/{name}/quality", api_key, json=policy | changes)
    if as_json:
        return show_json(policy)
    personal = ", ".join(policy.get("pii_features", [])) or "none beyond the signatures'"
    console.print(
        f"{name}: violations → {policy['violations']}, anomalies → {policy['anomalies']}, "
        f"personal features ({personal}) → {policy.get('pii', 'erase')}"
    )


def _instances(path: Path) -> list[Any]:
    """Rows from a JSON file ({"instances": [...]} or a list) or a CSV file with a header row."""
    if path.suffix.lower() != ".csv":
        body = json_file(path)
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


@app.command("check")
def quality_check(
    name: str,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="rows: JSON or CSV with a header")
    ],
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", dir_okay=False, help="also write the report as one self-contained HTML page with plots"
        ),
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Report FILE's data quality against model NAME's baseline: violations, completeness, drift.
    Exits 1 when it found violations or drift, so a script can gate on it."""
    instances = _instances(file)
    report = call(
        "POST", endpoint, f"/v1/models/{name}/quality:check", api_key, json={"instances": instances}
    )
    if html is not None:
        html.write_text(_page(name, file, instances, report, endpoint, api_key), encoding="utf-8")
    if as_json:
        show_json(report)
    else:
        _print_quality_report(name, report)
        if html is not None:
            console.print(f"page: {escape(str(html))}")
    if report["violations"] or any(d["drifted"] for d in report["drift"]):
        raise typer.Exit(FAILED)


def _page(
    name: str, file: Path, instances: list[Any], report: dict[str, Any], endpoint: str, api_key: str | None
) -> str:
    """The report as the data-quality page, drawn here: the API's JSON has the scores, FILE the rows,
    and the version's baseline route the distributions they are drawn against (the API's function
    carries no matplotlib, so the page is not the API's to draw)."""
    from aimass.contracts.registry import ModelVersion
    from aimass.quality.checks import RequestChecks
    from aimass.quality.page import page_from_quality_report, render, values_by_feature

    version = int(report["model"]["version"])
    record = ModelVersion.model_validate(
        call("GET", endpoint, f"/v1/models/{name}/versions/{version}", api_key)
    )
    baseline = (
        call("GET", endpoint, f"/v1/models/{name}/versions/{version}/baseline", api_key)
        if record.baseline is not None
        else {"statistics": None, "constraints": None}
    )
    checks = RequestChecks.build(record.signature, baseline["constraints"], None)
    page = page_from_quality_report(
        report,
        model=name,
        versions=[version],
        subject=f"rows of {file.name}",
        values=values_by_feature(checks, instances) if checks is not None else {},
        statistics=baseline["statistics"],
        note=None
        if record.baseline is not None
        else f"Version {version} has no baseline: nothing to compare.",
    )
    return render(page)


def _print_quality_report(name: str, report: dict[str, Any]) -> None:
    table = Table(
        "feature",
        "check",
        "description",
        title=f"{name} v{report['model']['version']}: {report['item_count']} rows",
    )
    for violation in report["violations"]:
        # escaped: a description may quote a pattern, whose brackets rich would take for markup
        table.add_row(
            escape(violation["feature_name"]),
            violation["constraint_check_type"],
            escape(violation["description"]),
        )
    console.print(table)
    drifted = [d["feature"] for d in report["drift"] if d["drifted"]]
    console.print(
        f"drift in {len(drifted)} of {len(report['drift'])} features"
        + (": " + ", ".join(drifted) if drifted else "")
    )
    if report.get("anomalies"):
        a = report["anomalies"]
        console.print(f"anomalies: {a['count']} ({a['rate']:.1%}) above {a['threshold']:.4g}")
