"""A rollout's plan is checked before anything is written (aimass.rollout.check_start), and the CLI
reads intervals, steps and guard settings as a person writes them."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from aimass.cli.rollout import guard_values, interval_seconds, steps_list
from aimass.contracts.registry import RolloutStart
from aimass.errors import ValidationFailed
from aimass.rollout import check_start


@pytest.mark.parametrize(
    "start",
    [
        {"version": 2, "steps": [10, 50, 100]},
        {"version": 2, "steps": [100]},
        {"version": 2, "canary": 10, "steps": [10, 100]},
        {"version": 2, "canary": 0, "shadow": 20, "steps": [25, 100]},
        {"version": 2, "canary": 5},
        {"version": 2},
    ],
)
def test_plans_that_can_run_pass(start: dict[str, Any]) -> None:
    check_start(RolloutStart.model_validate(start))


@pytest.mark.parametrize(
    ("start", "locs"),
    [
        ({"version": 2, "steps": [10, 50]}, [["body", "steps", 1]]),
        ({"version": 2, "steps": [50, 10, 100]}, [["body", "steps", 1]]),
        ({"version": 2, "steps": [0, 100]}, [["body", "steps", 0]]),
        ({"version": 2, "steps": [10, 150]}, [["body", "steps", 1], ["body", "steps", 1]]),
        ({"version": 2, "canary": 20, "steps": [10, 100]}, [["body", "canary"]]),
        ({"version": 2, "canary": 0}, [["body", "canary"]]),
    ],
)
def test_plans_that_cannot_run_are_refused_where_they_are_wrong(
    start: dict[str, Any], locs: list[list[Any]]
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_start(RolloutStart.model_validate(start))
    assert [detail["loc"] for detail in refused.value.details] == locs


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("90", 90), ("1.5m", 90), (" 2s ", 2)]
)
def test_intervals_read_as_seconds(text: str, seconds: float) -> None:
    assert interval_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "10 minutes", "-5s", "1d", "m"])
def test_other_intervals_are_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        interval_seconds(text)


def test_steps_and_guard_settings_read_as_numbers() -> None:
    assert steps_list("10,50,100") == [10, 50, 100] and steps_list(None) is None
    assert guard_values(["min_requests=20", "max_p99_ratio=1.5", "x=y"]) == {
        "min_requests": 20,
        "max_p99_ratio": 1.5,
        "x": "y",
    }
    with pytest.raises(typer.BadParameter):
        guard_values(["min_requests"])
