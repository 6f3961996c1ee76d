"""`aimass serve`: the embedded local stack and the API on this machine."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from aimass.cli.common import console

# How long a stop (SIGTERM, Ctrl-C) waits for requests still running before it closes their
# connections: without a bound, one client that never finishes sending its body keeps the server up.
SHUTDOWN_GRACE_S = 3


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="AIMASS_PORT")] = 8000,
    aws_port: Annotated[int, typer.Option(envvar="AIMASS_AWS_PORT")] = 5000,
    state_dir: Annotated[
        Path, typer.Option(envvar="AIMASS_STATE_DIR", help="demo models, model cache")
    ] = Path(".aimass"),
    demo: Annotated[bool, typer.Option(help="train and register the demo models")] = True,
    fresh: Annotated[
        bool,
        typer.Option(help="forget the kept state (models, versions, aliases, rules, feedback...)"),
    ] = False,
    admin_key: Annotated[
        str | None,
        typer.Option(
            envvar="AIMASS_ADMIN_KEY",
            help="require this x-api-key on the registry's writes (push, archive, aliases, rules, "
            "quality policy, pipeline runs); the other routes take it too",
        ),
    ] = None,
) -> None:
    """Start the embedded local stack and serve the API (Ctrl-C stops)."""
    import uvicorn
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from aimass.local import persistence
    from aimass.local.demo import GPU_DEMO
    from aimass.local.stack import LocalStack

    if admin_key:
        os.environ["AIMASS_ADMIN_KEY"] = admin_key  # read by the settings the app is made with
    stack = LocalStack(aws_port=aws_port, state_dir=state_dir, persist=True, fresh=fresh)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task(f"starting the embedded AWS on {stack.aws_endpoint}")
        stack.start()
        served = stack.register_demos(lambda text: bar.update(task, description=text)) if demo else []
    from aimass.api.app import create_app
    from aimass.config import settings

    base = f"http://{host}:{port}"
    key = settings().api_key
    auth = f" -H 'x-api-key: {key}'" if key else ""
    console.print(f"[bold green]aimass[/bold green] API on {base} (OpenAPI: {base}/docs)")
    if settings().admin_key:
        console.print("the registry's writes need the admin key (AIMASS_ADMIN_KEY) in x-api-key")
    console.print(f"embedded AWS on {stack.aws_endpoint}, bucket s3://{stack.bucket}, table {stack.table}")
    kept = persistence.path_of(state_dir)
    console.print(f"state {'restored from' if stack.restored else 'kept in'} {kept} (--fresh starts empty)")
    for name in served:
        if stack.restored:
            console.print(f"  model [bold]{name}[/bold] ({_aliases(name)})")
        elif name == GPU_DEMO:
            console.print(
                f"  model [bold]{name}[/bold] (champion v2 on the emulated SageMaker endpoint "
                f"{stack.gpu_endpoint} at {stack.gpu_endpoint_url}; fallback v1 in the Lambda)"
            )
        else:
            console.print(f"  model [bold]{name}[/bold] (champion v1)")
    if stack.gpu_endpoint_url:
        console.print(f"emulated endpoint's pid in {stack.endpoint_pid_file} (started again if it dies)")
    if "breast-cancer" in served:
        console.print("try:")
        console.print(f"  curl -s {base}/v1/models{auth}")
        console.print(
            f"  curl -s {base}/v1/models/breast-cancer:predict{auth} -H 'content-type: application/json' "
            "-d @events/bodies/breast_cancer_predict.json"
        )
        console.print(f"  curl -s {base}/v2/models/digits{auth}")
        if settings().pipeline_state_machine_arn:
            console.print("retrain breast-cancer (the retraining pipeline on the embedded Step Functions):")
            console.print(f"  .venv/bin/aimass pipeline run breast-cancer --endpoint {base}")
    # uvicorn shuts down on SIGTERM, then raises the signal again under the handler it found: the
    # default one would end the process before `finally`, leaving the emulated endpoint running.
    signal.signal(signal.SIGTERM, lambda number, _: sys.exit(128 + number))
    # Debug aids (docs/design.md, "When AWS cannot be reached"): SIGUSR1 takes the embedded AWS off
    # its port, SIGUSR2 puts it back; off the handler's thread, as stopping waits on moto's.
    signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(target=stack.stop_aws).start())
    signal.signal(signal.SIGUSR2, lambda *_: threading.Thread(target=stack.start_aws).start())
    # The rollout schedule (RolloutTickSchedule in AWS): steps, guards and rollbacks every few seconds.
    stack.tick_rollouts(settings().rollout_tick_s)
    try:
        uvicorn.run(
            create_app(),
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
    finally:
        stack.stop()


def _aliases(name: str) -> str:
    """A kept model's aliases as the user left them, e.g. `champion v1, staging v2`."""
    from aimass import wiring

    aliases = wiring.registry().get_model(name).aliases
    return ", ".join(f"{alias} v{version}" for alias, version in sorted(aliases.items())) or "no aliases"
