"""What every command group shares: the consoles, the API call, the options naming the API and the AWS."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

# Printed commands must stay copy-pasteable: never wrap them at the terminal width.
console = Console(soft_wrap=True)
err = Console(stderr=True)

Endpoint = Annotated[str, typer.Option(envvar="AIMASS_ENDPOINT", help="aimass API to talk to")]
ApiKey = Annotated[str | None, typer.Option(envvar="AIMASS_API_KEY", help="x-api-key header value")]
DEFAULT_ENDPOINT = "http://127.0.0.1:8000"


def call(method: str, endpoint: str, path: str, api_key: str | None, **kwargs: Any) -> Any:
    """The API's JSON answer. An error answer is printed with its details (exit 1), an API that
    cannot be reached too (exit 2)."""
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
        print_details(problem.get("details", []))
        raise typer.Exit(1)
    return body


def print_details(details: list[dict[str, Any]]) -> None:
    """An aimass error's field-level details, one `loc: message` line each."""
    for detail in details:
        err.print(f"  {'.'.join(map(str, detail.get('loc', [])))}: {detail.get('message')}")


AwsEndpoint = Annotated[
    str,
    typer.Option(envvar="AIMASS_AWS_ENDPOINT_URL", help="the local stack's AWS endpoint; '' for AWS itself"),
]
Region = Annotated[str, typer.Option(envvar="AWS_DEFAULT_REGION")]
LOCAL_AWS = "http://127.0.0.1:5000"


def use_aws(endpoint: str, region: str, **settings: str) -> None:
    """Point this process's aimass settings at an AWS: the local stack's (fake credentials), or AWS."""
    os.environ.update({"AWS_DEFAULT_REGION": region, **settings})
    if endpoint:
        os.environ["AIMASS_AWS_ENDPOINT_URL"] = endpoint
        if "AWS_ACCESS_KEY_ID" not in os.environ:
            from aimass.local.stack import FAKE_CREDENTIALS

            os.environ.update(FAKE_CREDENTIALS)


def comma_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        err.print(f"[red]{path} is not valid JSON: {error}[/red]")
        raise typer.Exit(2) from error
