"""The `aimass` command: run the local stack, manage models and predict against any aimass API.

One module per command group; `common` holds what they share (the consoles, the API call, the
options naming the API and the AWS). Not in the Lambda layer (layers/core/Makefile)."""

from __future__ import annotations

import os

import typer

from aimass.cli import batch, gpu, models, pipeline, predict, quality, rules, serve

app = typer.Typer(help="aimass: versioned ML predictions, locally or on AWS.", no_args_is_help=True)
app.command()(serve.serve)
app.command()(predict.predict)
app.command()(batch.batch)
app.add_typer(models.app, name="models")
app.add_typer(rules.app, name="rules")
app.add_typer(quality.app, name="quality")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(gpu.app, name="gpu")


def main() -> None:
    os.environ.setdefault("SAM_CLI_TELEMETRY", "0")
    app()
