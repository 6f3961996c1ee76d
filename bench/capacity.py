"""Benchmark 17: `aimass plan`'s load test and plan for the demos (aimass.capacity.measure and
plan, with the built-in price table): the measured per-request costs of breast-cancer and
digits-cnn on this machine, and what the plan recommends at a low and a high request rate.

The load test's p99 is this machine's: on a loaded machine it says more about the load than the
model (the run's load average is in bench/results/capacity.json)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.report import Table

CASES = ((50.0, None), (1000.0, 50.0))


def run(scale: float = 1.0) -> dict[str, Any]:
    from aimass import capacity
    from aimass.serving.backends.onnx import new_session
    from bench.harness import demo
    from gpu_endpoints.demo_networks import digits_cnn

    network = digits_cnn()
    models = {
        "breast-cancer": (demo("breast-cancer").model, demo("breast-cancer").holdout),
        "digits-cnn": (network.model, network.holdout),
    }
    results: dict[str, Any] = {}
    for name, (model, rows) in models.items():
        session = new_session(model)
        feeds = {session.get_inputs()[0].name: np.ascontiguousarray(rows, dtype=np.float32)}
        costs = capacity.measure(session, feeds, len(model), runs=max(20, int(300 * scale)))
        for rps, p99 in CASES:
            results[f"{name} at {rps:g} req/s, p99 {p99 or 'unbounded'}"] = capacity.plan(
                rps, p99, costs
            ).as_dict()
    return {"plans": results}


def tables(result: dict[str, Any]) -> list[Table]:
    table = Table(
        "aimass plan for the demos: measured costs and the cheapest option (built-in us-east-1 prices)",
        [
            "model, traffic",
            "model p50 / p99 ms",
            "batch 32 p50 ms",
            "Lambda",
            "Lambda $/month",
            "recommended",
            "its $/month",
        ],
        note="Lambda: the on-demand option at the memory the plan chose; recommended: the cheapest option "
        "that meets the bound (docs/capacity.md).",
    )
    for label, plan in result["plans"].items():
        costs = plan["costs"]
        on_demand = plan["lambda_options"][0]
        options = {f"{o['kind']} {o['memory_mb']} MB": o["monthly_usd"] for o in plan["lambda_options"]}
        options |= {
            f"sagemaker {o['instances']} x {o['instance_type']}": o["monthly_usd"]
            for o in plan["sagemaker_options"]
        }
        table.add(
            label,
            f"{costs['model_p50_ms']:.3f} / {costs['model_p99_ms']:.3f}",
            f"{costs['batch_p50_ms']['32']:.3f}",
            f"{on_demand['memory_mb']} MB, reserved {on_demand['reserved_concurrency']}",
            f"{on_demand['monthly_usd']:,.2f}",
            plan["recommended"],
            f"{options.get(plan['recommended'], float('nan')):,.2f}",
        )
    return [table]
