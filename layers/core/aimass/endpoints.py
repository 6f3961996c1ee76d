"""Deploying a registered version to a SageMaker real-time endpoint that runs gpu_endpoints/
(docs/gpu.md, "Deploying a version to an endpoint").

One deployment, in order, and nothing touched until every check has passed:
1. checks: the version runs on SageMaker, the endpoint is the version's own (unless forced), the
   options are within what SageMaker takes, an existing endpoint is InService with the one variant
   `primary`, the rollback alarms exist, the image and role are known;
2. the package: the version's ONNX bytes (checked against their registered sha256) and a
   `config.json` for the server, as `model.tar.gz` with the single-model layout at its root, under
   `models/<name>/<version>/sagemaker/`;
3. a SageMaker Model and an EndpointConfig (variant `primary`, data capture to `capture/_endpoints/`),
   named after the endpoint, model and version with a short unique suffix;
4. CreateEndpoint for a new endpoint; otherwise UpdateEndpoint, a blue/green deployment with
   SageMaker's guardrails: canary or linear traffic shifting, baking between steps, and automatic
   rollback when one of the given CloudWatch alarms fires;
5. a bounded wait for InService (or for the rollback), with progress reports;
6. autoscaling: the variant registered as a scalable target with a target-tracking policy on
   SageMakerVariantInvocationsPerInstance.

Autoscaling and updates (AWS, "Update endpoints that use auto scaling"): UpdateEndpoint fails when it
would change the instance type of a variant registered for autoscaling; changing only the model is
allowed. So the registration stays in place for a new model on the same instance type, and is taken
off (policies deleted, target deregistered) before an update that changes the instance type, then put
back once the endpoint is InService again, whether the new fleet stayed or was rolled back.

Clients come from aimass.aws; the boto3 calls are written here rather than through the `sagemaker`
SDK, whose update path cannot send a DeploymentConfig and which has no autoscaling calls (docs/gpu.md
has the measurements).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import secrets
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aimass import artifacts, aws
from aimass.contracts import ENDPOINT_NAME_PATTERN, ModelVersion
from aimass.errors import AimassError, BadRequest, Conflict, NotFound, field_error

VARIANT = "primary"
CAPTURE_PREFIX = "capture/_endpoints/"
PACKAGE_KEY = "sagemaker/model.tar.gz"
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
# SageMaker's names (models, endpoint configs, endpoints): letters, digits and dashes, at most 63.
NAME_MAX = 63
_NOT_NAME = re.compile(r"[^a-zA-Z0-9]+")

SCALING_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"


def scaling_policy(endpoint: str) -> str:
    """The target-tracking policy's name: the template's own (GpuScalingPolicy), so that a deploy
    updates the stack's policy instead of adding a second one."""
    return f"{endpoint}-invocations-per-instance"


# What SageMaker takes (the UpdateEndpoint API reference and the deployment guardrails guide).
WAIT_INTERVAL_MAX_S = 3600
TERMINATION_WAIT_MAX_S = 3600
MAX_EXECUTION_RANGE_S = (600, 28_800)
CANARY_PERCENT_RANGE = (1, 50)  # "less than or equal to 50% of the new fleet's capacity"
LINEAR_PERCENT_RANGE = (10, 50)  # "must be 10-50% of the variant's total instance count"
MAX_ALARMS = 10
# Time given to SageMaker beyond the traffic-shifting waits: provisioning the green fleet (GPU
# instances, pulling the image, the model's download) and the container's start, which the health
# check allows 20 minutes (TensorRT builds its engines when an instance first loads the model).
PROVISIONING_MARGIN_S = 3600
STARTUP_HEALTH_CHECK_S = 1200

ENDPOINT_DONE = frozenset({"InService", "Failed", "UpdateRollbackFailed", "OutOfService"})


class DeployRefused(Conflict):
    """The version, the endpoint or the request is not one this tool deploys; nothing was changed."""

    code = "deploy_refused"


class DeployFailed(AimassError):
    """SageMaker did not bring the endpoint to InService (failed, or still busy when the wait ended)."""

    status = 502
    code = "deploy_failed"


# --- What a deployment is asked for ---------------------------------------------------------------


