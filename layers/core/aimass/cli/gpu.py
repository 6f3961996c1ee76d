"""`aimass gpu`: deploy a version to a SageMaker endpoint, see what one runs (docs/gpu.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aimass.capacity import GPU_TARGET_INVOCATIONS
from aimass.cli.common import (
    DEFAULT_ENDPOINT,
    FAILED,
    UNREACHABLE,
    ApiKey,
    AsJson,
    AwsEndpoint,
    Endpoint,
    Region,
    call,
    console,
    err,
    fail,
    print_details,
    print_error,
    show_json,
    unreachable,
    use_aws,
)

app = typer.Typer(help="Deploy versions to SageMaker GPU endpoints; see what they run.", no_args_is_help=True)

MinInstances = Annotated[int, typer.Option(help="the fewest instances autoscaling leaves")]
MaxInstances = Annotated[int, typer.Option(help="the most instances autoscaling gives")]
TargetInvocations = Annotated[
    float, typer.Option(help="invocations per instance per minute that autoscaling keeps near")
]
ScaleInCooldown = Annotated[int, typer.Option(help="seconds after a scale-in before the next")]
ScaleOutCooldown = Annotated[int, typer.Option(help="seconds after a scale-out before the next")]


class _Steps:
    """aimass.deploy's progress on the terminal: a line per step, the endpoint's status on the spinner."""

    def __init__(self, status: Any, out: Console) -> None:
        self.status = status
        self.out = out

    def step(self, text: str) -> None:
        self.out.print(f"  [green]✓[/green] {text}")

    def waiting(self, text: str) -> None:
        self.status.update(text)


def _refused(error: Exception) -> typer.Exit:
    """An aimass error (with its field details) or AWS's, printed; the exit to raise."""
    from aimass.errors import AimassError

    if isinstance(error, AimassError):
        print_error(f"{error.code}: {error.message}")
        print_details(error.details)
        return typer.Exit(FAILED)
    problem = unreachable(error)
    return fail(problem, UNREACHABLE) if problem else fail(f"AWS: {error}")


