"""The capacity plan's arithmetic (aimass.capacity) on a fixed price table and fixed costs: every
figure worked out by hand in the comments, so a change of formula shows here."""

from __future__ import annotations

import pytest

from aimass.capacity import (
    GPU_TARGET_INVOCATIONS,
    MONTH_S,
    SERVER_SUSTAINED_REQ_S,
    Costs,
    Instance,
    Prices,
    invocations_per_instance,
    memory_floor_mb,
    plan,
    stretch,
)

PRICES = Prices(
    date="test",
    source="a round table for the test",
    lambda_request=0.2e-6,
    lambda_gb_s=1.6e-5,
    provisioned_gb_s=4e-6,
    provisioned_duration_gb_s=1e-5,
    snapstart_cache_gb_s=1.5e-6,
    snapstart_restore_gb=1.4e-4,
    http_api_request=1e-6,
    instances=(Instance("cpu.small", 2, None, 0.1), Instance("gpu.one", 4, "T", 1.0)),
)
# 1 ms model + 0.5 ms handler at p50 (2 + 1 at p99), a 10 MiB model, 10 ms for a batch of 32
COSTS = Costs(
    model_p50_ms=1.0,
    model_p99_ms=2.0,
    model_bytes=10 * 2**20,
    batch_p50_ms={1: 1.0, 32: 10.0},
    handler_p50_ms=0.5,
    handler_p99_ms=1.0,
    server_cpu_ms=1.0,
)
REQUESTS = 100 * MONTH_S  # 262,800,000 a month at 100 req/s


def test_memory_floor_and_cpu_share() -> None:
    assert memory_floor_mb(10 * 2**20) == (110 + 30) * 1.25  # 175 MB
    assert stretch(1769) == stretch(3008) == 1.0
    assert stretch(1024) == pytest.approx(1.7275390625)


def test_a_p99_bound_picks_the_cheapest_memory_that_meets_it() -> None:
    result = plan(100, 10.0, COSTS, PRICES)

    on_demand, provisioned, snapstart = result.lambda_options
    # 256 MB: p99 3 ms x 6.91 = 20.7 ms; 512 MB: 10.4 ms: both over 10 ms. 1024 MB: 5.2 ms, and its
    # p50 of 2.59 ms bills 3 ms at 1 GB, cheaper than 1,769 MB's 2 ms at 1.73 GB
    assert on_demand.memory_mb == 1024
    assert on_demand.duration_p99_ms == pytest.approx(3.0 * 1.7275390625)
    assert on_demand.meets_p99 is True
    assert on_demand.breakdown == pytest.approx(
        {"requests": 52.56, "http_api": 262.8, "duration": REQUESTS * 0.003 * 1.6e-5}
    )
    assert on_demand.monthly_usd == pytest.approx(52.56 + 262.8 + 12.6144)
    # Little's law: 100 req/s x 2.59 ms = 0.26 concurrent; reserved 2x, provisioned at 70 %
    assert on_demand.concurrency == pytest.approx(0.25913085937)
    assert (on_demand.reserved_concurrency, provisioned.provisioned_concurrency) == (1, 1)
    assert provisioned.breakdown == pytest.approx(
        {
            "requests": 52.56,
            "http_api": 262.8,
            "provisioned": MONTH_S * 4e-6,
            "duration": REQUESTS * 0.003 * 1e-5,
        }
    )
    assert provisioned.monthly_usd == pytest.approx(52.56 + 262.8 + 10.512 + 7.884)
    assert snapstart.monthly_usd == pytest.approx(on_demand.monthly_usd + MONTH_S * 1.5e-6)

    cpu, gpu = result.sagemaker_options
    # cpu.small: 1 ms server + 1 ms model per request, 2 vCPUs: 1,000 req/s; half of it per minute
    assert (cpu.per_instance_req_s, cpu.instances, cpu.invocations_per_instance) == (1000, 1, 30000)
    assert cpu.p99_ms == 5 + 1 + 10 and cpu.meets_p99 is False
    assert cpu.monthly_usd == pytest.approx(73.0)
    # gpu.one: the server's 1 ms on 4 vCPUs bounds it; its latency is not measured here
    assert (gpu.per_instance_req_s, gpu.invocations_per_instance) == (4000, 120000)
    assert gpu.p99_ms is None and gpu.meets_p99 is None and gpu.monthly_usd == pytest.approx(730.0)
    # 4 vCPUs are the server's with 3 front ends beside its model process
    assert "GpuFrontends 3 (the template's default is 2)" in gpu.notes[1]
    assert result.recommended == "lambda 1024 MB"


def test_without_a_bound_the_cheapest_of_all_is_recommended() -> None:
    result = plan(100, None, COSTS, PRICES)

    # 256 MB: p50 1.5 x 6.91 = 10.37 ms bills 11 ms at 0.25 GB (2.75 GB-ms), the least of all sizes
    assert result.lambda_options[0].memory_mb == 256
    assert result.lambda_options[0].meets_p99 is None
    assert result.lambda_options[0].monthly_usd == pytest.approx(
        52.56 + 262.8 + REQUESTS * 0.011 * 0.25 * 1.6e-5
    )
    assert result.recommended == "sagemaker 1 x cpu.small"


def test_more_traffic_takes_more_instances_and_concurrency() -> None:
    result = plan(5000, 10.0, COSTS, PRICES)

    cpu = result.sagemaker_options[0]
    assert cpu.instances == 10  # 5,000 / (1,000 x 0.5)
    on_demand = result.lambda_options[0]
    assert on_demand.reserved_concurrency == 26  # ceil(2 x 5,000 x 2.59 ms)
    assert result.lambda_options[1].provisioned_concurrency == 19  # ceil(12.96 / 0.7)


def test_a_bound_nothing_meets_is_said() -> None:
    result = plan(100, 0.5, COSTS, PRICES)

    assert all(o.meets_p99 is False for o in result.lambda_options)
    assert result.recommended == "none meets the p99 bound"


def test_the_autoscaling_target_is_half_the_measured_rate_per_minute() -> None:
    assert invocations_per_instance(1141) == 34000  # 1,141 x 0.5 x 60 = 34,230
    assert invocations_per_instance(10) == 300
    assert GPU_TARGET_INVOCATIONS == invocations_per_instance(SERVER_SUSTAINED_REQ_S.value) == 34000
