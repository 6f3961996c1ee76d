"""Capacity planning: from a model's measured per-request costs and a request rate, what to deploy
(a Lambda memory size with its reserved and provisioned concurrency or SnapStart, or SageMaker
instances with their autoscaling target) and what each option costs a month (docs/capacity.md).

`plan` is arithmetic on plain data: the costs (measured by `measure`, or recorded), the price
table (PRICES, or one given) and the bounds. Every constant below says where it comes from.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# AWS's month for pricing: 730 hours.
MONTH_S = 730 * 3600
# Lambda gives a function one full vCPU at 1,769 MB and CPU in proportion to memory below that
# (the Lambda developer guide, "Configuring Lambda function memory"). A request's CPU work, measured
# here on one thread (what the service's sessions use), is taken to last that long on one Lambda
# vCPU and 1769/M times as long at M MB; more memory than 1,769 MB makes one request no faster.
FULL_VCPU_MB = 1769
LAMBDA_MEMORY_MB = (128, 256, 512, 1024, 1769, 2048, 3008)
# The predict function imported (functions/online/app.py, onnxruntime, numpy, FastAPI, boto3): max
# RSS 110 MB on Python 3.12 on this machine (`resource.getrusage` after the import). A model takes
# about three times its file size (its bytes, ONNX Runtime's copy of its weights, the arena).
IMPORTED_MB = 110
MODEL_MEMORY_FACTOR = 3
MEMORY_HEADROOM = 1.25
# Lambda's default concurrency quota per account and region.
ACCOUNT_CONCURRENCY = 1000
# Provisioned concurrency is sized for 70 % utilisation (AWS's target tracking example for
# LambdaProvisionedConcurrencyUtilization); reserved concurrency for twice the steady concurrency,
# so that a doubling of traffic is served and a runaway cannot take the account's whole pool.
PROVISIONED_UTILISATION = 0.7
RESERVED_FACTOR = 2.0
# SageMaker autoscaling aims at half what one instance sustains (AWS's safety factor of 0.5 in
# "Load testing your auto scaling configuration").
SAGEMAKER_HEADROOM = 0.5
# The inference server's batching delay (gpu_endpoints, its default), on top of a request's time.
BATCH_DELAY_MS = 5.0


@dataclass(frozen=True)
class Recorded:
    """A figure measured earlier, and the measurement it comes from."""

    value: float
    source: str


# The predict handler's own cost per one-instance request, above the ONNX Runtime floor.
HANDLER_OVERHEAD_P50_MS = Recorded(
    0.167,
    'bench/RESULTS.md "Figures the capacity plans take as recorded": breast-cancer x1, handler p50 '
    "173 µs - floor 6.0 µs (the higher of two runs)",
)
HANDLER_OVERHEAD_P99_MS = Recorded(
    0.299,
    'bench/RESULTS.md "Figures the capacity plans take as recorded": breast-cancer x1, handler p99 '
    "321 µs - floor 22.3 µs (the higher of two runs)",
)
# The inference server's CPU per one-row request (HTTP, payload, batching): its processes' CPU over
# its requests, the clients' apart, through 2 front ends (the template's default) on the light demo,
# whose model costs what a GPU's does, with .npy (the API's own calls send .npz).
SERVER_CPU_MS = Recorded(
    0.170,
    'bench/RESULTS.md "The inference server\'s invocations without Starlette": digits-linear, .npy '
    "x256, 2 front ends, 170 µs of the server's CPU per request",
)
# What one inference server sustained within a p99 of 50 ms: digits-cnn (the heavy demo) at
# concurrency 32, batching on: 1,141 req/s, p99 33.7 ms (at concurrency 64 the p99 was 66.3 ms).
SERVER_SUSTAINED_REQ_S = Recorded(
    1141, "bench/RESULTS.md section 7: digits-cnn x32, batching on, 1,141 req/s at p99 33.7 ms, 2 CPUs"
)


def invocations_per_instance(sustained_req_s: float, headroom: float = SAGEMAKER_HEADROOM) -> int:
    """SageMakerVariantInvocationsPerInstance's target (per instance, per MINUTE): `headroom` of
    what one instance sustains, rounded down to a thousand (to a ten below 1,000)."""
    per_minute = sustained_req_s * headroom * 60
    step = 1000 if per_minute >= 1000 else 10
    return max(1, int(per_minute // step * step))


# The GPU endpoint's default autoscaling target (template.yaml's GpuTargetInvocationsPerInstance,
# `aimass gpu deploy`): half of SERVER_SUSTAINED_REQ_S, per minute. tests/infra checks the template.
GPU_TARGET_INVOCATIONS = invocations_per_instance(SERVER_SUSTAINED_REQ_S.value)


@dataclass(frozen=True)
class Instance:
    name: str
    vcpus: int
    gpu: str | None
    usd_per_hour: float


@dataclass(frozen=True)
class Prices:
    """us-east-1 list prices (docs/capacity.md gives their date and source)."""

    date: str
    source: str
    lambda_request: float  # per request
    lambda_gb_s: float  # on-demand duration, x86, first tier
    provisioned_gb_s: float  # provisioned concurrency, per GB-s configured
    provisioned_duration_gb_s: float  # duration on provisioned concurrency
    snapstart_cache_gb_s: float  # Python: per GB-s a SnapStart version is cached
    snapstart_restore_gb: float  # Python: per GB restored
    http_api_request: float  # API Gateway HTTP API, first 300 M a month
    instances: tuple[Instance, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prices:
        return cls(**{**data, "instances": tuple(Instance(**i) for i in data.get("instances", []))})


# Checked on 2026-12-06 against stored copies of AWS's price data (no live network): the Lambda and
# HTTP API rows agree with AWS's Price List as published 2025-03 to 2026-09; the SageMaker rows could
# not be confirmed (docs/capacity.md, "The price table", gives each row's sources and dates).
PRICES = Prices(
    date="2026-12-06",
    source="us-east-1 on-demand; Lambda and HTTP API rows checked against AWS's Price List "
    "(published 2025-03 to 2026-09); SageMaker real-time rows unconfirmed, from memory of "
    "aws.amazon.com/sagemaker/pricing, 2025-10 (docs/capacity.md)",
    lambda_request=0.20 / 1e6,
    lambda_gb_s=0.0000166667,
    provisioned_gb_s=0.0000041667,
    provisioned_duration_gb_s=0.0000097222,
    snapstart_cache_gb_s=0.0000015046,
    snapstart_restore_gb=0.0001397998,
    http_api_request=1.00 / 1e6,
    instances=(
        Instance("ml.c6i.large", 2, None, 0.102),
        Instance("ml.c6i.xlarge", 4, None, 0.204),
        Instance("ml.c6i.2xlarge", 8, None, 0.408),
        Instance("ml.g4dn.xlarge", 4, "NVIDIA T4", 0.736),
        Instance("ml.g5.xlarge", 4, "NVIDIA A10G", 1.408),
    ),
)


@dataclass(frozen=True)
class Costs:
    """A model's per-request costs in ms on one thread, measured (or given), and its file size."""

    model_p50_ms: float
    model_p99_ms: float
    model_bytes: int
    batch_p50_ms: dict[int, float] = field(default_factory=dict)
    handler_p50_ms: float = HANDLER_OVERHEAD_P50_MS.value
    handler_p99_ms: float = HANDLER_OVERHEAD_P99_MS.value
    server_cpu_ms: float = SERVER_CPU_MS.value
    measured_on: str = ""