@dataclass(frozen=True)
class Batching:
    """The server's dynamic batching for this model: config.json's keys (gpu_endpoints/README.md)."""

    enabled: bool = True
    max_batch_size: int = 32
    max_queue_delay_ms: float = 5.0
    memory_mb: float | None = None


@dataclass(frozen=True)
class Traffic:
    """How UpdateEndpoint shifts traffic to the new (green) fleet and what rolls it back."""

    mode: Literal["canary", "linear"] = "canary"
    # The canary's size, or each linear step's, as a percentage of the green fleet's capacity.
    step_percent: int = 10
    wait_interval_s: int = 600
    termination_wait_s: int = 600
    # None: the waits plus PROVISIONING_MARGIN_S, within SageMaker's range.
    max_execution_s: int | None = None
    alarms: tuple[str, ...] = ()

    def steps(self) -> int:
        return 1 if self.mode == "canary" else math.ceil(100 / self.step_percent)

    def waiting_s(self) -> int:
        """The time SageMaker spends waiting on purpose: baking after each step, then the final wait."""
        return self.steps() * self.wait_interval_s + self.termination_wait_s

    def max_execution(self) -> int:
        if self.max_execution_s is not None:
            return self.max_execution_s
        low, high = MAX_EXECUTION_RANGE_S
        return min(max(self.waiting_s() + PROVISIONING_MARGIN_S, low), high)


@dataclass(frozen=True)
class Scaling:
    """Target tracking on invocations per instance per minute, between min and max instances."""

    min_instances: int = 1
    max_instances: int = 4
    target_invocations: float = 6000.0
    # The template's: a GPU instance takes minutes to serve, and is slow to get back once given up.
    scale_in_cooldown_s: int = 900
    scale_out_cooldown_s: int = 300


@dataclass(frozen=True)
class DeployRequest:
    """None means: as the endpoint runs now, or the default for a new endpoint."""

    image: str | None = None
    role_arn: str | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    endpoint: str | None = None
    force: bool = False
    capture_percent: int = 10
    batching: Batching = field(default_factory=Batching)
    traffic: Traffic = field(default_factory=Traffic)
    scaling: Scaling = field(default_factory=Scaling)
    wait: bool = True
    # None: the deployment's own limit (max execution) plus PROVISIONING_MARGIN_S for a rollback.
    timeout_s: float | None = None
    poll_s: float = 15.0


# --- What it did -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    uri: str
    sha256: str
    size_bytes: int
    config: dict[str, Any]


@dataclass(frozen=True)
class Autoscaling:
    min_instances: int
    max_instances: int
    target_invocations: float | None
    policy: str | None


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


# --- Pure parts -------------------------------------------------------------------------------------


def target_endpoint(version: ModelVersion, requested: str | None, force: bool) -> str:
    """The endpoint to deploy `version` to: its backend's, or `requested` when forced."""
    backend = version.runs_on
    label = f"{version.name} v{version.version}"
    if backend.kind != "sagemaker" or backend.endpoint is None:
        raise DeployRefused(
            f"{label} runs on {version.backend}, not on a SageMaker endpoint: register the version "
            "with backend sagemaker:<endpoint> to deploy it to one",
            [field_error(["backend"], f"is {version.backend!r}", "not_sagemaker")],
        )
    if backend.target_model:
        raise DeployRefused(
            f"{label} is a target model ({backend.target_model}) of the multi-model endpoint "
            f"{backend.endpoint}: this tool deploys single-model endpoints; copy the package under "
            "the endpoint's model prefix instead",
            [field_error(["backend"], "a multi-model target", "multi_model")],
        )
    if requested is None or requested == backend.endpoint:
        return backend.endpoint
    if not re.fullmatch(ENDPOINT_NAME_PATTERN, requested):
        raise BadRequest(
            f"{requested!r} is not a SageMaker endpoint name",
            [field_error(["endpoint"], "letters, digits and dashes, at most 63", "pattern")],
        )
    if not force:
        raise DeployRefused(
            f"{label} is registered to run on {backend.endpoint}, not {requested}: the API would "
            f"send its requests to {backend.endpoint}. Deploy there, or force it (e.g. to try the "
            "version on a staging endpoint)",
            [field_error(["endpoint"], f"differs from the backend's {backend.endpoint}", "mismatch")],
        )
    return requested


