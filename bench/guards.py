"""Benchmark 4: what the per-instance guards add to a prediction, in-process at the request pipeline.

The guards are the data-quality screening (range and category checks against the baseline, the
anomaly score under the model's QualityPolicy) and the business rules. Policies and rulesets are per
model, and the model store caches a model's summary for its registry TTL, so each configuration is the
same demo model (same bytes, same reference data) registered under its own name:

- `<model>-plain`: QualityPolicy(violations="ignore", anomalies="ignore"), no ruleset;
- `<model>-quality`: QualityPolicy(violations="flag", anomalies="flag"), no ruleset;
- `<model>-rules` (breast-cancer only, rules need named features): flag/flag and RULESET below.

All of them, and the ONNX Runtime floor, are timed in one interleaved run per case.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench import online
from bench.harness import Rows, demo, demo_rows
from bench.online import floor_call
from bench.report import Table, us
from bench.stats import Summary, measure_interleaved, summarize

# The target of the data-quality issue: under 100 µs added per instance, single and batched.
TARGET_US_PER_INSTANCE = 100.0
ACTOR = "aimass-bench"

PLAIN = "no guards"
QUALITY = "quality + anomaly"
RULES = "quality + anomaly + 10 rules"
# Column headings of the step tables.
SHORT_LABELS = {PLAIN: "no guards", QUALITY: "quality + anomaly", RULES: "+ 10 rules"}
CALL_LABELS = {
    "floor": "ORT floor (session.run)",
    PLAIN: "predict, no guards",
    QUALITY: "predict + quality checks + anomaly score",
    RULES: "predict + quality + anomaly + 10 rules",
}

# A realistic ruleset over breast-cancer features (docs/rules.md): both stages, hit policy `all`,
# conditions on inputs and on the model's answer, set and flag actions, and one reject guard for
# impossible values that no held-out row trips (a reject would make predict raise).
RULESET: dict[str, Any] = {
    "hit_policy": "all",
    "rules": [
        {
            "id": "implausible-size",
            "stage": "pre",
            "when": "input.mean_radius <= 0.0 || input.mean_area <= 0.0",
            "then": {"reject": "a tumour has a positive size"},
        },
        {
            "id": "large-tumour",
            "stage": "pre",
            "when": "input.mean_radius > 20.0",
            "then": {"flag": "large tumour"},
        },
        {
            "id": "irregular-texture",
            "stage": "pre",
            "when": "input.mean_texture > 25.0 && input.mean_smoothness > 0.1",
            "then": {"flag": "irregular texture"},
        },
        {
            "id": "concavity-review",
            "stage": "pre",
            "when": "input.worst_concave_points > 0.2",
            "then": {"set": {"review": "concavity"}},
        },
        {
            "id": "small-area",
            "stage": "pre",
            "when": "input.mean_area < 400.0",
            "then": {"set": {"size_band": "small"}},
        },
        {
            "id": "refer-uncertain",
            "stage": "post",
            "when": "output.probabilities['malignant'] > 0.3 && output.label == 'benign'",
            "then": {"set": {"decision": "refer"}},
        },
        {
            "id": "borderline",
            "stage": "post",
            "when": "output.probabilities['benign'] < 0.9 && output.probabilities['benign'] > 0.1",
            "then": {"flag": "low confidence"},
        },
        {
            "id": "routine",
            "stage": "post",
            "when": "output.label == 'benign' && output.probabilities['benign'] >= 0.9",
            "then": {"set": {"decision": "routine"}},
        },
        {
            "id": "urgent",
            "stage": "post",
            "when": "output.label == 'malignant'",
            "then": {"set": {"decision": "urgent", "priority": 1}},
        },
        {
            "id": "large-benign",
            "stage": "post",
            "when": "output.label == 'benign' && input.worst_radius > 18.0",
            "then": {"flag": "large worst radius for a benign call"},
        },
    ],
}


@dataclass(frozen=True)
class Case(online.Case):
    # Whether the case measures the ruleset too (rules need named features: breast-cancer only).
    rules: bool = False


CASES = (
    Case("breast-cancer", 1, 3000, 300, rules=True),
    Case("breast-cancer", 100, 500, 50, rules=True),
    Case("digits", 1, 3000, 300, rules=False),
    Case("digits", 100, 500, 50, rules=False),
)
SHORT = {"breast-cancer": "bc", "digits": "digits"}


def config_name(model: str, config: str) -> str:
    suffix = {PLAIN: "plain", QUALITY: "quality", RULES: "rules"}[config]
    return f"{SHORT[model]}-{suffix}"


def register_configs() -> dict[str, dict[str, str]]:
    """Each demo under one name per configuration, with its policy (and ruleset); model -> config -> name."""
    from aimass import wiring
    from aimass.config import settings
    from aimass.contracts.quality import QualityPolicy
    from aimass.contracts.rules import Ruleset
    from aimass.registration import Reference, register_version, save_ruleset, set_alias

    registry = wiring.registry()
    names: dict[str, dict[str, str]] = {}
    for model in ("breast-cancer", "digits"):
        made = demo(model)
        configs = [PLAIN, QUALITY, RULES] if model == "breast-cancer" else [PLAIN, QUALITY]
        names[model] = {}
        for config in configs:
            name = config_name(model, config)
            record = register_version(
                registry,
                settings().bucket,
                name,
                made.model,
                ACTOR,
                made.enrichment,
                reference=Reference(made.reference_csv, "reference.csv", f"{model} demo training data"),
            )
            set_alias(registry, name, "champion", record.version, ACTOR)
            guarded = "ignore" if config == PLAIN else "flag"
            registry.set_quality_policy(name, QualityPolicy(violations=guarded, anomalies=guarded), ACTOR)
            if config == RULES:
                save_ruleset(registry, name, Ruleset.model_validate(RULESET), ACTOR)
            wiring.serving().store.forget(name)
            names[model][config] = name
    return names


def checked(name: str, config: str, rows: Rows) -> dict[str, Any]:
    """One prediction per configuration before measuring: it must carry what the configuration claims
    (and nothing the plain one should not); returns counts of what the guards found."""
    from aimass import wiring

    predictions = wiring.serving().predict(name, rows.instances)["predictions"]
    if len(predictions) != len(rows.instances):
        raise RuntimeError(f"{name}: {len(predictions)} predictions for {len(rows.instances)} rows")
    items = [p if isinstance(p, dict) else {} for p in predictions]
    screened, ruled = config != PLAIN, config == RULES
    if (
        any(("anomaly" in p) != screened for p in items)
        or any(("rules" in p) != ruled for p in items)
        or (not screened and any("quality" in p for p in items))
    ):
        raise RuntimeError(f"{name}: predictions are not guarded as {config!r} claims: {predictions[0]}")
    return {
        "anomalous": sum(bool(p.get("anomaly", {}).get("anomalous")) for p in items),
        "with_violations": sum("quality" in p for p in items),
        "rules_fired": sum(len(p.get("rules", ())) for p in items),
    }


def run_case(names: dict[str, str], case: Case, scale: float) -> dict[str, Any]:
    from aimass import wiring

    rows = demo_rows(case.model, case.rows)
    serving = wiring.serving()
    configs = [c for c in (PLAIN, QUALITY, RULES) if c in names and (case.rules or c != RULES)]
    found = {config: checked(names[config], config, rows) for config in configs}
    calls: dict[str, Callable[[], object]] = {"floor": floor_call(case.model, rows.tensor)}
    for config in configs:
        calls[config] = partial(serving.predict, names[config], rows.instances)
    summaries = measure_interleaved(calls, max(50, int(case.iterations * scale)), case.warmup)
    plain = summaries[PLAIN].p50_us
    return {
        "case": case.label,
        "model": case.model,
        "rows": case.rows,
        "calls": {config: summary.as_dict() for config, summary in summaries.items()},
        "added_per_instance_us": {
            config: (summaries[config].p50_us - plain) / case.rows for config in configs if config != PLAIN
        },
        "found": found,
    }


# The steps of the request pipeline timed where they run: (label, module or class, attribute). Nested
# labels (indented) are part of the one above. Timed in place, not each on its own in a loop: alone
# in a tight loop, the range check and the anomaly score of one row ran 1.6-1.8 times faster than
# inside a request (measured while writing this benchmark), which would understate what they add.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("unknown keys dropped (without_unknown)", "pipeline", "without_unknown"),
    ("screening, all of it (screen)", "pipeline", "screen"),
    ("  range + category checks (violations)", "RequestChecks", "violations"),
    ("  anomaly score (anomaly_scores)", "RequestChecks", "anomaly_scores"),
    ("findings into the items (annotate)", "Screening", "annotate"),
    ("rules: CEL contexts of the inputs (contexts)", "CompiledRuleset", "contexts"),
    ("rules: 5 pre rules (evaluate)", "CompiledRuleset", "evaluate"),
    ("rules: 5 post rules (evaluate)", "CompiledRuleset", "evaluate"),
    ("rules: any reject? (reject_if_any)", "pipeline", "reject_if_any"),
    ("rules: fired rules into the items (apply)", "CompiledRuleset", "apply"),
    ("for scale: instances -> tensor (v1_feeds)", "codecs", "v1_feeds"),
    ("for scale: ONNX Runtime (onnx.run)", "onnx", "run"),
)


@contextlib.contextmanager
def timed_steps(record: Callable[[str, int], None]) -> Iterator[None]:
    """While inside, each step of STEPS reports its label and duration (ns) to `record`; the code is
    put back as it was on the way out. CompiledRuleset.evaluate is told apart by its stage."""
    from aimass.quality.checks import RequestChecks
    from aimass.quality.screening import Screening
    from aimass.rules import CompiledRuleset
    from aimass.serving import codecs, pipeline
    from aimass.serving.backends import onnx

    owners: dict[str, Any] = {
        "pipeline": pipeline,
        "codecs": codecs,
        "onnx": onnx,
        "RequestChecks": RequestChecks,
        "Screening": Screening,
        "CompiledRuleset": CompiledRuleset,
    }
    clock = time.perf_counter_ns
    labels: dict[tuple[str, str], list[str]] = {}
    for label, owner, attribute in STEPS:
        labels.setdefault((owner, attribute), []).append(label)
    saved = {key: vars(owners[key[0]])[key[1]] for key in labels}

    def timer(original: Callable[..., Any], names: list[str]) -> Callable[..., Any]:
        staged = len(names) == 2  # evaluate: pre, then post

        def timing(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            result = original(*args, **kwargs)
            elapsed = clock() - started
            record(names[args[1] == "post"] if staged else names[0], elapsed)
            return result

        return timing

    try:
        for (owner, attribute), names in labels.items():
            setattr(owners[owner], attribute, timer(saved[(owner, attribute)], names))
        yield
    finally:
        for (owner, attribute), original in saved.items():
            setattr(owners[owner], attribute, original)


PART_CASES = (
    Case("breast-cancer", 1, 2000, 200, rules=True),
    Case("breast-cancer", 100, 300, 30, rules=True),
    Case("digits", 1, 2000, 200, rules=False),
)


def run_parts(names: dict[str, str], case: Case, scale: float) -> dict[str, Any]:
    """Each configuration's predict calls, interleaved, with their steps timed in place."""
    from aimass import wiring

    serving = wiring.serving()
    rows = demo_rows(case.model, case.rows)
    configs = [c for c in (PLAIN, QUALITY, RULES) if c in names]
    samples: dict[str, dict[str, list[int]]] = {config: {} for config in configs}
    current = [configs[0]]

    def call(config: str) -> object:
        current[0] = config
        return serving.predict(names[config], rows.instances)

    for config in configs:
        for _ in range(case.warmup):
            call(config)
    calls: dict[str, Callable[[], object]] = {config: partial(call, config) for config in configs}

    def record(label: str, elapsed_ns: int) -> None:
        samples[current[0]].setdefault(label, []).append(elapsed_ns)

    with timed_steps(record):
        summaries = measure_interleaved(calls, max(50, int(case.iterations * scale)), 0)
    steps = []
    for label, _, _ in STEPS:
        per_config = {}
        for config in configs:
            taken = samples[config].get(label)
            if taken:
                summary = summarize(taken, 1)
                per_config[config] = {
                    "p50_us": summary.p50_us,
                    "p99_us": summary.p99_us,
                    "calls_per_predict": len(taken) / summaries[config].count,
                }
        if per_config:
            steps.append({"step": label, "configs": per_config})
    return {
        "case": case.label,
        "rows": case.rows,
        "configs": configs,
        "predict": {config: summary.as_dict() for config, summary in summaries.items()},
        "steps": steps,
    }


