"""`aimass rules`: read, save and try a model's business rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aimass.cli.common import DEFAULT_ENDPOINT, ApiKey, AsJson, Endpoint, call, console, json_file, show_json

app = typer.Typer(help="Read, save and try a model's business rules.", no_args_is_help=True)


@app.command("get")
def rules_get(
    name: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Print the rules model NAME has now."""
    rules = call("GET", endpoint, f"/v1/models/{name}/rules", api_key)
    if as_json:
        return show_json(rules)
    console.print_json(data=rules)


@app.command("put")
def rules_put(
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the ruleset JSON")],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Save FILE as the next ruleset version of model NAME (checked against its signatures)."""
    saved = call("PUT", endpoint, f"/v1/models/{name}/rules", api_key, json=json_file(file))
    if as_json:
        return show_json(saved)
    console.print(f"{name}: rules v{saved['version']} saved ({len(saved['ruleset']['rules'])} rules)")


@app.command("evaluate")
def rules_evaluate(
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help='{"instances": [...], ...}')],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show which rules fire on the instances in FILE (with `ruleset` in it: try those rules)."""
    fired = call("POST", endpoint, f"/v1/models/{name}/rules:evaluate", api_key, json=json_file(file))
    if as_json:
        return show_json(fired)
    console.print_json(data=fired)
