"""What a deployment is asked for, and the checks made on it before anything is touched: the version
runs on a SageMaker endpoint (its own, unless forced), and every option is within what SageMaker and
the inference server take."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from aimass.capacity import GPU_TARGET_INVOCATIONS
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import ENDPOINT_NAME_PATTERN, ModelVersion
from aimass.errors import BadRequest, Conflict, field_error

# The one production variant this tool deploys, as the template's GpuEndpointConfig.
VARIANT = "primary"

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


class DeployRefused(Conflict):
    """The version, the endpoint or the request is not one this tool deploys; nothing was changed."""

    code = "deploy_refused"


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
    # Measured: aimass.capacity.GPU_TARGET_INVOCATIONS says which measurement (docs/capacity.md).
    target_invocations: float = GPU_TARGET_INVOCATIONS
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
    # The model's quality policy, whose pii_features mark features personal in every version (the
    # version's signature marks its own): SageMaker's capture of a version with any keeps the answers
    # only (aimass.deploy.endpoint.plan).
    quality_policy: QualityPolicy | None = None
    batching: Batching = field(default_factory=Batching)
    traffic: Traffic = field(default_factory=Traffic)
    scaling: Scaling = field(default_factory=Scaling)
    wait: bool = True
    # None: the deployment's own limit (max execution) plus PROVISIONING_MARGIN_S for a rollback.
    timeout_s: float | None = None
    poll_s: float = 15.0


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


# One refusal of check_request: the option and what is wrong with it.
Problem = tuple[str, str]


def check_request(request: DeployRequest) -> None:
    """Every option within SageMaker's and the server's limits, before anything is touched."""
    problems = [
        field_error([option], message, "value_error")
        for option, message in (
            *_traffic_problems(request.traffic),
            *_scaling_problems(request.scaling, request.instance_count),
            *_endpoint_problems(request),
        )
    ]
    if problems:
        raise BadRequest(
            "the deployment's options are out of range: "
            + "; ".join(f"{p['loc'][0]} {p['message']}" for p in problems),
            problems,
        )


def _traffic_problems(traffic: Traffic) -> Iterator[Problem]:
    low, high = CANARY_PERCENT_RANGE if traffic.mode == "canary" else LINEAR_PERCENT_RANGE
    if not low <= traffic.step_percent <= high:
        yield f"{traffic.mode}_percent", f"must be {low} to {high} (% of the new fleet)"
    if not 0 <= traffic.wait_interval_s <= WAIT_INTERVAL_MAX_S:
        yield "wait_interval_s", f"must be 0 to {WAIT_INTERVAL_MAX_S}"
    if not 0 <= traffic.termination_wait_s <= TERMINATION_WAIT_MAX_S:
        yield "termination_wait_s", f"must be 0 to {TERMINATION_WAIT_MAX_S}"
    yield from _execution_problems(traffic)
    if len(traffic.alarms) > MAX_ALARMS:
        yield "rollback_alarm", f"at most {MAX_ALARMS} alarms"
    if len(set(traffic.alarms)) != len(traffic.alarms) or not all(a.strip() for a in traffic.alarms):
        yield "rollback_alarm", "alarm names must be distinct and not empty"


def _execution_problems(traffic: Traffic) -> Iterator[Problem]:
    if traffic.mode == "linear" and traffic.step_percent <= 0:
        return  # no number of steps, so no waits to weigh: the step's own problem is named
    low, high = MAX_EXECUTION_RANGE_S
    if not low <= traffic.max_execution() <= high:
        yield "max_execution_s", f"must be {low} to {high}"
    elif traffic.max_execution() <= traffic.waiting_s():
        yield (
            "max_execution_s",
            f"must be more than the deployment's waits ({traffic.waiting_s()} s), and leave time to "
            "provision the new fleet",
        )


def _scaling_problems(scaling: Scaling, instance_count: int | None) -> Iterator[Problem]:
    if scaling.min_instances < 1:
        yield "min_instances", "must be at least 1 (a real-time variant does not scale to zero)"
    if scaling.max_instances < scaling.min_instances:
        yield "max_instances", f"must be at least min_instances ({scaling.min_instances})"
    if scaling.target_invocations <= 0:
        yield "target_invocations", "must be more than 0 (invocations per instance per minute)"
    if scaling.scale_in_cooldown_s < 0 or scaling.scale_out_cooldown_s < 0:
        yield "cooldown", "must be 0 or more seconds"
    if instance_count is not None and not scaling.min_instances <= instance_count <= scaling.max_instances:
        yield (
            "instance_count",
            f"must lie within autoscaling's {scaling.min_instances} to {scaling.max_instances} instances",
        )


def _endpoint_problems(request: DeployRequest) -> Iterator[Problem]:
    """The instances, the capture and the server's batching."""
    if request.instance_type is not None and not re.fullmatch(
        r"ml\.[a-z0-9-]+\.[a-z0-9]+", request.instance_type
    ):
        yield "instance_type", "a SageMaker instance type, e.g. ml.g5.xlarge"
    if not 0 <= request.capture_percent <= 100:
        yield "capture_percent", "must be 0 (no capture) to 100"
    batching = request.batching
    if batching.max_batch_size < 1:
        yield "max_batch_size", "must be at least 1"
    if batching.max_queue_delay_ms < 0:
        yield "max_queue_delay_ms", "must be 0 or more"
    if batching.memory_mb is not None and batching.memory_mb <= 0:
        yield "memory_mb", "must be more than 0"
    if request.timeout_s is not None and request.timeout_s <= 0:
        yield "timeout_s", "must be more than 0"