@app.command("deploy")
def gpu_deploy(
    name: str,
    version: int,
    image: Annotated[
        str | None,
        typer.Option(
            envvar="AIMASS_DEPLOY_IMAGE_URI", help="the inference image in ECR (default: the endpoint's)"
        ),
    ] = None,
    role_arn: Annotated[
        str | None,
        typer.Option(
            envvar="AIMASS_DEPLOY_ROLE_ARN", help="the role the endpoint runs as (default: the endpoint's)"
        ),
    ] = None,
    instance_type: Annotated[
        str | None, typer.Option(help="default: the endpoint's, or ml.g5.xlarge for a new one")
    ] = None,
    instance_count: Annotated[
        int | None, typer.Option(help="default: as many as run now, or --min-instances for a new endpoint")
    ] = None,
    min_instances: MinInstances = 1,
    max_instances: MaxInstances = 4,
    target_invocations: TargetInvocations = GPU_TARGET_INVOCATIONS,
    scale_in_cooldown_s: ScaleInCooldown = 900,
    scale_out_cooldown_s: ScaleOutCooldown = 300,
    canary_percent: Annotated[
        int, typer.Option(help="the canary: % of the new fleet that takes traffic first (1-50)")
    ] = 10,
    linear_step_percent: Annotated[
        int | None, typer.Option(help="shift traffic in steps of this % instead (10-50)")
    ] = None,
    wait_interval_s: Annotated[
        int, typer.Option(help="baking time after each traffic step, watched by the alarms")
    ] = 600,
    termination_wait_s: Annotated[
        int, typer.Option(help="final baking with all traffic on the new fleet, before the old goes")
    ] = 600,
    max_execution_s: Annotated[
        int | None, typer.Option(help="SageMaker's limit for the whole update (default: waits + 3600)")
    ] = None,
    rollback_alarm: Annotated[
        list[str] | None,
        typer.Option("--rollback-alarm", help="a CloudWatch alarm that rolls the update back (repeatable)"),
    ] = None,
    capture_percent: Annotated[int, typer.Option(help="% of requests captured (0: none)")] = 10,
    batching: Annotated[bool, typer.Option(help="dynamic batching in the server")] = True,
    max_batch_size: Annotated[int, typer.Option(help="rows per model call at most")] = 32,
    max_queue_delay_ms: Annotated[float, typer.Option(help="how long a batch waits for more")] = 5.0,
    memory_mb: Annotated[float | None, typer.Option(help="the model's memory footprint (MB)")] = None,
    endpoint_name: Annotated[
        str | None, typer.Option(help="the SageMaker endpoint (default: the version's backend's)")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="deploy to --endpoint-name though the version names another")
    ] = False,
    wait: Annotated[bool, typer.Option(help="wait for InService, then register autoscaling")] = True,
    timeout_s: Annotated[
        float | None, typer.Option(help="seconds to wait (default: SageMaker's limit + 3600)")
    ] = None,
    aws_endpoint: AwsEndpoint = None,
    region: Region = "us-east-1",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Deploy version VERSION of model NAME to its SageMaker endpoint: package it, then create the
    endpoint or update it blue/green (canary or linear, rolled back by the alarms), wait, autoscale."""
    from aimass.contracts.quality import QualityPolicy
    from aimass.contracts.registry import ModelVersion

    record = ModelVersion.model_validate(
        call("GET", endpoint, f"/v1/models/{name}/versions/{version}", api_key)
    )
    # The features the model's policy marks personal: SageMaker's capture then keeps no request.
    policy = QualityPolicy.model_validate(call("GET", endpoint, f"/v1/models/{name}/quality", api_key))
    use_aws(aws_endpoint, region)
    from botocore.exceptions import BotoCoreError, ClientError

    from aimass.deploy.endpoint import deploy
    from aimass.deploy.request import Batching, DeployRequest, Scaling, Traffic
    from aimass.errors import AimassError

    request = DeployRequest(
        image=image,
        role_arn=role_arn,
        instance_type=instance_type,
        instance_count=instance_count,
        endpoint=endpoint_name,
        force=force,
        capture_percent=capture_percent,
        quality_policy=policy,
        batching=Batching(batching, max_batch_size, max_queue_delay_ms, memory_mb),
        traffic=Traffic(
            # 0 is a step the user asked for (and is refused as out of range), not "no step"
            mode="canary" if linear_step_percent is None else "linear",
            step_percent=canary_percent if linear_step_percent is None else linear_step_percent,
            wait_interval_s=wait_interval_s,
            termination_wait_s=termination_wait_s,
            max_execution_s=max_execution_s,
            alarms=tuple(rollback_alarm or ()),
        ),
        scaling=Scaling(
            min_instances, max_instances, target_invocations, scale_in_cooldown_s, scale_out_cooldown_s
        ),
        wait=wait,
        timeout_s=timeout_s,
    )
    progress = err if as_json else console
    progress.print(f"deploying {name} v{version} ({record.backend})")
    try:
        with progress.status("checking") as status:
            done = deploy(record, request, _Steps(status, progress))
    except (AimassError, ClientError, BotoCoreError) as error:
        raise _refused(error) from error
    if as_json:
        show_json(done)
    else:
        _print_deployment(record, done, endpoint)
    if done.rolled_back:
        raise typer.Exit(1)


def _shifting(deployment: dict[str, Any]) -> str:
    """A DeploymentConfig in words: how traffic moves, how long it bakes, what rolls it back."""
    policy = deployment["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    wait = routing["WaitIntervalInSeconds"]
    step = (routing.get("CanarySize") or routing.get("LinearStepSize") or {}).get("Value")
    how = {
        "CANARY": f"canary {step} % for {wait} s, then all",
        "LINEAR": f"linear, {step} % more every {wait} s",
        "ALL_AT_ONCE": f"all at once, then {wait} s",
    }.get(routing["Type"], routing["Type"])
    alarms = [a["AlarmName"] for a in deployment.get("AutoRollbackConfiguration", {}).get("Alarms", [])]
    return (
        f"{how}; final baking {policy.get('TerminationWaitInSeconds', 0)} s; "
        f"rollback alarms: {', '.join(alarms) or 'none'}"
    )


def _captured(inputs: bool) -> str:
    """What SageMaker's capture keeps: the answers only where the requests carry personal features."""
    return "requests and answers" if inputs else "answers only"


def _print_deployment(record: Any, done: Any, api: str) -> None:
    colour = "red" if done.rolled_back else "green"
    outcome = f"rolled back to {done.previous_config}" if done.rolled_back else done.status
    model, version = record.name, record.version
    console.print(
        f"[bold]{model} v{version} → {done.endpoint}: {done.action}[/bold] ([{colour}]{outcome}[/{colour}])"
    )
    count = "as many as ran before" if done.instance_count_retained else str(done.instance_count)
    console.print(f"  config      {done.endpoint_config}: primary {done.instance_type} x {count}")
    console.print(f"  package     {done.package.uri} (sha256 {done.package.sha256[:12]}…)")
    console.print(f"  image       {done.image}")
    bucket = done.package.uri.split("/")[2]
    capture = (
        f"{done.capture_percent} % ({_captured(done.capture_inputs)}) → s3://{bucket}/capture/_endpoints/"
        if done.capture_percent
        else "off"
    )
    console.print(f"  capture     {capture}")
    if done.deployment_config:
        console.print(f"  blue/green  {_shifting(done.deployment_config)}")
    if done.previous_config:
        console.print(f"  previous    {done.previous_config} (what a rollback goes back to)")
    if done.autoscaling:
        scaling = done.autoscaling
        console.print(
            f"  autoscaling {scaling.min_instances} to {scaling.max_instances} instances at "
            f"{scaling.target_invocations:g} invocations/instance/min"
        )
    for note in done.notes:
        console.print(f"  [yellow]note[/yellow]: {escape(note)}")
    if done.rolled_back:
        print_error(f"v{version} is not serving: the alarms rolled it back; {done.endpoint} runs as before")
        return
    if done.status == "InService":
        console.print("next, once it answers as it should, move the alias:")
        console.print(f"  aimass models alias {model} champion {version} --endpoint {api}")
    if done.previous_config:
        console.print("to go back by hand later:")
        console.print(
            f"  aws sagemaker update-endpoint --endpoint-name {done.endpoint} "
            f"--endpoint-config-name {done.previous_config}"
        )