@dataclass(frozen=True)
class LambdaOption:
    kind: str  # "lambda", "lambda+provisioned", "lambda+snapstart"
    memory_mb: int
    duration_p50_ms: float
    duration_p99_ms: float
    concurrency: float  # steady: rps x mean duration (Little's law)
    reserved_concurrency: int
    provisioned_concurrency: int
    meets_p99: bool | None
    monthly_usd: float
    breakdown: dict[str, float]
    notes: list[str]


@dataclass(frozen=True)
class SageMakerOption:
    kind: str  # "sagemaker"
    instance_type: str
    gpu: str | None
    instances: int
    per_instance_req_s: float  # what one instance sustains by the measured costs
    invocations_per_instance: int  # autoscaling target, per minute
    p99_ms: float | None  # an estimate; None on a GPU (not measured here)
    meets_p99: bool | None
    monthly_usd: float
    notes: list[str]


@dataclass(frozen=True)
class Plan:
    rps: float
    p99_ms: float | None
    costs: Costs
    prices_date: str
    prices_source: str
    lambda_options: list[LambdaOption]
    sagemaker_options: list[SageMakerOption]
    recommended: str  # the cheapest option that meets the bound (its kind and size)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["costs"]["batch_p50_ms"] = {str(k): v for k, v in self.costs.batch_p50_ms.items()}
        return data


