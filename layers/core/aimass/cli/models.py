"""`aimass models`: register, list, alias and archive model versions."""

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
    Endpoint,
    call,
    comma_list,
    console,
    fail,
    show_json,
)

app = typer.Typer(
    help="Register, list, alias and archive model versions; read and fill in their cards.",
    no_args_is_help=True,
)


@app.command("push")
def push(
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the .onnx file")],
    features: Annotated[str | None, typer.Option(help="feature names, comma-separated")] = None,
    pii: Annotated[
        str | None,
        typer.Option(help="personal features, comma-separated: never stored raw (docs/privacy.md)"),
    ] = None,
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
            help="where it runs: lambda, or sagemaker:ENDPOINT\\[/TARGET_MODEL] (default: the Lambda, or the "
            "stack's GPU endpoint for a model too large for the Lambda)"
        ),
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Register FILE as the next version of model NAME."""
    enrichment: dict[str, Any] = json.loads(metadata.read_text()) if metadata else {}
    for key, value in (
        ("features", comma_list(features)),
        ("pii", comma_list(pii)),
        ("class_labels", comma_list(labels)),
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
        record = call("POST", endpoint, f"/v1/models/{name}/versions", api_key, files=files, data=form)
    if alias:
        point_alias(endpoint, api_key, name, alias, record["version"])
    if as_json:
        return show_json(record)
    console.print(
        f"registered [bold]{name}[/bold] v{record['version']} sha256 {record['sha256'][:12]}… "
        f"served by {record['backend']}"
    )
    if record.get("baseline"):
        console.print(
            f"baseline from {record['baseline']['item_count']:,} rows of {record['baseline']['source']}"
        )
    if alias:
        console.print(f"{alias} → v{record['version']}")


def _reference_csv(path: Path) -> tuple[str, bytes, str]:
    """The reference file as the API takes it everywhere: CSV. Parquet is converted here, so the
    Lambda needs no Parquet reader."""
    if not path.is_file():
        raise fail(f"{path} is not a file", USAGE)
    if path.suffix.lower() != ".parquet":
        return (path.name, path.read_bytes(), "text/csv")
    import pyarrow.csv
    import pyarrow.parquet

    out = pyarrow.BufferOutputStream()
    pyarrow.csv.write_csv(pyarrow.parquet.read_table(path), out)
    return (path.stem + ".csv", out.getvalue().to_pybytes(), "text/csv")


@app.command("list")
def list_models(
    endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """List the registered models with their latest version and aliases."""
    listing = call("GET", endpoint, "/v1/models?detail=true", api_key)
    if as_json:
        return show_json(listing)
    table = Table("model", "latest", "aliases", "updated")
    for model in listing["models"]:
        aliases = ", ".join(f"{k}→v{v}" for k, v in sorted(model["aliases"].items()))
        table.add_row(model["name"], str(model["latest_version"]), aliases, model["updated_at"])
    console.print(table)


def point_alias(endpoint: str, api_key: str | None, name: str, alias: str, version: int) -> Any:
    """PUT the alias; the registry's answer (version, previous_version)."""
    return call("PUT", endpoint, f"/v1/models/{name}/aliases/{alias}", api_key, json={"version": version})


