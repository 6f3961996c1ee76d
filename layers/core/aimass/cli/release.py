"""`aimass release`: a model's release policy, releasing a version through it, approvals, and the
scheduled releases that are due."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from aimass.cli.common import (
    DEFAULT_ENDPOINT,
    ApiKey,
    AsJson,
    Endpoint,
    Region,
    aws_endpoint_option,
    call,
    comma_list,
    console,
    fail,
    show_json,
    use_aws,
)

app = typer.Typer(
    help="Releases: the release policy, releasing a version, approvals, scheduled releases.",
    no_args_is_help=True,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
At = Annotated[
    str | None, typer.Option("--at", help="start the release at this time (ISO 8601; no zone: UTC)")
]


def _seconds(text: str) -> float:
    """`90`, `90s`, `10m`, `2h`, `1d` in seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if found is None:
        raise typer.BadParameter(f"{text!r} is not a duration: write 90, 90s, 10m, 2h or 1d")
    return float(found[1]) * _UNITS[found[2] or "s"]


def _show_policy(name: str, policy: dict[str, Any], as_json: bool) -> None:
    if as_json:
        return show_json(policy)
    approval = "after an admin's approval" if policy["approval"] else "without approval"
    how = {
        "direct": "champion moves at once",
        "canary": "a canary rollout",
        "shadow-then-canary": f"a rollout with a {policy['shadow']:g} % shadow phase first",
    }[policy["mode"]]
    steps = ", ".join(f"{s:g}" for s in policy["steps"]) if policy["steps"] else "none"
    console.print(f"{name}: releases go {policy['mode']} ({how}), {approval} (policy v{policy['version']})")
    if policy["mode"] != "direct":
        canary = "the first step, else 10" if policy["canary"] is None else f"{policy['canary']:g}"
        console.print(f"  canary %: {canary}; steps: {steps}; every {policy['interval_s']:g} s")
    return None


def _show_release(release: dict[str, Any], as_json: bool) -> None:
    if as_json:
        return show_json(release)
    name, version, state = release["name"], release["version"], release["state"]
    said = f" ({release['note']})" if release.get("note") else ""
    if state == "pending_approval":
        line = f"v{version} waits for approval: aimass release approve|reject {name} {version}"
    elif state == "scheduled":
        line = f"v{version} is scheduled for release at {release['at']}"
    elif state == "released" and release.get("rollout"):
        line = (
            f"v{version} released: {release['mode']} rollout started (policy v"
            f"{release['rollout']['policy_version']}); follow it with `aimass rollout status {name}`"
        )
    elif state == "released":
        line = f"v{version} released: {release.get('alias') or 'champion'} → v{version}"
    else:
        line = f"v{version} {state}"
    console.print(f"{name}: {line}{said}")
    if release.get("reason"):
        console.print(f"  {release['reason']}")
    return None


@app.command("policy")
def policy(
    name: str,
    mode: Annotated[
        str | None, typer.Option(help="direct, canary or shadow-then-canary (default canary)")
    ] = None,
    approval: Annotated[
        bool | None, typer.Option("--approval/--no-approval", help="versions wait for an admin's approval")
    ] = None,
    canary: Annotated[float | None, typer.Option(help="the rollout's first canary percent")] = None,
    shadow: Annotated[
        float | None, typer.Option(help="shadow-then-canary: the shadow phase's percent")
    ] = None,
    steps: Annotated[str | None, typer.Option(help="canary percents, rising to 100: 10,50,100")] = None,
    interval: Annotated[str | None, typer.Option(help="between steps: 90s, 10m, 2h")] = None,
    sticky_by: Annotated[str | None, typer.Option(help="header or feature:NAME")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show model NAME's release policy, or change the settings given (the others are kept)."""
    path = f"/v1/models/{name}/release-policy"
    current = call("GET", endpoint, path, api_key)
    changes: dict[str, Any] = {
        "mode": mode,
        "approval": approval,
        "canary": canary,
        "shadow": shadow,
        "steps": [float(s) for s in comma_list(steps) or []] if steps is not None else None,
        "interval_s": _seconds(interval) if interval is not None else None,
        "sticky_by": sticky_by,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        body = {k: v for k, v in current.items() if k != "version"} | changes
        current = call("PUT", endpoint, path, api_key, json=body)
    _show_policy(name, current, as_json)


@app.command("status")
def status(
    name: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Model NAME's release policy and its versions' releases, newest first."""
    view = call("GET", endpoint, f"/v1/models/{name}/release", api_key)
    if as_json:
        return show_json(view)
    _show_policy(name, view["policy"], False)
    for release in view["releases"]:
        _show_release(release, False)
    return None


@app.command("start")
def start(
    name: str,
    version: int,
    at: At = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Release VERSION of model NAME through its release policy, now or --at a time."""
    body = {"at": at} if at else {}
    _show_release(
        call("POST", endpoint, f"/v1/models/{name}/versions/{version}/release", api_key, json=body), as_json
    )


@app.command("approve")
def approve(
    name: str,
    version: int,
    note: Annotated[str | None, typer.Option(help="what the approver says (audited)")] = None,
    at: At = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Approve VERSION of model NAME, waiting for approval: its release starts now, or --at a time."""
    body = {"note": note, "at": at}
    path = f"/v1/models/{name}/versions/{version}/approve"
    _show_release(call("POST", endpoint, path, api_key, json={k: v for k, v in body.items() if v}), as_json)


@app.command("reject")
def reject(
    name: str,
    version: int,
    note: Annotated[str, typer.Option(help="why (required, audited)")],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Reject VERSION of model NAME: it stays unreleased, and the stable version keeps serving."""
    path = f"/v1/models/{name}/versions/{version}/reject"
    _show_release(call("POST", endpoint, path, api_key, json={"note": note}), as_json)


@app.command("tick")
def tick(
    now: Annotated[
        str | None, typer.Option(help="the time to start what is due by (ISO 8601; default: now)")
    ] = None,
    aws_endpoint: Annotated[str | None, aws_endpoint_option()] = None,
    registry_table: Annotated[str, typer.Option(envvar="AIMASS_REGISTRY_TABLE")] = "aimass-registry",
    region: Region = "us-east-1",
    as_json: AsJson = False,
) -> None:
    """Start every scheduled release that is due, for every model, on the registry itself (what the
    periodic tick does; safe beside it)."""
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(now) if now else datetime.now(UTC)
    except ValueError:
        raise fail(f"--now {now!r} is not an ISO 8601 time", 2) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    use_aws(aws_endpoint, region, AIMASS_REGISTRY_TABLE=registry_table)
    from aimass import release, wiring

    started = release.start_due(wiring.registry(), when)
    if as_json:
        return show_json({"started": [r.model_dump() for r in started]})
    if not started:
        console.print("no scheduled release is due")
    for one in started:
        _show_release(one.model_dump(), False)
    return None
