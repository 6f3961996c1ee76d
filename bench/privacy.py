"""Benchmark 13: what masking personal features adds to a captured line (aimass.capture.lines), for
the 30-feature breast-cancer demo: no personal feature, two erased, two tokenised (HMAC-SHA256), one
instance per request and a request of 100 instances; and what the request's own thread pays (the
store's cached masker and the copy of the answer that carries it).

Capture shapes and masks its lines on its writer threads, off the request's path; the figures say
what a busy capture spends per line all the same."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bench.harness import demo, demo_rows
from bench.report import Table, us
from bench.stats import Summary, measure_interleaved

ITERATIONS, WARMUP = 3000, 300
PERSONAL = ["mean_radius", "mean_texture"]
KEY = bytes(range(32))


def run(scale: float = 1.0) -> dict[str, Any]:
    from aimass.capture import lines
    from aimass.contracts.quality import QualityPolicy
    from aimass.contracts.registry import ModelVersion
    from aimass.privacy import masker
    from aimass.serving.backends.onnx import inspect
    from aimass.serving.codecs import v1_feeds
    from aimass.serving.pipeline import Answered
    from aimass.signature import enrich, from_session

    made = demo("breast-cancer")
    signature = enrich(from_session(inspect(made.model)), made.enrichment)
    record = ModelVersion(
        name="breast-cancer",
        version=1,
        artifact_uri="s3://b/k",
        sha256="0",
        size_bytes=1,
        signature=signature,
    )
    at = datetime(2026, 12, 6, 16, tzinfo=UTC)
    maskers = {
        "none": masker(signature, QualityPolicy(), lambda: KEY),
        "2 erased": masker(signature, QualityPolicy(pii_features=PERSONAL), lambda: KEY),
        "2 tokenised": masker(signature, QualityPolicy(pii="tokenise", pii_features=PERSONAL), lambda: KEY),
    }
    calls = {}
    for count in (1, 100):
        rows = demo_rows("breast-cancer", count).instances
        plain = Answered(record, count, feeds=v1_feeds(signature, rows), given=rows, predictions=[{}] * count)
        ids = [f"breast-cancer:2026120616:{'0' * 32}:{i}" for i in range(count)]
        for label, mask in maskers.items():
            answered = replace(plain, masker=mask)
            calls[f"{label}, x{count}"] = lambda a=answered, i=ids: lines(a, i, at)
    one = Answered(record, 1)
    tokenising = maskers["2 tokenised"]
    calls["request thread: replace(answered, masker=...)"] = lambda: replace(one, masker=tokenising)
    summaries = measure_interleaved(calls, max(100, int(ITERATIONS * scale)), WARMUP)
    return {"calls": {label: summary.as_dict() for label, summary in summaries.items()}}


def tables(result: dict[str, Any]) -> list[Table]:
    calls = {label: Summary(**figures) for label, figures in result["calls"].items()}
    table = Table(
        "A captured request's lines, breast-cancer (30 features), per line (µs)",
        ["lines", "personal features", "p50 per line", "p99 per line", "added p50 per line"],
        note="capture.lines() in-process, interleaved blocks of 25 calls; a request of 100 instances "
        "is divided by 100.",
    )
    for count in (1, 100):
        base = calls[f"none, x{count}"].p50_us / count
        for label in ("none", "2 erased", "2 tokenised"):
            summary = calls[f"{label}, x{count}"]
            p50 = summary.p50_us / count
            table.add(
                f"x{count}",
                label,
                us(p50),
                us(summary.p99_us / count),
                f"{us(p50 - base)} ({(p50 - base) / base:.1%})",
            )
    thread = calls["request thread: replace(answered, masker=...)"]
    table.add("request thread", "2 tokenised", us(thread.p50_us), us(thread.p99_us), "")
    return [table]