def check_request(request: DeployRequest) -> None:
    """Every option within SageMaker's and the server's limits, before anything is touched."""
    problems: list[dict[str, Any]] = []

    def bad(loc: str, message: str) -> None:
        problems.append(field_error([loc], message, "value_error"))

    traffic, scaling, batching = request.traffic, request.scaling, request.batching
    low, high = CANARY_PERCENT_RANGE if traffic.mode == "canary" else LINEAR_PERCENT_RANGE
    if not low <= traffic.step_percent <= high:
        bad(f"{traffic.mode}_percent", f"must be {low} to {high} (% of the new fleet)")
    if not 0 <= traffic.wait_interval_s <= WAIT_INTERVAL_MAX_S:
        bad("wait_interval_s", f"must be 0 to {WAIT_INTERVAL_MAX_S}")
    if not 0 <= traffic.termination_wait_s <= TERMINATION_WAIT_MAX_S:
        bad("termination_wait_s", f"must be 0 to {TERMINATION_WAIT_MAX_S}")
    low, high = MAX_EXECUTION_RANGE_S
    if not low <= traffic.max_execution() <= high:
        bad("max_execution_s", f"must be {low} to {high}")
    elif traffic.max_execution() <= traffic.waiting_s():
        bad(
            "max_execution_s",
            f"must be more than the deployment's waits ({traffic.waiting_s()} s), and leave time to "
            "provision the new fleet",
        )
    if len(traffic.alarms) > MAX_ALARMS:
        bad("rollback_alarm", f"at most {MAX_ALARMS} alarms")
    if len(set(traffic.alarms)) != len(traffic.alarms) or not all(a.strip() for a in traffic.alarms):
        bad("rollback_alarm", "alarm names must be distinct and not empty")
    if scaling.min_instances < 1:
        bad("min_instances", "must be at least 1 (a real-time variant does not scale to zero)")
    if scaling.max_instances < scaling.min_instances:
        bad("max_instances", f"must be at least min_instances ({scaling.min_instances})")
    if scaling.target_invocations <= 0:
        bad("target_invocations", "must be more than 0 (invocations per instance per minute)")
    if scaling.scale_in_cooldown_s < 0 or scaling.scale_out_cooldown_s < 0:
        bad("cooldown", "must be 0 or more seconds")
    if request.instance_count is not None and not (
        scaling.min_instances <= request.instance_count <= scaling.max_instances
    ):
        bad(
            "instance_count",
            f"must lie within autoscaling's {scaling.min_instances} to {scaling.max_instances} instances",
        )
    if request.instance_type is not None and not re.fullmatch(
        r"ml\.[a-z0-9-]+\.[a-z0-9]+", request.instance_type
    ):
        bad("instance_type", "a SageMaker instance type, e.g. ml.g5.xlarge")
    if not 0 <= request.capture_percent <= 100:
        bad("capture_percent", "must be 0 (no capture) to 100")
    if batching.max_batch_size < 1:
        bad("max_batch_size", "must be at least 1")
    if batching.max_queue_delay_ms < 0:
        bad("max_queue_delay_ms", "must be 0 or more")
    if batching.memory_mb is not None and batching.memory_mb <= 0:
        bad("memory_mb", "must be more than 0")
    if request.timeout_s is not None and request.timeout_s <= 0:
        bad("timeout_s", "must be more than 0")
    if problems:
        raise BadRequest(
            "the deployment's options are out of range: "
            + "; ".join(f"{p['loc'][0]} {p['message']}" for p in problems),
            problems,
        )


def model_config(version: ModelVersion, batching: Batching) -> dict[str, Any]:
    """The server's config.json for this version: batching, and the feature names if it has any."""
    config: dict[str, Any] = {
        "batching": batching.enabled,
        "max_batch_size": batching.max_batch_size,
        "max_queue_delay_ms": batching.max_queue_delay_ms,
    }
    if version.signature.features:
        config["features"] = [f.name for f in version.signature.features]
    if batching.memory_mb is not None:
        config["memory_mb"] = batching.memory_mb
    return config