@app.command("alias")
def alias(
    name: str,
    alias: str,
    version: int,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Point ALIAS (champion, challenger, any name) of model NAME at VERSION."""
    result = point_alias(endpoint, api_key, name, alias, version)
    if as_json:
        return show_json(result)
    before = f" (was v{result['previous_version']})" if result.get("previous_version") else ""
    console.print(f"{name}: {alias} → v{result['version']}{before}")


@app.command("unalias")
def unalias(
    name: str,
    alias: str,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Remove ALIAS of model NAME. Without champion, NAME serves its latest version not archived."""
    result = call("DELETE", endpoint, f"/v1/models/{name}/aliases/{alias}", api_key)
    if as_json:
        return show_json(result)
    console.print(f"{name}: {alias} removed (was v{result['previous_version']})")


@app.command("archive")
def archive(
    name: str,
    version: int,
    undo: Annotated[bool, typer.Option("--undo", help="bring an archived version back")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Archive VERSION of model NAME: it takes no alias and latest skips it; asked for by number it
    is still served. No alias may point at it."""
    result = call(
        "PATCH", endpoint, f"/v1/models/{name}/versions/{version}", api_key, json={"archived": not undo}
    )
    if as_json:
        return show_json(result)
    latest = result["latest_active_version"]
    console.print(
        f"{name} v{version} {'archived' if result['archived'] else 'unarchived'}; latest not archived: "
        + (f"v{latest}" if latest else "none")
    )


@app.command("quantize")
def quantize(
    name: str,
    version: int,
    method: Annotated[
        str,
        typer.Option(help="dynamic (int8 weights), static (int8, calibrated on the rows) or float16 (GPU)"),
    ] = "dynamic",
    min_agreement: Annotated[
        float, typer.Option(help="refuse a copy that answers as the original on fewer of the rows")
    ] = 0.99,
    reference: Annotated[
        str | None,
        typer.Option(
            help="held-out rows in S3 (s3://... CSV or Parquet, optional `label` column); "
            "default: rows drawn from the version's baseline"
        ),
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Register an int8 or float16 copy of VERSION as the challenger, judged against it on held-out
    rows; refused (exit 1, with the figures) when it agrees on too few (docs/compression.md)."""
    body: dict[str, Any] = {"method": method, "min_agreement": min_agreement}
    if reference:
        body["reference_uri"] = reference
    with console.status(f"quantizing {name} v{version} ({method}) and judging it"):
        made = call("POST", endpoint, f"/v1/models/{name}/versions/{version}/quantize", api_key, json=body)
    if as_json:
        return show_json(made)
    figures, record = made["figures"], made["version"]
    console.print(
        f"registered [bold]{name}[/bold] v{record['version']} ({method} of v{version}) as {made['alias']}"
    )
    table = Table("", f"v{version}", f"v{record['version']}")
    table.add_row(
        "size (bytes)", f"{figures['size_bytes_original']:,}", f"{figures['size_bytes_compressed']:,}"
    )
    before, after = figures["speed_original"], figures["speed_compressed"]
    table.add_row("one row (ms, p50)", f"{before['single_row_ms']:.3f}", f"{after['single_row_ms']:.3f}")
    table.add_row("batch (rows/s)", f"{before['batch_rows_per_s']:,.0f}", f"{after['batch_rows_per_s']:,.0f}")
    if figures["metric"]:
        table.add_row(
            figures["metric"], f"{figures['metric_original']:.4f}", f"{figures['metric_compressed']:.4f}"
        )
    console.print(table)
    difference = figures["max_probability_difference"]
    if difference is None:
        difference = figures["max_value_difference"]
    console.print(
        f"agreement {figures['agreement']:.4f} on {figures['rows']} rows ({figures['rows_from']}); "
        f"largest difference {difference:.3g}"
    )


def _version_meant(name: str, endpoint: str, api_key: str | None) -> int:
    """The version a request naming none gets: `champion`, else the latest not archived."""
    model = call("GET", endpoint, f"/v1/models/{name}", api_key)
    version = model["aliases"].get("champion") or model.get("latest_active_version")
    if not version:
        raise fail(f"{name} has no champion and every version is archived: name a VERSION", USAGE)
    return int(version)


@app.command("card")
def card(
    name: str,
    version: Annotated[
        int | None, typer.Argument(help="default: champion, else the latest not archived")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="write the card's page (with plots) to this file")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show the model card of VERSION of model NAME (docs/cards.md): as SageMaker Model Card content
    with --json, as an HTML page with --html FILE."""
    version = version or _version_meant(name, endpoint, api_key)
    path = f"/v1/models/{name}/versions/{version}/card"
    if html is not None:
        html.write_text(call("GET", endpoint, path, api_key, accept="text/html"), encoding="utf-8")
        if not as_json:
            console.print(f"wrote the card of {name} v{version} to {html}")
    content = call("GET", endpoint, path, api_key)
    if as_json:
        return show_json(content)
    if html is not None:
        return None
    overview, uses = content["model_overview"], content["intended_uses"]
    info = content["additional_information"]
    custom = info.get("custom_details", {})
    table = Table(show_header=False, box=None)
    for label, value in (
        ("model", f"{overview['model_name']} v{version}"),
        ("description", overview.get("model_description")),
        ("problem type", overview.get("problem_type")),
        ("owner", overview.get("model_owner")),
        ("intended use", uses.get("intended_uses")),
        ("risk rating", uses.get("risk_rating")),
        ("known limits", info.get("caveats_and_recommendations")),
        ("dataset", custom.get("lineage.dataset_uri")),
        ("parent version", custom.get("lineage.parent_version")),
        ("baseline", custom.get("baseline")),
        ("rules", custom.get("rules")),
        ("composed as", custom.get("graph.members")),
        ("top attributions", _top_attributions(custom.get("feature_attributions"))),
    ):
        table.add_row(label, "-" if value is None else str(value))
    console.print(table)
    for evaluation in content.get("evaluation_details", []):
        numbers = [
            f"{d['name']}={d['value']:.4g}"
            for g in evaluation.get("metric_groups", [])[:1]
            for d in g["metric_data"]
            if d["type"] == "number"
        ]
        if evaluation["name"] != "baseline" and numbers:
            console.print(f"{evaluation['name']}: " + ", ".join(numbers))


def _top_attributions(summary: str | None, shown: int = 3) -> str | None:
    """The card's largest mean |SHAP| features (its custom detail is a JSON object, largest first)."""
    if summary is None:
        return None
    largest = list(json.loads(summary).items())[:shown]
    return ", ".join(f"{feature} {value:.3g}" for feature, value in largest)


CARD_FIELDS = (
    "owner",
    "creator",
    "purpose",
    "intended_use",
    "factors",
    "risk_rating",
    "risk_explanation",
    "limits",
    "ethical_considerations",
    "business_problem",
    "business_stakeholders",
    "line_of_business",
)


@app.command("card-set")
def card_set(
    name: str,
    version: int,
    owner: Annotated[str | None, typer.Option(help="who maintains the model")] = None,
    creator: Annotated[str | None, typer.Option(help="who made it")] = None,
    purpose: Annotated[str | None, typer.Option(help="what the model is for")] = None,
    intended_use: Annotated[str | None, typer.Option(help="how it is meant to be used")] = None,
    factors: Annotated[str | None, typer.Option(help="what affects how well it works")] = None,
    risk_rating: Annotated[str | None, typer.Option(help="High, Medium, Low or Unknown")] = None,
    risk_explanation: Annotated[str | None, typer.Option(help="why that rating")] = None,
    limits: Annotated[str | None, typer.Option(help="known limits: caveats and recommendations")] = None,
    ethical_considerations: Annotated[str | None, typer.Option()] = None,
    business_problem: Annotated[str | None, typer.Option()] = None,
    business_stakeholders: Annotated[str | None, typer.Option()] = None,
    line_of_business: Annotated[str | None, typer.Option()] = None,
    clear: Annotated[
        list[str] | None, typer.Option(help="a field to clear (owner, limits, ...); may be repeated")
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Set the card fields a person supplies for VERSION of model NAME (audited); fields not given
    stay as they are."""
    given = {
        "owner": owner,
        "creator": creator,
        "purpose": purpose,
        "intended_use": intended_use,
        "factors": factors,
        "risk_rating": risk_rating,
        "risk_explanation": risk_explanation,
        "limits": limits,
        "ethical_considerations": ethical_considerations,
        "business_problem": business_problem,
        "business_stakeholders": business_stakeholders,
        "line_of_business": line_of_business,
    }
    body: dict[str, Any] = {f: v for f, v in given.items() if v is not None}
    for field in clear or []:
        if field.replace("-", "_") not in CARD_FIELDS:
            raise fail(f"--clear {field}: not a card field ({', '.join(CARD_FIELDS)})", USAGE)
        body[field.replace("-", "_")] = None
    if not body:
        raise fail("give at least one field to set or --clear", USAGE)
    saved = call("PATCH", endpoint, f"/v1/models/{name}/versions/{version}/card", api_key, json=body)
    if as_json:
        return show_json(saved)
    console.print(f"{name} v{version}: card revision {saved['revision']} ({', '.join(sorted(body))})")


@app.command("compose")
def compose(
    name: str,
    ensemble: Annotated[
        str | None,
        typer.Option(help="members, comma-separated: NAME@VERSION or NAME@ALIAS (e.g. a@champion,b@3)"),
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="an ensemble's weights, comma-separated (e.g. 2,1)")
    ] = None,
    combine: Annotated[
        str | None, typer.Option(help="an ensemble's combination: mean (default) or vote")
    ] = None,
    sequence: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="a sequence's spec, YAML or JSON")
    ] = None,
    switch: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="a switch's spec, YAML or JSON")
    ] = None,
    description: Annotated[str | None, typer.Option()] = None,
    alias: Annotated[str | None, typer.Option(help="point this alias at the new version")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Register a graph version of NAME: an ensemble, a sequence or a switch of other versions
    (docs/composition.md). Aliases are resolved now; the graph is refused when it cannot run."""
    graph = _graph_spec(ensemble, weights, combine, sequence, switch)
    body: dict[str, Any] = {"graph": graph}
    if description:
        body["description"] = description
    record = call("POST", endpoint, f"/v1/models/{name}/versions:compose", api_key, json=body)
    if alias:
        point_alias(endpoint, api_key, name, alias, record["version"])
    if as_json:
        return show_json(record)
    members = ", ".join(f"{m['given']} → v{m['version']}" for m in record["graph"]["members"])
    article = "an" if graph["kind"][0] in "aeiou" else "a"
    console.print(
        f"registered [bold]{name}[/bold] v{record['version']}, {article} {graph['kind']} of {members}"
    )
    if alias:
        console.print(f"{alias} → v{record['version']}")


def _graph_spec(
    ensemble: str | None,
    weights: str | None,
    combine: str | None,
    sequence: Path | None,
    switch: Path | None,
) -> dict[str, Any]:
    """The graph the options give: exactly one of --ensemble, --sequence, --switch."""
    given = [o for o, v in (("--ensemble", ensemble), ("--sequence", sequence), ("--switch", switch)) if v]
    if len(given) != 1:
        raise fail("give exactly one of --ensemble, --sequence, --switch", USAGE)
    if (weights or combine) and not ensemble:
        raise fail("--weights and --combine are an ensemble's", USAGE)
    if ensemble:
        graph: dict[str, Any] = {"kind": "ensemble", "members": comma_list(ensemble)}
        if weights:
            try:
                graph["weights"] = [float(w) for w in comma_list(weights) or []]
            except ValueError:
                raise fail(f"--weights {weights!r}: numbers, comma-separated", USAGE) from None
        if combine:
            graph["combine"] = combine
        return graph
    path = sequence or switch
    assert path is not None
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())  # YAML reads JSON too
    except yaml.YAMLError as error:
        raise fail(f"{path} is neither YAML nor JSON: {error}", USAGE) from None
    if not isinstance(spec, dict):
        raise fail(f"{path} holds no mapping (steps: or branches:/default:)", USAGE)
    kind = "sequence" if sequence else "switch"
    if spec.setdefault("kind", kind) != kind:
        raise fail(f"{path} is a {spec['kind']} spec, given as --{kind}", USAGE)
    return spec
