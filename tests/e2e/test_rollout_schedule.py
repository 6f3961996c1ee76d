"""Rollouts on the local stack's schedule (the ticker of `aimass serve`), started with the CLI and
driven by traffic over HTTP: a canary taken through its steps and promoted on its own, and a canary
that fails every request rolled back on its own, the guard that tripped it in its status."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimass.local import demo
from tests.e2e.conftest import Stack, serving

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, trained_demos: Path) -> Iterator[Stack]:
    # Rollouts ticked every second, so that steps of 2 s are taken on time
    tick = {"AIMASS_ROLLOUT_TICK_S": "1"}
    with serving(tmp_path_factory.mktemp("e2e-rollouts"), tick, trained_demos) as (started, _):
        yield started


def push_two_versions(stack: Stack, tmp_path: Path, model: str, *second: str) -> list[list[float]]:
    """v1 the champion, v2 (pushed with `second`'s options); rows to predict with."""
    bc = demo.load_or_train("breast-cancer", stack.state_dir)
    path = tmp_path / "bc.onnx"
    path.write_bytes(bc.model)
    features = ",".join(f.name for f in bc.enrichment.features or [])
    for options in (["--alias", "champion"], list(second)):
        pushed = stack.cli("models", "push", model, str(path), "--features", features, *options)
        assert pushed.returncode == 0, pushed.stderr
    rows: list[list[float]] = bc.holdout[:1].tolist()
    return rows


def drive_until(stack: Stack, model: str, rows: list[list[float]], state: str, timeout: float = 90) -> Any:
    """Predictions naming no version, ten at a time, until the rollout's state is `state`: its status."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        while time.monotonic() < deadline:
            for _ in range(10):
                client.post(f"/v1/models/{model}:predict", json={"instances": rows})
            status = client.get(f"/v1/models/{model}/rollout").json()
            if status["state"] == state:
                return status
    pytest.fail(f"{model}'s rollout is not {state} after {timeout:.0f} s: {status}")


def test_a_canary_is_taken_through_its_steps_and_promoted_on_its_own(stack: Stack, tmp_path: Path) -> None:
    model = "bc-steps"
    rows = push_two_versions(stack, tmp_path, model)
    # When v2 is rolled out in steps of 50 and 100 % two seconds apart, judged from 5 requests (the
    # latency guard widened: the p99 of a few requests on a shared machine is its slowest one, noise
    # that would roll the same version back; the rollback below is the guards' test)
    started = stack.cli(
        "rollout",
        "start",
        model,
        "2",
        "--steps",
        "50,100",
        "--interval",
        "2s",
        "--guard",
        "min_requests=5",
        "--guard",
        "max_p99_ratio=1000",
    )
    assert started.returncode == 0, started.stderr
    assert "v2 is the canary at 50 %" in started.stdout and "steps: 50 %, 100 %" in started.stdout
    # And traffic flows, Then the schedule promotes it without anyone's help
    drive_until(stack, model, rows, "promoted")
    status = stack.cli("rollout", "status", model, "--json")
    assert status.returncode == 0, status.stderr
    rollout = json.loads(status.stdout)
    assert rollout["stable"] == 2 and rollout["canary"] is None
    assert rollout["outcome"]["state"] == "promoted" and rollout["outcome"]["actor"].startswith("rollout/")
    trail = [r["action"] for r in httpx.get(f"{stack.url}/v1/models/{model}/audit").json()]
    assert trail[-3:] == ["start_rollout", "rollout_step", "promote_rollout"]
    answer = httpx.post(f"{stack.url}/v1/models/{model}:predict", json={"instances": rows}).json()
    assert (answer["model"]["version"], answer["variant"]) == (2, "stable")


def test_a_canary_that_fails_every_request_is_rolled_back_on_its_own(stack: Stack, tmp_path: Path) -> None:
    model = "bc-worse"
    # Given a v2 served by an endpoint that does not exist: every request it takes fails (503)
    rows = push_two_versions(stack, tmp_path, model, "--backend", "sagemaker:no-such-endpoint")
    started = stack.cli(
        "rollout", "start", model, "2", "--steps", "50,100", "--interval", "10m", "--guard", "min_requests=5"
    )
    assert started.returncode == 0, started.stderr
    # When traffic flows, Then the schedule rolls it back once each version has served 5 requests
    drive_until(stack, model, rows, "rolled_back")
    status = stack.cli("rollout", "status", model, "--json")
    rollout = json.loads(status.stdout)
    assert rollout["canary"] is None and rollout["stable"] == 1
    outcome = rollout["outcome"]
    assert outcome["state"] == "rolled_back" and outcome["guard"]["guard"] == "error_rate"
    assert outcome["guard"]["figures"]["canary_error_rate"] == 1.0
    assert outcome["guard"]["figures"]["stable_error_rate"] == 0.0
    # The status in words says how it ended, and the stable version takes every request again
    words = stack.cli("rollout", "status", model)
    assert "rolled_back" in words.stdout and "error_rate" in words.stdout
    answer = httpx.post(f"{stack.url}/v1/models/{model}:predict", json={"instances": rows}).json()
    assert (answer["model"]["version"], answer["variant"]) == (1, "stable")