def memory_floor_mb(model_bytes: int) -> float:
    return (IMPORTED_MB + MODEL_MEMORY_FACTOR * model_bytes / 2**20) * MEMORY_HEADROOM


def stretch(memory_mb: int) -> float:
    """How much longer one request's CPU work takes at `memory_mb` than on one full vCPU."""
    return max(1.0, FULL_VCPU_MB / memory_mb)


def _lambda_at(
    memory_mb: int, rps: float, p99_ms: float | None, costs: Costs, prices: Prices
) -> list[LambdaOption]:
    d50 = (costs.model_p50_ms + costs.handler_p50_ms) * stretch(memory_mb)
    d99 = (costs.model_p99_ms + costs.handler_p99_ms) * stretch(memory_mb)
    meets = None if p99_ms is None else d99 <= p99_ms
    requests = rps * MONTH_S
    gb = memory_mb / 1024
    billed_s = math.ceil(d50) / 1000  # Lambda bills duration rounded up to 1 ms
    concurrency = rps * d50 / 1000
    reserved = max(1, math.ceil(RESERVED_FACTOR * concurrency))
    provisioned = max(1, math.ceil(concurrency / PROVISIONED_UTILISATION))
    fees = {"requests": requests * prices.lambda_request, "http_api": requests * prices.http_api_request}
    on_demand = {**fees, "duration": requests * billed_s * gb * prices.lambda_gb_s}
    with_provisioned = {
        **fees,
        "provisioned": provisioned * gb * MONTH_S * prices.provisioned_gb_s,
        "duration": requests * billed_s * gb * prices.provisioned_duration_gb_s,
    }
    with_snapstart = {**on_demand, "snapstart_cache": gb * MONTH_S * prices.snapstart_cache_gb_s}
    quota = (
        [f"reserved concurrency {reserved} exceeds the default account quota of {ACCOUNT_CONCURRENCY}"]
        if reserved > ACCOUNT_CONCURRENCY
        else []
    )
    restore = gb * prices.snapstart_restore_gb
    common = (memory_mb, d50, d99, concurrency, reserved)
    return [
        LambdaOption(
            "lambda",
            *common,
            0,
            meets,
            sum(on_demand.values()),
            on_demand,
            [*quota, "cold starts (about 1 s, bench/RESULTS.md section 3) fall in the p99 at scale-out"],
        ),
        LambdaOption(
            "lambda+provisioned",
            *common,
            provisioned,
            meets,
            sum(with_provisioned.values()),
            with_provisioned,
            [*quota, "no cold start below the provisioned concurrency"],
        ),
        LambdaOption(
            "lambda+snapstart",
            *common,
            0,
            meets,
            sum(with_snapstart.values()),
            with_snapstart,
            [*quota, f"plus ${restore:.6f} per restore (a new execution environment), not counted"],
        ),
    ]


def lambda_options(rps: float, p99_ms: float | None, costs: Costs, prices: Prices) -> list[LambdaOption]:
    """The three Lambda options at the memory size that meets the bound (if any) for the least
    on-demand cost; ties go to more memory (shorter requests). Sizes below the model's memory floor
    are never chosen."""
    floor = memory_floor_mb(costs.model_bytes)
    sizes = [m for m in LAMBDA_MEMORY_MB if m >= floor] or [LAMBDA_MEMORY_MB[-1]]
    candidates = [_lambda_at(m, rps, p99_ms, costs, prices) for m in sizes]
    meeting = [c for c in candidates if c[0].meets_p99 is not False] or [candidates[-1]]
    return min(meeting, key=lambda c: (round(c[0].monthly_usd, 6), -c[0].memory_mb))


