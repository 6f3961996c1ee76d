"""Benchmark 9: what a ruleset costs by its size, in-process: compiling it (a save checks it against
every served version, and the first predict after a save compiles it again), running it on a request,
and the memory a compiled ruleset holds.

Rulesets over breast-cancer's features: 10 and 200 typical rules (one comparison or two each, half of
them on the model's answer), the largest the contract allows (40,000 characters of conditions: 10 rules
of 3,900), and one the contract refuses (200 rules of 3,900 characters, 780,000 in all), measured to
show what the bound keeps out.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from bench.harness import demo
from bench.report import Table, ms

MODEL = "breast-cancer"
REQUEST_SIZES = (1, 100)


def _features() -> list[str]:
    return [f if isinstance(f, str) else f.name for f in demo(MODEL).enrichment.features]


def _typical(i: int, names: list[str]) -> dict[str, Any]:
    if i % 2 == 0:
        return {
            "id": f"r{i}",
            "stage": "pre",
            "when": f"input.{names[i % len(names)]} > {i}.5",
            "then": {"flag": "x"},
        }
    return {
        "id": f"r{i}",
        "stage": "post",
        "when": f"output.probabilities['benign'] > 0.{i % 9 + 1} && output.label == 'benign'",
        "then": {"set": {f"k{i}": i}},
    }


def _long(i: int, names: list[str], chars: int = 3900) -> dict[str, Any]:
    parts: list[str] = []
    while len(" || ".join(parts)) < chars - 40:
        parts.append(f"input.{names[len(parts) % len(names)]} > {1000 + i + len(parts)}.5")
    return {"id": f"r{i}", "stage": "pre", "when": " || ".join(parts), "then": {"flag": "x"}}


def rulesets() -> dict[str, dict[str, Any]]:
    names = _features()
    return {
        "10 typical rules": {"hit_policy": "all", "rules": [_typical(i, names) for i in range(10)]},
        "200 typical rules": {"hit_policy": "all", "rules": [_typical(i, names) for i in range(200)]},
        "10 rules of 3,900 chars (the bound)": {
            "hit_policy": "all",
            "rules": [_long(i, names) for i in range(10)],
        },
        "200 rules of 3,900 chars (refused)": {
            "hit_policy": "all",
            "rules": [_long(i, names) for i in range(200)],
        },
    }


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def run(scale: float = 1.0) -> dict[str, Any]:
    import onnxruntime as ort

    from aimass.contracts.rules import MAX_CONDITION_CHARS, Ruleset
    from aimass.rules import compile_ruleset
    from aimass.signature import enrich, from_session

    model = demo(MODEL)
    signature = enrich(from_session(ort.InferenceSession(model.model)), model.enrichment)
    names = _features()
    repeats = max(3, int(20 * scale))
    results = []
    for label, body in rulesets().items():
        # Built without the contract's checks, so that the refused size can be measured too
        ruleset = Ruleset.model_construct(
            hit_policy=body["hit_policy"],
            rules=[Ruleset.model_validate({"rules": [r]}).rules[0] for r in body["rules"]],
        )
        gc.collect()
        before = _rss_kb()
        started = time.perf_counter()
        compiled = compile_ruleset(ruleset, signature)
        compile_s = time.perf_counter() - started
        held_kb = _rss_kb() - before
        per_request = {}
        for size in REQUEST_SIZES:
            instances = [dict(zip(names, map(float, row), strict=True)) for row in model.holdout[:size]]
            outputs = [{"label": "benign", "probabilities": {"malignant": 0.3, "benign": 0.7}}] * size
            timings = []
            for _ in range(repeats if len(body["rules"]) * size < 20_000 else 3):
                started = time.perf_counter()
                contexts = compiled.contexts(instances, {"name": MODEL, "version": 1})
                compiled.evaluate("pre", contexts)
                compiled.evaluate("post", contexts, outputs)
                timings.append(time.perf_counter() - started)
            per_request[size] = sorted(timings)[len(timings) // 2]
        results.append(
            {
                "ruleset": label,
                "rules": len(body["rules"]),
                "condition_chars": sum(len(r["when"]) for r in body["rules"]),
                "allowed": sum(len(r["when"]) for r in body["rules"]) <= MAX_CONDITION_CHARS,
                "compile_ms": compile_s * 1000,
                "rss_kb": held_kb,
                "run_ms": {str(size): seconds * 1000 for size, seconds in per_request.items()},
            }
        )
        del compiled
    return {"model": MODEL, "repeats": repeats, "rulesets": results}


def tables(result: dict[str, Any]) -> list[Table]:
    table = Table(
        "Rules by size: compile once, run per request (medians, ms), memory held by the compiled ruleset",
        ["ruleset", "condition chars", "allowed", "compile", "1 instance", "100 instances", "RSS held (MB)"],
        note="Compile: compile_ruleset against breast-cancer's signature (a save does it per served version; "
        "the store, once per version after a save). Run: contexts + pre stage + post stage. RSS held: the "
        "process's resident memory after compiling minus before (CEL's programs live outside Python's heap).",
    )
    for figures in result["rulesets"]:
        table.add(
            figures["ruleset"],
            f"{figures['condition_chars']:,}",
            "yes" if figures["allowed"] else "no (422)",
            ms(figures["compile_ms"]),
            ms(figures["run_ms"]["1"]),
            ms(figures["run_ms"]["100"]),
            f"{figures['rss_kb'] / 1024:.1f}",
        )
    return [table]
