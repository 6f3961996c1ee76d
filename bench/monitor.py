"""Benchmark 13: monitor runs (issue 18), their speed and memory, and how often drift is raised.

- Throughput and memory: N captured rows of breast-cancer (30 features) written straight to the
  embedded S3 in the capture format (aimass.capture: objects of 1,000 lines in the current hour),
  then one monitor run over them in a fresh process pointed at that S3 (as the Lambda would be),
  timed from its start to its summary written; its peak RSS is VmHWM (see bench/batch.py).
- False drift and detection, in process, on the drift functions (aimass.quality.drift) as a run
  calls them: 100 clean windows of 100 and of 1,000 rows, and 100 windows with one feature (drawn at
  random each time) shifted by 0.5 of its reference standard deviation. Three baselines of 30
  features: synthetic standard normals (5,000 reference rows) and synthetic categories (4 equally
  likely, 5,000 rows) whose windows are fresh draws, and the breast-cancer demo's (its 426 training
  rows), whose windows are drawn with replacement from those rows (the only population windows of
  1,000 rows can come from).
  Reported with the Holm correction the service uses, and without it (each feature at 1 %, as the
  batch report judged before).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import aws_env, demo, layer_env
from bench.report import Table

ROWS = 1_000_000
QUICK_ROWS = 100_000
LINES_PER_OBJECT = 1000
WINDOWS = 100
WINDOW_SIZES = (100, 1000)
SHIFT_SD = 0.5
SEED = 0
MODEL = "breast-cancer"

CHILD = """
import json, sys, time
from aimass import wiring
from aimass.monitoring import runs

def high_water_mb():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

registry = wiring.registry()
registry.get_model(sys.argv[1])
before = high_water_mb()
started = time.perf_counter()
summary = runs.run(registry, runs.MonitorSettings(wiring.settings().bucket, 100, None), sys.argv[1], 7200)
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "rows": summary["rows"],
    "skipped_lines": summary["skipped_lines"],
    "outcome": summary["outcome"],
    "rss_before_mb": before,
    "peak_rss_mb": high_water_mb(),
}))
"""


def capture_objects(stack: Any, rows: int) -> float:
    """`rows` captured rows of the demo in the current hour, in the capture format; MB written."""
    from aimass import aws
    from aimass.capture import capture_key
    from aimass.contracts.common import iso_utc

    made = demo(MODEL)
    names = [f.name for f in made.enrichment.features]
    rng = np.random.default_rng(SEED)
    s3 = aws.client("s3")
    now = datetime.now(UTC)
    hour, at = now.strftime("%Y%m%d%H"), iso_utc(now)
    written = 0
    for start in range(0, rows, LINES_PER_OBJECT):
        n = min(LINES_PER_OBJECT, rows - start)
        block = made.holdout[rng.integers(0, len(made.holdout), n)] * rng.normal(1, 0.01, (n, len(names)))
        request = f"{start:032x}"
        lines = []
        for i, row in enumerate(block.astype(np.float32).tolist()):
            label = "benign" if rng.random() < 0.63 else "malignant"
            lines.append(
                json.dumps(
                    {
                        "captureData": {
                            "endpointInput": {
                                "observedContentType": "application/json",
                                "mode": "INPUT",
                                "data": json.dumps(dict(zip(names, row, strict=True))),
                                "encoding": "JSON",
                            },
                            "endpointOutput": {
                                "observedContentType": "application/json",
                                "mode": "OUTPUT",
                                "data": json.dumps({"label": label}),
                                "encoding": "JSON",
                            },
                        },
                        "eventMetadata": {
                            "eventId": f"{MODEL}:{hour}:{request}:{i}",
                            "inferenceTime": at,
                            "model": MODEL,
                            "modelVersion": 1,
                            "protocol": "v1",
                        },
                        "eventVersion": "0",
                    }
                )
            )
        body = ("\n".join(lines) + "\n").encode()
        written += len(body)
        s3.put_object(Bucket=stack.bucket, Key=capture_key(MODEL, hour, request), Body=body)
    return written / 2**20


def throughput(stack: Any, rows: int) -> dict[str, Any]:
    from aimass import aws

    started = time.perf_counter()
    megabytes = capture_objects(stack, rows)
    writing = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="aimass-bench-monitor-") as cache:
        env = {**os.environ, **aws_env(stack, Path(cache)), **layer_env(Path(__file__).resolve().parents[1])}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, MODEL],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=3600,
        )
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    # The next run of the benchmark starts from an empty capture
    s3 = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=f"capture/{MODEL}/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=stack.bucket, Delete={"Objects": keys})
    return {
        **found,
        "rows_written": rows,
        "capture_mb": megabytes,
        "writing_seconds": writing,
        "rows_per_s": found["rows"] / found["seconds"],
    }


def _drifted(
    windows: list[Any], statistics: list[dict[str, Any]], numeric: bool
) -> dict[str, list[set[int]]]:
    """Per window, the features found drifted: with Holm's correction (the service's rule) and with
    each feature's own p-value at 1 % (the rule before it)."""
    from aimass.quality import drift

    found: dict[str, list[set[int]]] = {"holm": [], "uncorrected": []}
    for window in windows:
        results = []
        for j, described in enumerate(statistics):
            if numeric:
                result = drift.numeric_drift(str(j), window[:, j], described["numerical_statistics"])
            else:
                result = drift.categorical_drift(str(j), list(window[:, j]), described["string_statistics"])
            if result is not None:
                results.append(result)
        judged = drift.judge(results)
        found["holm"].append({int(d["feature"]) for d in judged if d["drifted"]})
        found["uncorrected"].append(
            {
                int(d["feature"])
                for d in judged
                if drift.p_value(d) < 0.01 and (not numeric or d["psi"] > 0.2 or d["ks_statistic"] > 0.1)
            }
        )
    return found


