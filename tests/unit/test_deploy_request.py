"""The checks on a GPU deployment's options, made before anything is touched: each option out of
SageMaker's or the inference server's range is named with the range, all of them in one refusal."""

from __future__ import annotations

from typing import Any

import pytest

from aimass.deploy.request import Batching, DeployRequest, Scaling, Traffic, check_request
from aimass.errors import BadRequest


def refused(**options: Any) -> list[tuple[str, str]]:
    with pytest.raises(BadRequest) as raised:
        check_request(DeployRequest(**options))
    assert all(d["type"] == "value_error" for d in raised.value.details)
    return [(d["loc"][0], d["message"]) for d in raised.value.details]


def test_the_defaults_are_a_valid_deployment() -> None:
    check_request(DeployRequest())


def test_options_at_the_edges_of_their_ranges_are_valid() -> None:
    check_request(
        DeployRequest(
            instance_type="ml.g5.xlarge",
            instance_count=4,
            capture_percent=100,
            batching=Batching(max_batch_size=1, max_queue_delay_ms=0, memory_mb=0.5),
            traffic=Traffic(
                mode="linear",
                step_percent=50,
                wait_interval_s=3600,
                termination_wait_s=0,
                alarms=tuple(f"alarm-{n}" for n in range(10)),
            ),
            scaling=Scaling(min_instances=1, max_instances=4, scale_in_cooldown_s=0, scale_out_cooldown_s=0),
            timeout_s=0.1,
        )
    )


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"traffic": Traffic(step_percent=0)}, ("canary_percent", "must be 1 to 50 (% of the new fleet)")),
        ({"traffic": Traffic(step_percent=51)}, ("canary_percent", "must be 1 to 50 (% of the new fleet)")),
        (
            {"traffic": Traffic(mode="linear", step_percent=9)},
            ("linear_percent", "must be 10 to 50 (% of the new fleet)"),
        ),
        ({"traffic": Traffic(wait_interval_s=-1)}, ("wait_interval_s", "must be 0 to 3600")),
        ({"traffic": Traffic(wait_interval_s=3601)}, ("wait_interval_s", "must be 0 to 3600")),
        ({"traffic": Traffic(termination_wait_s=3601)}, ("termination_wait_s", "must be 0 to 3600")),
        ({"traffic": Traffic(max_execution_s=599)}, ("max_execution_s", "must be 600 to 28800")),
        ({"traffic": Traffic(max_execution_s=28_801)}, ("max_execution_s", "must be 600 to 28800")),
        (
            {"traffic": Traffic(wait_interval_s=600, termination_wait_s=600, max_execution_s=1200)},
            (
                "max_execution_s",
                "must be more than the deployment's waits (1200 s), and leave time to provision the new "
                "fleet",
            ),
        ),
        (
            {"traffic": Traffic(alarms=tuple(f"a{n}" for n in range(11)))},
            ("rollback_alarm", "at most 10 alarms"),
        ),
        (
            {"traffic": Traffic(alarms=("a", "a"))},
            ("rollback_alarm", "alarm names must be distinct and not empty"),
        ),
        (
            {"traffic": Traffic(alarms=(" ",))},
            ("rollback_alarm", "alarm names must be distinct and not empty"),
        ),
        (
            {"scaling": Scaling(min_instances=0)},
            ("min_instances", "must be at least 1 (a real-time variant does not scale to zero)"),
        ),
        (
            {"scaling": Scaling(min_instances=3, max_instances=2)},
            ("max_instances", "must be at least min_instances (3)"),
        ),
        (
            {"scaling": Scaling(target_invocations=0)},
            ("target_invocations", "must be more than 0 (invocations per instance per minute)"),
        ),
        ({"scaling": Scaling(scale_in_cooldown_s=-1)}, ("cooldown", "must be 0 or more seconds")),
        ({"scaling": Scaling(scale_out_cooldown_s=-1)}, ("cooldown", "must be 0 or more seconds")),
        ({"instance_count": 0}, ("instance_count", "must lie within autoscaling's 1 to 4 instances")),
        ({"instance_count": 5}, ("instance_count", "must lie within autoscaling's 1 to 4 instances")),
        ({"instance_type": "g5.xlarge"}, ("instance_type", "a SageMaker instance type, e.g. ml.g5.xlarge")),
        ({"capture_percent": -1}, ("capture_percent", "must be 0 (no capture) to 100")),
        ({"capture_percent": 101}, ("capture_percent", "must be 0 (no capture) to 100")),
        ({"batching": Batching(max_batch_size=0)}, ("max_batch_size", "must be at least 1")),
        ({"batching": Batching(max_queue_delay_ms=-0.5)}, ("max_queue_delay_ms", "must be 0 or more")),
        ({"batching": Batching(memory_mb=0)}, ("memory_mb", "must be more than 0")),
        ({"timeout_s": 0}, ("timeout_s", "must be more than 0")),
    ],
)
def test_an_option_out_of_range_is_refused_naming_it_and_its_range(
    options: dict[str, Any], problem: tuple[str, str]
) -> None:
    assert refused(**options) == [problem]


def test_every_option_out_of_range_is_named_in_one_refusal_in_order() -> None:
    with pytest.raises(BadRequest) as raised:
        check_request(
            DeployRequest(
                capture_percent=101,
                timeout_s=-1,
                instance_type="gpu",
                traffic=Traffic(step_percent=60, alarms=("a", "a")),
                scaling=Scaling(min_instances=0, scale_in_cooldown_s=-5),
                batching=Batching(max_batch_size=0),
            )
        )
    assert [d["loc"][0] for d in raised.value.details] == [
        "canary_percent",
        "rollback_alarm",
        "min_instances",
        "cooldown",
        "instance_type",
        "capture_percent",
        "max_batch_size",
        "timeout_s",
    ]
    assert raised.value.message == (
        "the deployment's options are out of range: canary_percent must be 1 to 50 (% of the new fleet); "
        "rollback_alarm alarm names must be distinct and not empty; min_instances must be at least 1 (a "
        "real-time variant does not scale to zero); cooldown must be 0 or more seconds; instance_type a "
        "SageMaker instance type, e.g. ml.g5.xlarge; capture_percent must be 0 (no capture) to 100; "
        "max_batch_size must be at least 1; timeout_s must be more than 0"
    )


@pytest.mark.parametrize("step_percent", [0, -10])
def test_a_linear_step_of_zero_or_less_is_refused_as_out_of_range(step_percent: int) -> None:
    # The deployment's waits depend on the number of steps: none are checked until the step is valid
    assert refused(traffic=Traffic(mode="linear", step_percent=step_percent)) == [
        ("linear_percent", "must be 10 to 50 (% of the new fleet)")
    ]
