"""`aimass rollout`: bring a version in as a model's canary or shadow (steps on a schedule, guards),
follow it, promote or abort it, or tick it now."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from aimass.cli.common import DEFAULT_ENDPOINT, ApiKey, AsJson, Endpoint, call, console, show_json

app = typer.Typer(help="Rollouts: start, status, promote, abort, tick.", no_args_is_help=True)

_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, None: 1}


def interval_seconds(text: str) -> float:
    """`30s`, `10m`, `1h` or plain seconds (`90`), as seconds."""
    found = _INTERVAL.match(text)
    if found is None:
        raise typer.BadParameter(f"{text!r} is not an interval: 30s, 10m, 1h or plain seconds")
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def steps_list(text: str | None) -> list[float] | None:
    """`10,50,100` as percents."""
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise typer.BadParameter(f"{text!r} is not a list of percents such as 10,50,100") from error


def guard_values(pairs: list[str]) -> dict[str, float | str]:
    """`key=value` pairs, numbers as numbers (the API checks the keys and values; docs/rollout.md
    names them)."""
    guards: dict[str, float | str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE, e.g. min_requests=50")
        try:
            guards[key.strip()] = int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            guards[key.strip()] = value.strip()
    return guards


def _show(rollout: dict[str, Any], as_json: bool) -> None:
    if as_json:
        return show_json(rollout)
    name, stable, canary, shadow = rollout["name"], rollout["stable"], rollout["canary"], rollout["shadow"]
    outcome = rollout.get("outcome")
    if canary is None and shadow is None:
        console.print(f"{name}: no rollout; v{stable} takes every request that names no version")
        if outcome:
            console.print(f"  last rollout: v{outcome['version']} {outcome['state']} by {outcome['actor']}")
            if outcome.get("reason"):
                console.print(f"  {outcome['reason']}")
        return None
    sticky = f", sticky by {rollout['sticky_by']}" if rollout["sticky_by"] else ", drawn at random"
    if canary is not None:
        console.print(
            f"{name}: v{canary['version']} is the canary at {canary['percent']:g} %{sticky}; "
            f"v{stable} takes the rest (policy v{rollout['policy_version']})"
        )
    if shadow is not None:
        figures = (rollout.get("live") or {}).get("shadow") or {}
        agreement = figures.get("agreement")
        agreed = "not compared yet" if agreement is None else f"{agreement:.1%} agree"
        console.print(
            f"{name}: v{shadow['version']} shadows {shadow['percent']:g} % of v{stable}'s requests: "
            f"{figures.get('compared', 0)} instances compared, {agreed}"
        )
    plan = rollout.get("plan")
    if plan:
        steps = ", ".join(f"{s:g} %" for s in plan["steps"]) or "none (promote or abort by hand)"
        where = (
            "the shadow phase" if plan["step"] == -1 else f"step {plan['step'] + 1} of {len(plan['steps'])}"
        )
        console.print(
            f"  steps: {steps}; {where if plan['steps'] else 'by hand'}, every {plan['interval_s']:g} s"
        )
        if rollout.get("next_step_at"):
            console.print(f"  next step at {rollout['next_step_at']} if the guards hold")
    for result in rollout.get("judgement", []):
        console.print(f"  {result['guard']}: {result['status']}  {result['detail']}")
    return None


@app.command("start")
def start(
    name: str,
    version: int,
    canary: Annotated[
        float | None,
        typer.Option(
            help="percent of the requests naming no version it serves; default the first step, else 10; "
            "0 with --shadow"
        ),
    ] = None,
    shadow: Annotated[
        float,
        typer.Option(
            help="percent of the stable version's requests also run on it, never answered (without "
            "--canary: a shadow phase first)"
        ),
    ] = 0,
    steps: Annotated[
        str | None, typer.Option(help="canary percents, rising, the last 100, e.g. 10,50,100")
    ] = None,
    interval: Annotated[str, typer.Option(help="time between steps: 30s, 10m, 1h or seconds")] = "10m",
    sticky_by: Annotated[
        str | None, typer.Option(help="header (x-aimass-routing-key) or feature:NAME; unset: random")
    ] = None,
    guard: Annotated[
        list[str] | None,
        typer.Option(
            help="a guard's setting KEY=VALUE, repeatable: max_error_rate_increase, max_p99_ratio, "
            "min_requests, min_agreement, min_compared, accuracy_confidence, min_labelled"
        ),
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Start a rollout of model NAME: VERSION becomes the canary (--steps: widened every --interval
    while its guards hold, then promoted; a tripped guard rolls it back)."""
    body: dict[str, Any] = {
        "version": version,
        "canary": canary,
        "shadow": shadow,
        "sticky_by": sticky_by,
        "steps": steps_list(steps),
        "interval_s": interval_seconds(interval),
        "guards": guard_values(guard or []),
    }
    _show(call("PUT", endpoint, f"/v1/models/{name}/rollout", api_key, json=body), as_json)


@app.command("status")
def status(
    name: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Where model NAME's rollout stands: its step, next step, guards, and how the last one ended."""
    _show(call("GET", endpoint, f"/v1/models/{name}/rollout", api_key), as_json)


@app.command("promote")
def promote(
    name: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Promote model NAME's canary: it becomes the champion and takes every request."""
    _show(call("POST", endpoint, f"/v1/models/{name}/rollout/promote", api_key), as_json)


@app.command("abort")
def abort(
    name: str, endpoint: Endpoint = DEFAULT_ENDPOINT, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Abort model NAME's rollout: the stable version takes every request back."""
    _show(call("POST", endpoint, f"/v1/models/{name}/rollout/abort", api_key), as_json)


@app.command("tick")
def tick(
    name: Annotated[str | None, typer.Argument(help="the model; default every model with a rollout")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Tick rollouts now, as their schedule does: judge the guards, take a step that is due, roll back
    one whose guard tripped."""
    if name is not None:
        names = [name]
    else:
        models = call("GET", endpoint, "/v1/models?detail=true", api_key)["models"]
        names = [m["name"] for m in models if m["traffic"].get("canary") or m["traffic"].get("shadow")]
    ticked = [call("POST", endpoint, f"/v1/models/{n}/rollout/tick", api_key) for n in names]
    if as_json:
        return show_json(ticked)
    if not ticked:
        console.print("no rollout under way")
    for rollout in ticked:
        _show(rollout, False)
    return None
