"""Creating or updating the endpoint: the plan (every check, nothing changed), the SageMaker Model
and EndpointConfig, CreateEndpoint or a blue/green UpdateEndpoint with guardrails, the wait, and
autoscaling once it is InService."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aimass import artifacts, aws
from aimass.contracts.registry import ModelVersion
from aimass.deploy.autoscaling import Autoscaling, deregister_scaling, register_scaling, registered_scaling
from aimass.deploy.package import Package, package
from aimass.deploy.request import (
    PROVISIONING_MARGIN_S,
    VARIANT,
    DeployRefused,
    DeployRequest,
    Traffic,
    check_request,
    target_endpoint,
)
from aimass.errors import AimassError, BadRequest, Conflict, field_error
from aimass.privacy import personal_features

CAPTURE_PREFIX = "capture/_endpoints/"
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
# SageMaker's names (models, endpoint configs, endpoints): letters, digits and dashes, at most 63.
NAME_MAX = 63
_NOT_NAME = re.compile(r"[^a-zA-Z0-9]+")
# The container's start-up may take 20 minutes (TensorRT builds its engines on an instance's first load).
STARTUP_HEALTH_CHECK_S = 1200

ENDPOINT_DONE = frozenset({"InService", "Failed", "UpdateRollbackFailed", "OutOfService"})


class DeployFailed(AimassError):
    """SageMaker did not bring the endpoint to InService (failed, or still busy when the wait ended)."""

    status = 502
    code = "deploy_failed"


@dataclass
class Deployment:
    endpoint: str
    action: Literal["created", "updated"]
    model_name: str
    endpoint_config: str
    package: Package
    image: str
    role_arn: str
    instance_type: str
    instance_count: int
    # Kept from the running fleet (autoscaling's count) rather than instance_count.
    instance_count_retained: bool
    capture_percent: int
    # False: SageMaker captures the answers only (the requests carry personal features).
    capture_inputs: bool
    # What a rollback goes back to: the config the endpoint ran before this deployment.
    previous_config: str | None
    deployment_config: dict[str, Any] | None
    status: str
    rolled_back: bool = False
    failure_reason: str | None = None
    autoscaling: Autoscaling | None = None
    notes: list[str] = field(default_factory=list)


class Progress(Protocol):
    def step(self, text: str) -> None:
        """A step is done."""

    def waiting(self, text: str) -> None:
        """Where the endpoint is, while waiting for it."""


class Quiet:
    def step(self, text: str) -> None:
        pass

    def waiting(self, text: str) -> None:
        pass


def resource_name(endpoint: str, model: str, version: int, suffix: str) -> str:
    """`<endpoint>-<model>-v<version>-<suffix>` within SageMaker's 63 characters: the endpoint and
    model are cut when they must be, the version and suffix never are."""
    tail = f"-v{version}-{suffix}"
    head = f"{endpoint}-{_NOT_NAME.sub('-', model).strip('-')}"[: NAME_MAX - len(tail)].rstrip("-")
    return head + tail


def deployment_config(traffic: Traffic, fleet: int) -> dict[str, Any]:
    """UpdateEndpoint's DeploymentConfig: blue/green with canary or linear shifting over a new fleet
    of `fleet` instances, and the alarms that roll it back. SageMaker takes a canary (or a linear
    step) of at most half the fleet: a fleet of one instance moves all at once, then bakes."""
    routing: dict[str, Any] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": traffic.wait_interval_s}
    if fleet >= 2:
        size = {"Type": "CAPACITY_PERCENT", "Value": traffic.step_percent}
        routing["Type"] = traffic.mode.upper()
        routing["CanarySize" if traffic.mode == "canary" else "LinearStepSize"] = size
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": traffic.termination_wait_s,
            "MaximumExecutionTimeoutInSeconds": traffic.max_execution(),
        }
    }
    if traffic.alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in traffic.alarms]}
    return config


def capture_config(bucket: str, percent: int, inputs: bool = True) -> dict[str, Any]:
    """SageMaker's own capture of the endpoint's traffic: the requests (`inputs`) and the answers."""
    modes = ["Input", "Output"] if inputs else ["Output"]
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": percent,
        "DestinationS3Uri": f"s3://{bucket}/{CAPTURE_PREFIX}",
        "CaptureOptions": [{"CaptureMode": mode} for mode in modes],
        # JSON bodies are captured as text; .npy/.npz ones (what aimass's API sends) base64-encoded.
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }


def _code(error: Exception) -> tuple[str, str]:
    response = getattr(error, "response", None) or {}
    problem = response.get("Error", {})
    return str(problem.get("Code", "")), str(problem.get("Message", ""))


def describe_endpoint(endpoint: str) -> dict[str, Any] | None:
    """DescribeEndpoint's answer, or None when there is no such endpoint."""
    from botocore.exceptions import ClientError

    try:
        return dict(aws.client("sagemaker").describe_endpoint(EndpointName=endpoint))
    except ClientError as error:
        code, message = _code(error)
        if code == "ValidationException" and "could not find" in message.lower():
            return None
        raise


