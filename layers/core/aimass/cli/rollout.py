"""`aimass rollout`: bring a version in as a model's canary or shadow, then promote or abort it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from aimass.cli.common import DEFAULT_ENDPOINT, ApiKey, AsJson, Endpoint, call, console, show_json

app = typer.Typer(help="Canary and shadow rollouts: start, status, promote, abort.", no_args_is_help=True)


def _show(rollout: dict[str, Any], as_json: bool) -> None:
    if as_json:
        return show_json(rollout)
    name, stable, canary = rollout["name"], rollout["stable"], rollout["canary"]
    shadow = rollout.get("shadow")
    if canary is None and shadow is None:
        console.print(f"{name}: no rollout; v{stable} takes every request that names no version")
        return None
    sticky = f", sticky by {rollout['sticky_by']}" if rollout["sticky_by"] else ", drawn at random"
    if canary is not None:
        console.print(
            f"{name}: v{canary['version']} is the canary at {canary['percent']:g} %{sticky}; "
            f"v{stable} takes the rest (policy v{rollout['policy_version']})"
        )
    else:
        console.print(f"{name}: v{stable} takes every request (policy v{rollout['policy_version']})")
    if shadow is not None:
        figures = (rollout.get("live") or {}).get("shadow") or {}
        agreement = figures.get("agreement")
        agreed = "not compared yet" if agreement is None else f"{agreement:.1%} agree"
        console.print(
            f"  v{shadow['version']} shadows {shadow['percent']:g} % of v{stable}'s requests{sticky}: "
            f"{figures.get('compared', 0)} instances compared, {agreed}"
        )
    return None


@app.command("start")
def start(
    name: str,
    version: int,
    canary: Annotated[
        float | None,
        typer.Option(help="percent of the requests naming no version it serves; default 10, 0 with --shadow"),
    ] = None,
    shadow: Annotated[
        float, typer.Option(help="percent of the stable version's requests also run on it, never answered")
    ] = 0,
    sticky_by: Annotated[
        str | None, typer.Option(help="header (x-aimass-routing-key) or feature:NAME; unset: random")
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Start a rollout of model NAME: VERSION becomes the canary, taking --canary percent, and with
    --shadow also runs on that share of the stable version's requests (--shadow alone: shadow only)."""
    body = {"version": version, "canary": canary, "shadow": shadow, "sticky_by": sticky_by}
    _show(call("PUT", endpoint, f"/v1/models/{name}/rollout", api_key, json=body), as_json)


@app.command("status")
def status(
    name: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Where model NAME's rollout stands."""
    _show(call("GET", endpoint, f"/v1/models/{name}/rollout", api_key), as_json)


@app.command("promote")
def promote(
    name: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Promote model NAME's canary: it becomes the champion and takes every request."""
    _show(call("POST", endpoint, f"/v1/models/{name}/rollout/promote", api_key), as_json)


@app.command("abort")
def abort(
    name: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Abort model NAME's rollout: the stable version takes every request back."""
    _show(call("POST", endpoint, f"/v1/models/{name}/rollout/abort", api_key), as_json)