@app.command("status")
def gpu_status(
    endpoint_name: Annotated[str, typer.Argument(metavar="ENDPOINT", help="the SageMaker endpoint")],
    aws_endpoint: AwsEndpoint = None,
    region: Region = "us-east-1",
    as_json: AsJson = False,
) -> None:
    """What endpoint ENDPOINT runs: status, config, variants and instances, version, autoscaling."""
    use_aws(aws_endpoint, region)
    from botocore.exceptions import BotoCoreError, ClientError

    from aimass.deploy.status import endpoint_report
    from aimass.errors import AimassError

    try:
        report = endpoint_report(endpoint_name)
    except (AimassError, ClientError, BotoCoreError) as error:
        raise _refused(error) from error
    if as_json:
        return show_json(report)
    colour = "green" if report.status == "InService" else "yellow"
    console.print(
        f"[bold]{report.endpoint}[/bold]: [{colour}]{report.status}[/{colour}], config {report.config}"
    )
    if report.failure_reason:
        print_error(f"  {report.failure_reason}")
    if report.pending:
        console.print(f"  deploying {report.pending}")
    if report.served:
        served = report.served
        console.print(
            f"  serves {served.get('aimass:model')} v{served.get('aimass:version')} "
            f"(sha256 {served.get('aimass:sha256', '')[:12]}…) from {report.model_data_url}"
        )
    table = Table("variant", "instance type", "instances (current/desired)", "weight", "image")
    for variant in report.variants:
        table.add_row(
            variant.name,
            variant.instance_type or "",
            f"{variant.current_instances}/{variant.desired_instances}",
            "" if variant.weight is None else f"{variant.weight:g}",
            variant.image or "",
        )
    console.print(table)
    capture = report.capture or {}
    if capture.get("EnableCapture"):
        percent = capture.get("CurrentSamplingPercentage", capture.get("InitialSamplingPercentage"))
        inputs = any(option.get("CaptureMode") == "Input" for option in capture.get("CaptureOptions", []))
        console.print(f"  capture {percent} % ({_captured(inputs)}) → {capture.get('DestinationS3Uri')}")
    else:
        console.print("  capture off")
    if report.autoscaling:
        scaling = report.autoscaling
        target = (
            f", target {scaling.target_invocations:g} invocations/instance/min"
            if scaling.target_invocations
            else ""
        )
        console.print(f"  autoscaling {scaling.min_instances} to {scaling.max_instances} instances{target}")
    else:
        console.print("  autoscaling not registered")
    if report.last_deployment and report.last_deployment.get("BlueGreenUpdatePolicy"):
        console.print(f"  last update {_shifting(report.last_deployment)}")


@app.command("autoscale")
def gpu_autoscale(
    endpoint_name: Annotated[str, typer.Argument(metavar="ENDPOINT", help="the SageMaker endpoint")],
    min_instances: MinInstances = 1,
    max_instances: MaxInstances = 4,
    target_invocations: TargetInvocations = GPU_TARGET_INVOCATIONS,
    scale_in_cooldown_s: ScaleInCooldown = 900,
    scale_out_cooldown_s: ScaleOutCooldown = 300,
    aws_endpoint: AwsEndpoint = None,
    region: Region = "us-east-1",
    as_json: AsJson = False,
) -> None:
    """Register (or change) the autoscaling of ENDPOINT's variant `primary`."""
    use_aws(aws_endpoint, region)
    from botocore.exceptions import BotoCoreError, ClientError

    from aimass.deploy.autoscaling import register_scaling
    from aimass.deploy.request import DeployRequest, Scaling, check_request
    from aimass.errors import AimassError

    scaling = Scaling(
        min_instances, max_instances, target_invocations, scale_in_cooldown_s, scale_out_cooldown_s
    )
    try:
        check_request(DeployRequest(scaling=scaling))
        registered = register_scaling(endpoint_name, scaling)
    except (AimassError, ClientError, BotoCoreError) as error:
        raise _refused(error) from error
    if as_json:
        return show_json(registered)
    console.print(
        f"{endpoint_name}: autoscaling {registered.min_instances} to {registered.max_instances} instances at "
        f"{registered.target_invocations:g} invocations/instance/min"
    )