def archive(onnx: bytes, config: dict[str, Any]) -> bytes:
    """`model.tar.gz` with model.onnx and config.json at its root, which SageMaker extracts into
    /opt/ml/model. The same inputs give the same bytes (no times, owners or names of this machine)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in (("model.onnx", onnx), ("config.json", json.dumps(config, indent=2).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


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


def capture_config(bucket: str, percent: int) -> dict[str, Any]:
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": percent,
        "DestinationS3Uri": f"s3://{bucket}/{CAPTURE_PREFIX}",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        # JSON bodies are captured as text; .npy/.npz ones (what aimass's API sends) base64-encoded.
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }


def scaling_resource(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT}"


# --- AWS --------------------------------------------------------------------------------------------


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


def package(version: ModelVersion, batching: Batching) -> Package:
    """The version's checked ONNX bytes and its config.json as model.tar.gz, uploaded next to them."""
    onnx = artifacts.verified(version.artifact_uri, version.sha256)
    config = model_config(version, batching)
    data = archive(onnx, config)
    bucket, _ = artifacts.parse_uri(version.artifact_uri)
    key = artifacts.version_prefix(version.name, version.version) + PACKAGE_KEY
    uri = artifacts.put(bucket, key, data, "application/gzip")
    return Package(uri, artifacts.sha256(data), len(data), config)


def missing_alarms(names: tuple[str, ...]) -> list[str]:
    if not names:
        return []
    found = aws.client("cloudwatch").describe_alarms(
        AlarmNames=list(names), AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    )
    known = {a["AlarmName"] for kind in ("MetricAlarms", "CompositeAlarms") for a in found.get(kind, [])}
    return [name for name in names if name not in known]


def registered_scaling(endpoint: str) -> Autoscaling | None:
    """The variant's autoscaling registration, or None."""
    scaling = aws.client("application-autoscaling")
    resource = scaling_resource(endpoint)
    targets = scaling.describe_scalable_targets(
        ServiceNamespace=SCALING_NAMESPACE, ResourceIds=[resource], ScalableDimension=SCALABLE_DIMENSION
    )["ScalableTargets"]
    if not targets:
        return None
    policies = scaling.describe_scaling_policies(
        ServiceNamespace=SCALING_NAMESPACE, ResourceId=resource, ScalableDimension=SCALABLE_DIMENSION
    )["ScalingPolicies"]
    tracking = [p for p in policies if p.get("PolicyType") == "TargetTrackingScaling"]
    target = tracking[0]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] if tracking else None
    return Autoscaling(
        int(targets[0]["MinCapacity"]),
        int(targets[0]["MaxCapacity"]),
        None if target is None else float(target),
        tracking[0]["PolicyName"] if tracking else None,
    )


def register_scaling(endpoint: str, scaling: Scaling) -> Autoscaling:
    """The variant as a scalable target between min and max, tracking invocations per instance."""
    client = aws.client("application-autoscaling")
    resource = scaling_resource(endpoint)
    client.register_scalable_target(
        ServiceNamespace=SCALING_NAMESPACE,
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
        MinCapacity=scaling.min_instances,
        MaxCapacity=scaling.max_instances,
    )
    client.put_scaling_policy(
        PolicyName=scaling_policy(endpoint),
        ServiceNamespace=SCALING_NAMESPACE,
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(scaling.target_invocations),
            "PredefinedMetricSpecification": {"PredefinedMetricType": SCALING_METRIC},
            "ScaleInCooldown": scaling.scale_in_cooldown_s,
            "ScaleOutCooldown": scaling.scale_out_cooldown_s,
        },
    )
    return Autoscaling(
        scaling.min_instances, scaling.max_instances, scaling.target_invocations, scaling_policy(endpoint)
    )