@contextlib.contextmanager
def without_observers() -> Iterator[None]:
    """The request pipeline alone: the Lambda handler's metrics observer (attached when benchmark 1 ran in
    this process) would buffer and print EMF metrics, the same for every configuration."""
    from aimass import wiring

    saved = list(wiring.prediction_observers)
    wiring.prediction_observers.clear()
    try:
        yield
    finally:
        wiring.prediction_observers.extend(saved)


def run(scale: float = 1.0) -> dict[str, Any]:
    with without_observers():
        names = register_configs()
        return {
            "names": names,
            "ruleset": RULESET,
            "cases": [run_case(names[case.model], case, scale) for case in CASES],
            "parts": [run_parts(names[case.model], case, scale) for case in PART_CASES],
        }


def verdict(added: float) -> str:
    return "met" if added < TARGET_US_PER_INSTANCE else "not met"


def tables(result: dict[str, Any]) -> list[Table]:
    latency = Table(
        "The request pipeline's predict with and without the per-instance guards, vs the ONNX Runtime "
        "floor (µs)",
        ["case", "call", "p50", "p99", "p50 - no guards", "added per instance", "target < 100 µs"],
        note="One interleaved run per case. Added per instance = (p50 - p50 of `predict, no guards`) / "
        "rows. Each configuration is the same demo model registered under its own name with its own "
        "policy and rules.",
    )
    for case in result["cases"]:
        calls = {config: Summary(**summary) for config, summary in case["calls"].items()}
        plain = calls[PLAIN].p50_us
        for config, summary in calls.items():
            added = case["added_per_instance_us"].get(config)
            latency.add(
                case["case"] if config == "floor" else "",
                CALL_LABELS[config],
                us(summary.p50_us),
                us(summary.p99_us),
                "" if config in ("floor", PLAIN) else us(summary.p50_us - plain),
                "" if added is None else us(added),
                "" if added is None else verdict(added),
            )
    found = Table(
        "What the guards found on the measured rows (first held-out rows)",
        ["case", "configuration", "anomalous", "rows with violations", "rules fired"],
        note="Checked once before measuring: every guarded prediction carries `anomaly` (and `rules`), the "
        "plain ones neither.",
    )
    for case in result["cases"]:
        for config, counts in case["found"].items():
            if config == PLAIN:
                continue
            found.add(
                case["case"],
                config,
                str(counts["anomalous"]),
                str(counts["with_violations"]),
                str(counts["rules_fired"]) if config == RULES else "",
            )
    parts = []
    for breakdown in result["parts"]:
        configs, rows = breakdown["configs"], breakdown["rows"]
        last = configs[-1]
        table = Table(
            f"Where the time goes: {breakdown['case']}, each step timed inside the request pipeline "
            "(p50, µs)",
            ["step", *(SHORT_LABELS[c] for c in configs), f"{SHORT_LABELS[last]}, per instance"],
            note="Interleaved predict calls of each configuration, with a timer around each step of "
            "aimass.serving.pipeline (a few tenths of a µs each). Indented steps are part of the one "
            "above. `no guards` still drops unknown keys and makes the screening's matrix; a blank: the "
            "step does not run in that configuration.",
        )
        for step in breakdown["steps"]:
            timed = step["configs"]
            table.add(
                step["step"],
                *(us(timed[c]["p50_us"]) if c in timed else "" for c in configs),
                us(timed[last]["p50_us"] / rows) if last in timed else "",
            )
        predict = {config: Summary(**summary) for config, summary in breakdown["predict"].items()}
        table.add(
            "the request pipeline's predict, whole (timers included)",
            *(us(predict[c].p50_us) for c in configs),
            us(predict[last].p50_us / rows),
        )
        parts.append(table)
    return [latency, found, *parts]