def rates(reference: np.ndarray, draw: Any, rng: np.random.Generator, numeric: bool = True) -> dict[str, Any]:
    """For windows of each size: the share of clean windows flagging anything, and for numeric
    features the share of windows with one feature shifted by 0.5 sd where it was found (alone)."""
    from aimass.quality.baseline import feature_statistics
    from aimass.quality.columns import Column

    width = reference.shape[1]
    kind = "numeric" if numeric else "string"
    statistics = [feature_statistics(Column(str(j), kind), reference[:, j]) for j in range(width)]
    out: dict[str, Any] = {"features": width, "reference_rows": len(reference), "kind": kind, "by_rows": {}}
    for rows in WINDOW_SIZES:
        figures: dict[str, float] = {}
        clean = _drifted([draw(rng, rows) for _ in range(WINDOWS)], statistics, numeric)
        for how, found in clean.items():
            figures[f"false_drift_rate_{how}"] = sum(1 for f in found if f) / WINDOWS
        if numeric:
            std = reference.std(axis=0)
            features = rng.integers(0, width, WINDOWS).tolist()
            windows = []
            for feature in features:
                window = draw(rng, rows)
                window[:, feature] += SHIFT_SD * std[feature]
                windows.append(window)
            for how, found in _drifted(windows, statistics, numeric).items():
                pairs = list(zip(features, found, strict=True))
                figures[f"detection_rate_{how}"] = sum(feature in f for feature, f in pairs) / WINDOWS
                figures[f"found_alone_rate_{how}"] = sum(f == {feature} for feature, f in pairs) / WINDOWS
        out["by_rows"][rows] = figures
    return out


def drift_rates() -> dict[str, Any]:
    from aimass.quality.baseline import read_reference
    from aimass.quality.columns import Column

    rng = np.random.default_rng(SEED)
    synthetic = rng.normal(size=(5000, 30))
    letters = np.array(list("abcd"), dtype=object)
    categorical = letters[rng.integers(0, 4, (5000, 30))]
    made = demo(MODEL)
    columns = [Column(f.name, "numeric") for f in made.enrichment.features]
    bc = read_reference(made.reference_csv, "reference.csv", columns).astype(np.float64)
    return {
        "synthetic normal": rates(synthetic, lambda r, n: r.normal(size=(n, 30)), rng),
        "synthetic categorical": rates(
            categorical, lambda r, n: letters[r.integers(0, 4, (n, 30))], rng, numeric=False
        ),
        "breast-cancer": rates(bc, lambda r, n: bc[r.integers(0, len(bc), n)].copy(), rng),
    }


def run(stack: Any, quick: bool) -> dict[str, Any]:
    return {"throughput": throughput(stack, QUICK_ROWS if quick else ROWS), "drift": drift_rates()}


def tables(result: dict[str, Any]) -> list[Table]:
    t = result["throughput"]
    speed = Table(
        f"A monitor run over {t['rows']:,} captured rows of {MODEL} (30 features), fresh process",
        ["rows", "capture (MB)", "seconds", "rows/s", "RSS before (MB)", "peak RSS (MB)"],
        note="From the run's start to its summary written: list and GET the hour's objects from the "
        "embedded S3, parse each line, fold the rows into matrices, statistics, checks, drift, anomaly "
        "scores, write the files. One process, one thread.",
    )
    speed.add(
        f"{t['rows']:,}",
        f"{t['capture_mb']:,.0f}",
        f"{t['seconds']:.1f}",
        f"{t['rows_per_s']:,.0f}",
        f"{t['rss_before_mb']:,.0f}",
        f"{t['peak_rss_mb']:,.0f}",
    )
    rates_table = Table(
        f"Drift raised in {WINDOWS} windows per row count: clean, and with one feature shifted by "
        f"{SHIFT_SD} of its standard deviation",
        [
            "baseline",
            "rows per window",
            "rule",
            "clean windows flagging anything",
            "shift found",
            "found alone",
        ],
        note="Holm: the service's rule (Holm-adjusted p < 1 %, and for numeric features PSI > 0.2 or "
        "KS > 0.1). Uncorrected: the same rule on each feature's own p-value. Target: at most 5 % of clean "
        "windows flag anything; 'found alone': the shifted feature and no other.",
    )
    for name, r in result["drift"].items():
        for rows, figures in r["by_rows"].items():
            for how in ("holm", "uncorrected"):
                shift = (
                    f"{figures[f'detection_rate_{how}']:.0%}" if f"detection_rate_{how}" in figures else "-"
                )
                alone = (
                    f"{figures[f'found_alone_rate_{how}']:.0%}"
                    if f"found_alone_rate_{how}" in figures
                    else "-"
                )
                rates_table.add(
                    f"{name} ({r['features']} features, {r['reference_rows']:,} reference rows)",
                    f"{int(rows):,}",
                    how,
                    f"{figures[f'false_drift_rate_{how}']:.0%}",
                    shift,
                    alone,
                )
    return [speed, rates_table]