def deregister_scaling(endpoint: str) -> None:
    """Every scaling policy of the variant deleted, then the variant deregistered."""
    client = aws.client("application-autoscaling")
    resource = scaling_resource(endpoint)
    policies = client.describe_scaling_policies(
        ServiceNamespace=SCALING_NAMESPACE, ResourceId=resource, ScalableDimension=SCALABLE_DIMENSION
    )["ScalingPolicies"]
    for policy in policies:
        client.delete_scaling_policy(
            PolicyName=policy["PolicyName"],
            ServiceNamespace=SCALING_NAMESPACE,
            ResourceId=resource,
            ScalableDimension=SCALABLE_DIMENSION,
        )
    client.deregister_scalable_target(
        ServiceNamespace=SCALING_NAMESPACE, ResourceId=resource, ScalableDimension=SCALABLE_DIMENSION
    )


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
    model = _model(variant["ModelName"]) if variant.get("ModelName") else {}
    desired = described["ProductionVariants"][0].get("DesiredInstanceCount")
    return Running(
        config=described["EndpointConfigName"],
        instance_type=variant.get("InstanceType"),
        desired_count=desired if desired is not None else variant.get("InitialInstanceCount"),
        image=(model.get("PrimaryContainer") or {}).get("Image"),
        role_arn=model.get("ExecutionRoleArn"),
        autoscaling=registered_scaling(endpoint),
    )


def _model(name: str) -> dict[str, Any]:
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
    notes: tuple[str, ...]


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
    notes: list[str] = []
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
        config["DataCaptureConfig"] = capture_config(bucket, request.capture_percent)
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


# --- Status -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantReport:
    name: str
    instance_type: str | None
    desired_instances: int | None
    current_instances: int | None
    weight: float | None
    image: str | None


@dataclass
class EndpointReport:
    endpoint: str
    status: str
    config: str
    created: str
    modified: str
    variants: list[VariantReport]
    model_name: str | None = None
    served: dict[str, str] = field(default_factory=dict)  # aimass:model, aimass:version, aimass:sha256
    model_data_url: str | None = None
    capture: dict[str, Any] | None = None
    autoscaling: Autoscaling | None = None
    last_deployment: dict[str, Any] | None = None
    pending: str | None = None
    failure_reason: str | None = None


def endpoint_report(endpoint: str) -> EndpointReport:
    """What an endpoint runs now: status, config, variants and instances, the aimass version served,
    capture and autoscaling."""
    described = describe_endpoint(endpoint)
    if described is None:
        raise NotFound(
            f"endpoint {endpoint} does not exist", [field_error(["endpoint"], "not found", "not_found")]
        )
    sagemaker = aws.client("sagemaker")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    configured = {v["VariantName"]: v for v in config["ProductionVariants"]}
    report = EndpointReport(
        endpoint=endpoint,
        status=described["EndpointStatus"],
        config=described["EndpointConfigName"],
        created=str(described.get("CreationTime", "")),
        modified=str(described.get("LastModifiedTime", "")),
        variants=[],
        # DescribeEndpoint's summary (its current sampling) over the config's settings.
        capture={**(config.get("DataCaptureConfig") or {}), **(described.get("DataCaptureConfig") or {})}
        or None,
        last_deployment=described.get("LastDeploymentConfig"),
        pending=(described.get("PendingDeploymentSummary") or {}).get("EndpointConfigName"),
        failure_reason=described.get("FailureReason"),
    )
    model_name = configured.get(VARIANT, {}).get("ModelName")
    model = _model(model_name) if model_name else {}
    container = model.get("PrimaryContainer") or {}
    if model:
        report.model_name = model_name
        report.model_data_url = container.get("ModelDataUrl")
        tags = sagemaker.list_tags(ResourceArn=model["ModelArn"]).get("Tags", [])
        report.served = {t["Key"]: t["Value"] for t in tags if t["Key"].startswith("aimass:")}
    for variant in described.get("ProductionVariants", []):
        spec = configured.get(variant["VariantName"], {})
        # The image the instances run (DeployedImages), else the one the variant's model names.
        images = variant.get("DeployedImages") or []
        image = images[0].get("SpecifiedImage") if images else None
        report.variants.append(
            VariantReport(
                variant["VariantName"],
                spec.get("InstanceType"),
                variant.get("DesiredInstanceCount"),
                variant.get("CurrentInstanceCount"),
                variant.get("CurrentWeight"),
                image or (container.get("Image") if variant["VariantName"] == VARIANT else None),
            )
        )
    report.autoscaling = registered_scaling(endpoint)
    return report