def missing_alarms(names: tuple[str, ...]) -> list[str]:
    if not names:
        return []
    found = aws.client("cloudwatch").describe_alarms(
        AlarmNames=list(names), AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    )
    known = {a["AlarmName"] for kind in ("MetricAlarms", "CompositeAlarms") for a in found.get(kind, [])}
    return [name for name in names if name not in known]


def wait_for_endpoint(
    endpoint: str,
    timeout_s: float,
    poll_s: float,
    progress: Progress,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """DescribeEndpoint's answer once the endpoint is no longer Creating, Updating or RollingBack;
    DeployFailed when that takes longer than `timeout_s`."""
    started = clock()
    while True:
        described = describe_endpoint(endpoint)
        if described is None:
            raise DeployFailed(f"endpoint {endpoint} disappeared while deploying")
        status = described["EndpointStatus"]
        elapsed = clock() - started
        progress.waiting(f"{endpoint}: {status}{_pending(described)} ({elapsed:.0f} s)")
        if status in ENDPOINT_DONE:
            return described
        if elapsed >= timeout_s:
            raise DeployFailed(
                f"endpoint {endpoint} is still {status} after {elapsed:.0f} s; SageMaker carries on: "
                f"follow it with `aimass gpu status {endpoint}`"
            )
        sleep(min(poll_s, max(timeout_s - elapsed, 0.0)))


def _pending(described: dict[str, Any]) -> str:
    """The new fleet's variant statuses during a blue/green deployment, e.g. ` (primary: Baking)`."""
    pending = described.get("PendingDeploymentSummary") or {}
    states = [
        f"{v['VariantName']}: " + ", ".join(s["Status"] for s in v.get("VariantStatus", []))
        for v in pending.get("ProductionVariants", [])
        if v.get("VariantStatus")
    ]
    return f" ({'; '.join(states)})" if states else ""


@dataclass(frozen=True)
class Running:
    """The endpoint as it runs now, as far as a deployment needs it."""

    config: str
    instance_type: str | None
    desired_count: int | None
    image: str | None
    role_arn: str | None
    autoscaling: Autoscaling | None


def running(endpoint: str, described: dict[str, Any]) -> Running:
    """What a blue/green update starts from; refused unless the endpoint is InService with the one
    variant `primary` (an update must keep the variant's name)."""
    status = described["EndpointStatus"]
    if status != "InService":
        reason = f" ({described['FailureReason']})" if described.get("FailureReason") else ""
        then = (
            "SageMaker only deletes a failed endpoint: delete it, then deploy again"
            if status == "Failed"
            else "it can be updated once it is InService"
        )
        raise Conflict(
            f"endpoint {endpoint} is {status}{reason}: {then}",
            [field_error(["endpoint"], status, "not_in_service")],
        )
    variants = [v["VariantName"] for v in described.get("ProductionVariants", [])]
    if variants != [VARIANT]:
        raise DeployRefused(
            f"endpoint {endpoint} has the variants {', '.join(variants) or 'none'}; a blue/green update "
            f"keeps the variant's name, and this tool deploys the one variant {VARIANT!r}",
            [field_error(["endpoint"], "variants differ", "variants")],
        )
    sagemaker = aws.client("sagemaker")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    variant = next(v for v in config["ProductionVariants"] if v["VariantName"] == VARIANT)
    model = describe_model(variant["ModelName"]) if variant.get("ModelName") else {}
    desired = described["ProductionVariants"][0].get("DesiredInstanceCount")
    return Running(
        config=described["EndpointConfigName"],
        instance_type=variant.get("InstanceType"),
        desired_count=desired if desired is not None else variant.get("InitialInstanceCount"),
        image=(model.get("PrimaryContainer") or {}).get("Image"),
        role_arn=model.get("ExecutionRoleArn"),
        autoscaling=registered_scaling(endpoint),
    )


def describe_model(name: str) -> dict[str, Any]:
    """DescribeModel's answer, or nothing for a model deleted since (its image and role are then
    asked for)."""
    from botocore.exceptions import ClientError

    try:
        return dict(aws.client("sagemaker").describe_model(ModelName=name))
    except ClientError as error:
        if _code(error)[0] == "ValidationException":
            return {}
        raise


@dataclass(frozen=True)
class Plan:
    """A deployment with every check passed: what will be created, and how the endpoint changes."""

    version: ModelVersion
    request: DeployRequest
    endpoint: str
    current: Running | None
    image: str
    role_arn: str
    instance_type: str
    instance_count: int
    # An update on the same instance type, with no count given: the running fleet's size carries over.
    retain_count: bool
    # An update to another instance type of an autoscaled variant: autoscaling comes off first.
    deregister: bool
    # False where the requests carry personal features: SageMaker would keep their values as sent.
    capture_inputs: bool
    notes: tuple[str, ...]


def capture_notes(personal: list[str], capture_percent: int) -> list[str]:
    """What a deployment says of SageMaker's capture of a version whose requests carry `personal`
    features: its answers only."""
    if not personal or not capture_percent:
        return []
    return [
        f"SageMaker captures the answers only: the requests carry personal features ({', '.join(personal)}), "
        "whose values its capture would keep as sent; aimass's own capture keeps each request, masked"
    ]


def plan(version: ModelVersion, request: DeployRequest) -> Plan:
    """Every check, reading and changing nothing but what it must read: the version, the options,
    the endpoint as it runs, the alarms."""
    endpoint = target_endpoint(version, request.endpoint, request.force)
    check_request(request)
    described = describe_endpoint(endpoint)
    current = running(endpoint, described) if described else None
    image = request.image or (current.image if current else None)
    role_arn = request.role_arn or (current.role_arn if current else None)
    missing = [name for name, value in (("image", image), ("role_arn", role_arn)) if not value]
    if missing or not image or not role_arn:
        wanted = {
            "image": "the inference image's URI (--image)",
            "role_arn": "the execution role's ARN (--role-arn)",
        }
        why = (
            f"the model endpoint {endpoint} runs no longer exists: deploying to it takes "
            if current
            else f"endpoint {endpoint} does not exist yet: creating it takes "
        )
        raise BadRequest(
            why + " and ".join(wanted[m] for m in missing),
            [field_error([m], "required for a new endpoint", "missing") for m in missing],
        )
    instance_type = (
        request.instance_type or (current.instance_type if current else None) or DEFAULT_INSTANCE_TYPE
    )
    scaling = request.scaling
    if request.instance_count is not None:
        instance_count = request.instance_count
    elif current is not None and current.desired_count:
        # As many instances as run now (autoscaling's count), within the new bounds.
        instance_count = min(max(current.desired_count, scaling.min_instances), scaling.max_instances)
    else:
        instance_count = scaling.min_instances
    type_changed = current is not None and current.instance_type != instance_type
    deregister = bool(current and current.autoscaling and type_changed)
    if deregister and not request.wait:
        raise BadRequest(
            f"changing {endpoint}'s instance type to {instance_type} takes its autoscaling off for the "
            "update (SageMaker refuses the update otherwise): deploy with waiting, so that it is put back",
            [field_error(["wait"], "needed to change the instance type", "needs_wait")],
        )
    personal = sorted(personal_features(version.signature, request.quality_policy))
    notes = capture_notes(personal, request.capture_percent)
    if current is not None:
        absent = missing_alarms(request.traffic.alarms)
        if absent:
            raise BadRequest(
                f"rollback alarm(s) {', '.join(absent)} do not exist: the deployment would have nothing "
                "to roll back on",
                [field_error(["rollback_alarm"], f"{name} not found", "not_found") for name in absent],
            )
        if not request.traffic.alarms:
            notes.append(
                "no rollback alarms: traffic shifts step by step, but nothing rolls it back by itself"
            )
        if instance_count < 2:
            notes.append(
                f"one instance: a {request.traffic.mode} would be the whole fleet, so traffic moves all at "
                "once, then bakes under the alarms (min-instances 2 or more gives a canary)"
            )
    elif request.traffic.alarms:
        notes.append("rollback alarms apply to updates: a new endpoint has no fleet to roll back to")
    return Plan(
        version=version,
        request=request,
        endpoint=endpoint,
        current=current,
        image=image,
        role_arn=role_arn,
        instance_type=instance_type,
        instance_count=instance_count,
        retain_count=current is not None and not type_changed and request.instance_count is None,
        deregister=deregister,
        capture_inputs=not personal,
        notes=tuple(notes),
    )


def create_resources(planned: Plan, packaged: Package, suffix: str) -> str:
    """The SageMaker Model and EndpointConfig of a deployment (one name for both)."""
    version, request = planned.version, planned.request
    name = resource_name(planned.endpoint, version.name, version.version, suffix)
    bucket, _ = artifacts.parse_uri(packaged.uri)
    tags = [
        {"Key": "aimass:model", "Value": version.name},
        {"Key": "aimass:version", "Value": str(version.version)},
        {"Key": "aimass:sha256", "Value": version.sha256},
    ]
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": planned.image,
            "ModelDataUrl": packaged.uri,
            "Mode": "SingleModel",
            # The top-level model.onnx is served under the model's name (X-Aimass-Model, /stats).
            "Environment": {
                "AIMASS_GPU_DEFAULT_MODEL_NAME": version.name,
                "AIMASS_GPU_PRODUCTION_VARIANT": VARIANT,
            },
        },
        ExecutionRoleArn=planned.role_arn,
        # As the template's GpuModel: SageMaker fetches the model and captures traffic outside the
        # container, which needs no network.
        EnableNetworkIsolation=True,
        Tags=tags,
    )
    config: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {
                "VariantName": VARIANT,
                "ModelName": name,
                "InstanceType": planned.instance_type,
                "InitialInstanceCount": planned.instance_count,
                "InitialVariantWeight": 1.0,
                "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_HEALTH_CHECK_S,
            }
        ],
        "Tags": tags,
    }
    if request.capture_percent:
        config["DataCaptureConfig"] = capture_config(bucket, request.capture_percent, planned.capture_inputs)
    sagemaker.create_endpoint_config(**config)
    return name


