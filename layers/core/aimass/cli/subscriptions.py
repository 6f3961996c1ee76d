"""`aimass subscriptions`: webhooks that receive registry events (docs/events.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aimass.cli.common import DEFAULT_ENDPOINT, ApiKey, AsJson, Endpoint, call, console, show_json

app = typer.Typer(help="Webhook subscriptions to registry events: add, list, remove.", no_args_is_help=True)


@app.command("add")
def add(
    url: str,
    model: Annotated[str | None, typer.Option(help="only this model's events")] = None,
    pattern: Annotated[str | None, typer.Option(help="only events of models matching this glob")] = None,
    event: Annotated[
        list[str] | None, typer.Option(help="a detail-type to deliver (repeat it); unset: all")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="of version events, only the latest version's and champion moves")
    ] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Subscribe URL to registry events; prints the signing secret, which is not shown again."""
    body = {
        "url": url,
        "model": model,
        "model_pattern": pattern,
        "events": event or None,
        "versions": "latest" if latest else "all",
    }
    created = call("POST", endpoint, "/v1/subscriptions", api_key, json=body)
    if as_json:
        return show_json(created)
    console.print(f"subscription {created['id']} -> {created['url']} ({_scope(created)})")
    console.print(f"signing secret (shown once, keep it): {created['secret']}")
    return None


@app.command("list")
def list_(endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """The webhook subscriptions (their secrets are never shown again)."""
    found = call("GET", endpoint, "/v1/subscriptions", api_key)
    if as_json:
        return show_json(found)
    table = Table("id", "url", "models", "events", "versions", "created by")
    for s in found["subscriptions"]:
        events = ", ".join(s["events"]) if s["events"] else "all"
        table.add_row(s["id"], s["url"], _scope(s), events, s["versions"], s["created_by"])
    console.print(table)
    return None


@app.command("remove")
def remove(subscription_id: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None) -> None:
    """Remove a subscription by its id: nothing more is sent to it."""
    call("DELETE", endpoint, f"/v1/subscriptions/{subscription_id}", api_key)
    console.print(f"subscription {subscription_id} removed")


def _scope(subscription: dict[str, str | None]) -> str:
    if subscription["model"]:
        return f"model {subscription['model']}"
    if subscription["model_pattern"]:
        return f"models {subscription['model_pattern']}"
    return "every model"