def sagemaker_options(
    rps: float, p99_ms: float | None, costs: Costs, prices: Prices
) -> list[SageMakerOption]:
    """Each instance type: how many instances, their autoscaling target, their monthly cost. A
    CPU instance spends the server's CPU and the model's on each request, one vCPU at a time; on a
    GPU instance the server's CPU per request is the bound (the model runs batched on the GPU:
    0.19 ms for 32 rows of digits-cnn on an H200, docs/gpu.md)."""
    options = []
    for instance in prices.instances:
        per_request = costs.server_cpu_ms + (0.0 if instance.gpu else costs.model_p50_ms)
        sustained = instance.vcpus * 1000 / per_request
        count = max(1, math.ceil(rps / (sustained * SAGEMAKER_HEADROOM)))
        estimate = (
            None
            if instance.gpu
            else BATCH_DELAY_MS + costs.server_cpu_ms + costs.batch_p50_ms.get(32, 32 * costs.model_p50_ms)
        )
        meets = None if p99_ms is None or estimate is None else estimate <= p99_ms
        notes = (
            [
                "GPU latency not measured here: load-test on the instance (docs/capacity.md)",
                f"the server's work on its {instance.vcpus} vCPUs: GpuFrontends {max(1, instance.vcpus - 1)} "
                "(the template's default is 2)",
            ]
            if instance.gpu
            else [f"p99 estimate: {BATCH_DELAY_MS:g} ms batching delay + server + a batch of 32"]
        )
        options.append(
            SageMakerOption(
                "sagemaker",
                instance.name,
                instance.gpu,
                count,
                sustained,
                invocations_per_instance(sustained),
                estimate,
                meets,
                count * instance.usd_per_hour * 730,
                notes,
            )
        )
    return options


def plan(rps: float, p99_ms: float | None, costs: Costs, prices: Prices = PRICES) -> Plan:
    lambdas = lambda_options(rps, p99_ms, costs, prices)
    endpoints = sagemaker_options(rps, p99_ms, costs, prices)
    named: list[tuple[float, str]] = [
        (o.monthly_usd, f"{o.kind} {o.memory_mb} MB") for o in lambdas if o.meets_p99 is not False
    ]
    named += [
        (o.monthly_usd, f"sagemaker {o.instances} x {o.instance_type}") for o in endpoints if o.meets_p99
    ]
    if p99_ms is None:
        named += [(o.monthly_usd, f"sagemaker {o.instances} x {o.instance_type}") for o in endpoints]
    recommended = min(named)[1] if named else "none meets the p99 bound"
    return Plan(rps, p99_ms, costs, prices.date, prices.source, lambdas, endpoints, recommended)


def _percentiles(times: list[float]) -> tuple[float, float]:
    import numpy as np

    ms = np.asarray(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def measure(
    session: Any,
    feeds: dict[str, Any],
    model_bytes: int,
    runs: int = 300,
    batches: tuple[int, ...] = (1, 8, 32),
) -> Costs:
    """A short load test of a session on this machine: one-row latency (p50, p99 over `runs`
    calls) and the p50 at each batch size, rows taken in turn from `feeds`' one input."""
    import platform

    (name, values), *_ = feeds.items()
    names = [o.name for o in session.get_outputs()]
    session.run(names, {name: values[:1]})  # allocation and kernel choice, untimed
    timed: dict[int, list[float]] = {b: [] for b in batches}
    for i in range(runs):
        for batch in batches:
            start = i * batch % max(1, len(values) - batch + 1)
            rows = {name: values[start : start + batch]}
            began = time.perf_counter()
            session.run(names, rows)
            timed[batch].append(time.perf_counter() - began)
    p50, p99 = _percentiles(timed[1])
    return Costs(
        model_p50_ms=p50,
        model_p99_ms=p99,
        model_bytes=model_bytes,
        batch_p50_ms={b: _percentiles(t)[0] for b, t in timed.items()},
        measured_on=f"{platform.processor() or platform.machine()}, one ONNX Runtime thread, {runs} runs",
    )