def update_request(planned: Plan, config: str) -> dict[str, Any]:
    """UpdateEndpoint's parameters: the new config, blue/green with guardrails."""
    update: dict[str, Any] = {
        "EndpointName": planned.endpoint,
        "EndpointConfigName": config,
        "DeploymentConfig": deployment_config(planned.request.traffic, planned.instance_count),
        "RetainAllVariantProperties": planned.retain_count,
    }
    if planned.retain_count:
        # The running fleet's size (autoscaling's) and weight carry over; capture follows the new config.
        update["ExcludeRetainedVariantProperties"] = [{"VariantPropertyType": "DataCaptureConfig"}]
    return update


def deploy(
    version: ModelVersion,
    request: DeployRequest,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Deployment:
    """Deploy `version` to its endpoint: create it, or update it blue/green with guardrails; wait for
    it (unless asked not to) and register its autoscaling."""
    progress = progress or Quiet()
    planned = plan(version, request)
    endpoint, current = planned.endpoint, planned.current
    kind = "an update" if current else "a new endpoint"
    progress.step(f"checked {version.name} v{version.version} for {endpoint} ({kind})")

    packaged = package(version, request.batching)
    progress.step(f"packaged {packaged.uri} ({packaged.size_bytes:,} bytes, sha256 {packaged.sha256[:12]}…)")
    name = create_resources(planned, packaged, secrets.token_hex(4))
    progress.step(
        f"model and endpoint config {name}: {VARIANT} {planned.instance_type} x{planned.instance_count}"
    )

    result = Deployment(
        endpoint=endpoint,
        action="updated" if current else "created",
        model_name=name,
        endpoint_config=name,
        package=packaged,
        image=planned.image,
        role_arn=planned.role_arn,
        instance_type=planned.instance_type,
        instance_count=planned.instance_count,
        instance_count_retained=planned.retain_count,
        capture_percent=request.capture_percent,
        capture_inputs=planned.capture_inputs,
        previous_config=current.config if current else None,
        deployment_config=deployment_config(request.traffic, planned.instance_count) if current else None,
        status="Updating" if current else "Creating",
        notes=list(planned.notes),
    )
    if current is None:
        aws.client("sagemaker").create_endpoint(EndpointName=endpoint, EndpointConfigName=name)
        progress.step(f"creating endpoint {endpoint}")
    else:
        if planned.deregister:
            deregister_scaling(endpoint)
            result.notes.append(
                f"autoscaling taken off for the instance type change ({current.instance_type} → "
                f"{planned.instance_type}), as SageMaker requires, and put back after it"
            )
            progress.step(f"autoscaling of {endpoint} taken off for the instance type change")
        try:
            aws.client("sagemaker").update_endpoint(**update_request(planned, name))
        except Exception:
            if planned.deregister:
                register_scaling(endpoint, request.scaling)
            raise
        progress.step(f"updating {endpoint} blue/green from {current.config}")

    if not request.wait:
        result.notes.append(
            f"not waited for: once {endpoint} is InService, register its autoscaling with "
            f"`aimass gpu autoscale {endpoint}`"
        )
        return result
    timeout = request.timeout_s or (
        request.traffic.max_execution() + PROVISIONING_MARGIN_S if current else 2 * PROVISIONING_MARGIN_S
    )
    try:
        final = wait_for_endpoint(endpoint, timeout, request.poll_s, progress, sleep, clock)
    except DeployFailed as error:
        if planned.deregister:
            error.message += (
                f"; its autoscaling is off: once it is InService, `aimass gpu autoscale {endpoint}`"
            )
        raise
    result.status, result.failure_reason = final["EndpointStatus"], final.get("FailureReason")
    if result.status != "InService":
        raise DeployFailed(
            f"endpoint {endpoint} is {result.status}"
            + (f": {result.failure_reason}" if result.failure_reason else "")
            + (f"; it ran {current.config} before" if current else ""),
            [field_error(["endpoint"], result.status, "endpoint_failed")],
        )
    result.rolled_back = final["EndpointConfigName"] != name
    if result.rolled_back:
        progress.step(f"{endpoint} rolled back to {final['EndpointConfigName']}")
    else:
        progress.step(f"{endpoint} InService on {name}")
    result.autoscaling = register_scaling(endpoint, request.scaling)
    progress.step(
        f"autoscaling {request.scaling.min_instances} to {request.scaling.max_instances} instances at "
        f"{request.scaling.target_invocations:g} invocations/instance/min"
    )
    return result
