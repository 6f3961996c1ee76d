"""`aimass predict`: one V1 predict request against any aimass API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aimass.cli.common import (
    DEFAULT_ENDPOINT,
    ApiKey,
    AsJson,
    Endpoint,
    call,
    console,
    instances_body,
    request_body_text,
    show_json,
    version_path,
)


def predict(
    name: str,
    data: Annotated[str | None, typer.Option(help="JSON body, e.g. '{\"instances\": [[...]]}'")] = None,
    file: Annotated[
        # not exists=True: it refuses '-' (typer does not pass allow_dash on to click)
        Path | None,
        typer.Option(help="file with the JSON body ('-' for stdin)"),
    ] = None,
    version: Annotated[int | None, typer.Option()] = None,
    alias: Annotated[str | None, typer.Option()] = None,
    steps: Annotated[
        bool, typer.Option("--steps", help="a graph version's answer with each step's (docs/composition.md)")
    ] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Send a V1 predict request for model NAME and print the response."""
    body = instances_body(data if data is not None else request_body_text(file))
    path = version_path(name, version, alias)
    answer = call(
        "POST", endpoint, path + ":predict" + ("?detail=steps" if steps else ""), api_key, json=body
    )
    if as_json:
        return show_json(answer)
    console.print_json(data=answer)
