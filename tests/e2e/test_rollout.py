"""A canary rollout driven with the CLI on `aimass serve`, traffic over HTTP: the canary takes its
share of the requests that name no version (sticky by the routing header), every answer says which
version served it and why, promotion moves `champion` and empties the policy, abort gives the
stable version everything back; a shadow rollout runs a version beside the stable one, never answering,
and its agreement shows in `aimass rollout status --json`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimass.local import demo
from tests.e2e.conftest import AIMASS, Stack

pytestmark = pytest.mark.e2e
MODEL = "bc-rollout"


def answers(stack: Stack, rows: list[list[float]], keys: list[str]) -> list[tuple[int, str]]:
    """(version, variant) of one prediction per routing key."""
    out = []
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for key in keys:
            answer = client.post(
                f"/v1/models/{MODEL}:predict", json={"instances": rows}, headers={"x-aimass-routing-key": key}
            ).json()
            out.append((answer["model"]["version"], answer["variant"]))
    return out


def shadow_status(stack: Stack, runs: int) -> dict[str, Any]:
    """`aimass rollout status` once the shadow's runs are counted. They run after the answers, on the
    shadow worker (docs/rollout.md), and a status waits a second at most for them
    (aimass.wiring.flush_live): on a loaded machine the first read may come before they have run, so
    it is read again, for 15 s at most."""
    deadline = time.monotonic() + 15
    while True:
        status = stack.cli("rollout", "status", MODEL, "--json")
        assert status.returncode == 0, status.stderr
        rollout: dict[str, Any] = json.loads(status.stdout)
        counted = ((rollout.get("live") or {}).get("shadow") or {}).get("requests", 0)
        if counted >= runs or time.monotonic() > deadline:
            return rollout
        time.sleep(0.5)


def test_a_canary_is_started_promoted_and_another_aborted_with_the_cli(stack: Stack, tmp_path: Path) -> None:
    bc = demo.load_or_train("breast-cancer", stack.state_dir)
    model = tmp_path / "bc.onnx"
    model.write_bytes(bc.model)
    features = ",".join(f.name for f in bc.enrichment.features or [])
    # Given two versions of a model, v1 the champion
    for alias in ("champion", None):
        pushed = stack.cli(
            "models",
            "push",
            MODEL,
            str(model),
            "--features",
            features,
            "--labels",
            "malignant,benign",
            *(["--alias", alias] if alias else []),
        )
        assert pushed.returncode == 0, pushed.stderr
    rows = bc.holdout[:1].tolist()
    keys = [f"user-{i}" for i in range(60)]

    # When v2 is rolled out to half the traffic, sticky by the routing header
    started = stack.cli("rollout", "start", MODEL, "2", "--canary", "50", "--sticky-by", "header")
    assert started.returncode == 0, started.stderr
    assert "v2 is the canary at 50 %" in started.stdout
    # Then both versions serve, each key always the same one, and the answers say why
    first, again = answers(stack, rows, keys), answers(stack, rows, keys)
    assert first == again and set(first) == {(1, "stable"), (2, "canary")}
    # A second rollout while this one runs is refused, naming it
    second = stack.cli("rollout", "start", MODEL, "1")
    assert second.returncode == 1 and "rollout_in_progress" in second.stderr + second.stdout

    # When it is promoted, Then v2 is the champion and takes every request as the stable version
    promoted = stack.cli("rollout", "promote", MODEL, "--json")
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["state"] == "promoted" and json.loads(promoted.stdout)["stable"] == 2
    assert set(answers(stack, rows, keys)) == {(2, "stable")}

    # When v1 is brought back as a canary for everyone and the rollout aborted
    assert stack.cli("rollout", "start", MODEL, "1", "--canary", "100").returncode == 0
    assert set(answers(stack, rows, keys[:5])) == {(1, "canary")}
    aborted = stack.cli("rollout", "abort", MODEL)
    assert aborted.returncode == 0 and "no rollout" in aborted.stdout
    # Then v2 takes everything back, and the audit trail has each step
    assert set(answers(stack, rows, keys[:5])) == {(2, "stable")}
    trail = [r["action"] for r in httpx.get(f"{stack.url}/v1/models/{MODEL}/audit").json()]
    assert trail[-4:] == ["start_rollout", "promote_rollout", "start_rollout", "abort_rollout"]

    # When v1 is rolled out as a shadow of every request v2 answers (no canary share)
    shadowed = stack.cli("rollout", "start", MODEL, "1", "--shadow", "100")
    assert shadowed.returncode == 0, shadowed.stderr
    assert "v1 shadows 100 % of v2's requests" in shadowed.stdout
    # Then v2 still answers everything, and the status compares v1's answers with v2's
    assert set(answers(stack, rows, keys[:10])) == {(2, "stable")}
    rollout = shadow_status(stack, runs=10)
    assert (rollout["state"], rollout["shadow"], rollout["canary"]) == (
        "shadow",
        {"version": 1, "percent": 100},
        None,
    )
    shadow = rollout["live"]["shadow"]
    assert (shadow["requests"], shadow["errors"], shadow["compared"], shadow["agreement"]) == (10, 0, 10, 1.0)
    assert rollout["live"]["stable"]["requests"] == 10
    assert stack.cli("rollout", "abort", MODEL).returncode == 0


def test_a_version_waits_for_approval_and_the_cli_approval_starts_its_canary(
    stack: Stack, tmp_path: Path
) -> None:
    name = "bc-release"
    bc = demo.load_or_train("breast-cancer", stack.state_dir)
    model = tmp_path / "bc.onnx"
    model.write_bytes(bc.model)
    features = ",".join(f.name for f in bc.enrichment.features or [])
    # Given v1 the champion of a model whose releases need approval, and a pushed v2
    for alias in ("champion", None):
        pushed = stack.cli(
            "models", "push", name, str(model), "--features", features, *(["--alias", alias] if alias else [])
        )
        assert pushed.returncode == 0, pushed.stderr
    policy = stack.cli("release", "policy", name, "--approval", "--steps", "10,50,100", "--interval", "10m")
    assert policy.returncode == 0, policy.stderr
    assert "after an admin's approval" in policy.stdout

    # When v2 is released, Then it waits as pending_approval and takes no traffic
    waiting = stack.cli("release", "start", name, "2")
    assert waiting.returncode == 0 and "v2 waits for approval" in waiting.stdout, waiting.stderr
    view = json.loads(stack.cli("release", "status", name, "--json").stdout)
    assert view["releases"][0]["state"] == "pending_approval"
    assert json.loads(stack.cli("rollout", "status", name, "--json").stdout)["canary"] is None

    # When an admin approves it with the CLI, Then its rollout starts: v2 is the canary at the first step
    approved = stack.cli("release", "approve", name, "2", "--note", "report reviewed")
    assert approved.returncode == 0 and "rollout started" in approved.stdout, approved.stderr
    status = json.loads(stack.cli("rollout", "status", name, "--json").stdout)
    assert (status["state"], status["canary"], status["stable"]) == (
        "canary",
        {"version": 2, "percent": 10},
        1,
    )
    again = stack.cli("release", "approve", name, "2")
    assert again.returncode == 1 and "not_pending" in again.stderr + again.stdout
    # The scheduled releases' tick reaches the same registry through the embedded AWS
    ticked = subprocess.run(
        [str(AIMASS), "release", "tick", "--aws-endpoint", stack.aws_url],
        capture_output=True,
        text=True,
        env=stack.env,
        timeout=120,
        check=False,
    )
    assert ticked.returncode == 0 and "no scheduled release is due" in ticked.stdout, ticked.stderr
