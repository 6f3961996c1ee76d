"""The `aimass` command: run the local stack, manage models and predict against any aimass API.

One module per command group; `common` holds what they share (the consoles, the API call, the
options naming the API and the AWS). Not in the Lambda layer (layers/core/Makefile)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from aimass.cli import (
    batch,
    explain,
    gpu,
    models,
    monitor,
    pipeline,
    plan,
    predict,
    quality,
    release,
    rollout,
    rules,
    serve,
    subscriptions,
)
from aimass.cli.common import AimassGroup

app = typer.Typer(
    cls=AimassGroup,
    help="aimass: versioned ML predictions, locally or on AWS.\n\nExit codes: 0 ok; 1 failed, or a check "
    "found problems; 2 usage; 3 the API or the AWS cannot be reached (docs/cli.md).",
    no_args_is_help=True,
)


def _print_version(asked: bool) -> None:
    if asked:
        from aimass import __version__

        print(f"aimass {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit"),
    ] = None,
) -> None:
    """The options of `aimass` itself (its help is the Typer's above)."""


app.command()(serve.serve)
app.command()(predict.predict)
app.command()(explain.explain)
app.command()(batch.batch)
app.command()(plan.plan)
app.add_typer(models.app, name="models")
app.add_typer(rules.app, name="rules")
app.add_typer(quality.app, name="quality")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(gpu.app, name="gpu")
app.add_typer(rollout.app, name="rollout")
app.add_typer(release.app, name="release")
app.add_typer(subscriptions.app, name="subscriptions")
app.add_typer(monitor.app, name="monitor")


def main() -> None:
    os.environ.setdefault("SAM_CLI_TELEMETRY", "0")
    app()
