"""`aimass explain`: one `:explain` request (Kernel SHAP attributions) against any aimass API."""

from __future__ import annotations

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
    console,
    fail,
    instances_body,
    request_body_text,
    show_json,
    version_path,
)

# The attributions a table shows per instance, largest |SHAP| first (--json has them all).
SHOWN = 10


def explain(
    name: str,
    file: Annotated[
        Path | None,
        typer.Option(help="file with the JSON body: {\"instances\": [...]} or a list ('-' for stdin)"),
    ] = None,
    version: Annotated[int | None, typer.Option()] = None,
    label: Annotated[str | None, typer.Option(help="the alias whose version is explained")] = None,
    class_: Annotated[
        str | None, typer.Option("--class", help="the class explained (default: each predicted class)")
    ] = None,
    samples: Annotated[
        int | None, typer.Option(min=1, help="coalitions per instance (default 2 x features + 2048)")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0)] = None,
    background: Annotated[
        int | None, typer.Option(min=1, help="use only this many of the version's background rows")
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Explain model NAME's predictions of the instances in --file: each feature's SHAP value, which
    with the base value adds up to the explained output (docs/explain.md)."""
    if version is not None and label is not None:
        raise fail("--version and --label name the version two ways: give one", USAGE)
    body = instances_body(request_body_text(file))
    if not isinstance(body, dict):
        raise fail('the request body is neither {"instances": [...]} nor a list of instances', USAGE)
    given = {"class": class_, "samples": samples, "seed": seed, "background": background}
    parameters = {**body.get("parameters", {}), **{k: v for k, v in given.items() if v is not None}}
    if parameters:
        body = {**body, "parameters": parameters}
    path = version_path(name, version, label)
    answer = call("POST", endpoint, path + ":explain", api_key, json=body)
    if as_json:
        return show_json(answer)
    _show(answer)


def _show(answer: dict[str, Any]) -> None:
    model = answer["model"]
    console.print(
        f"{model['name']} v{model['version']}: {answer['samples']} coalitions per instance"
        f"{' (exact)' if answer['exact'] else ''}, seed {answer['seed']}, "
        f"{answer['background']['rows']} background rows ({answer['background']['source']})"
    )
    for i, item in enumerate(answer["shap"]):
        table = Table(
            title=f"instance {i}: {item['class']} = {item['value']:.6g} "
            f"(base {item['base_value']:.6g} + attributions)",
            title_justify="left",
        )
        table.add_column("feature")
        table.add_column("SHAP", justify="right")
        ranked = sorted(item["attributions"].items(), key=lambda kv: -abs(kv[1]))
        for feature, value in ranked[:SHOWN]:
            table.add_row(feature, f"{value:+.6g}")
        if len(ranked) > SHOWN:
            rest = sum(v for _, v in ranked[SHOWN:])
            table.add_row(f"({len(ranked) - SHOWN} more)", f"{rest:+.6g}")
        console.print(table)
