"""Shadow traffic (aimass.serving.shadow): which requests are shadowed, when two answers agree, and a
shadow queue that never holds a request: full, it skips and counts; failing, it counts and logs
at most once a minute."""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

import numpy as np
import pytest

from aimass.contracts.registry import ModelVersion, ShadowSplit, Signature, TensorSpec, TrafficPolicy
from aimass.serving.live import LiveCounts, shadow_summary, summary
from aimass.serving.pipeline import Answered
from aimass.serving.shadow import ShadowJob, Shadows, agrees, compare, sampled
from aimass.serving.traffic import choose
from tests.unit.test_traffic import within_99_9

KEY = ("m", 4, 2)  # model, the policy's live key, the shadow version


def classifier(version: int) -> ModelVersion:
    signature = Signature(
        inputs=[TensorSpec(name="x", dtype="float32", shape=[None, 2])],
        outputs=[
            TensorSpec(name="label", dtype="int64", shape=[None]),
            TensorSpec(name="probabilities", dtype="float32", shape=[None, 2]),
        ],
        task="classification",
        class_labels=["no", "yes"],
        label_output="label",
        probabilities_output="probabilities",
    )
    return ModelVersion(
        name="m", version=version, artifact_uri="s3://b/k", sha256="0" * 64, size_bytes=1, signature=signature
    )


def regressor(version: int) -> ModelVersion:
    signature = Signature(
        inputs=[TensorSpec(name="x", dtype="float32", shape=[None, 2])],
        outputs=[TensorSpec(name="variable", dtype="float32", shape=[None, 1])],
        task="regression",
    )
    return ModelVersion(
        name="m", version=version, artifact_uri="s3://b/k", sha256="0" * 64, size_bytes=1, signature=signature
    )


def classified(version: int, labels: list[int], yes: list[float]) -> Answered:
    probabilities = np.array([[1 - p, p] for p in yes], dtype=np.float32)
    outputs = {"label": np.array(labels, dtype=np.int64), "probabilities": probabilities}
    return Answered(classifier(version), len(labels), outputs=outputs)


def regressed(version: int, values: list[float]) -> Answered:
    outputs = {"variable": np.array([[v] for v in values], dtype=np.float32)}
    return Answered(regressor(version), len(values), outputs=outputs)


def job(served: Answered, ids: list[str] | None = None) -> ShadowJob:
    return ShadowJob("m", 2, KEY, view=None, served=served, ids=ids)


def test_a_shadow_samples_its_percent_of_requests_drawn_or_keyed() -> None:
    assert not sampled(ShadowSplit(version=2, percent=0), "k")
    assert sampled(ShadowSplit(version=2, percent=100), None)
    draw = random.Random(17).random
    for percent in (10, 50):
        split = ShadowSplit(version=2, percent=percent)
        drawn = sum(sampled(split, None, draw) for _ in range(2000))
        keyed = sum(sampled(split, f"user-{i}") for i in range(2000))
        assert within_99_9(drawn, 2000, percent) and within_99_9(keyed, 2000, percent)
    # A key is shadowed every time or never
    split = ShadowSplit(version=2, percent=10)
    assert all(sampled(split, f"user-{i}") == sampled(split, f"user-{i}") for i in range(500))


def test_the_shadowed_keys_are_drawn_apart_from_the_canarys() -> None:
    # Given a canary and a shadow at 10 % each, keyed: the keys the stable version keeps are still
    # shadowed at 10 % (were the same hash used, the shadow's 10 % would all be the canary's)
    policy = TrafficPolicy.model_validate({"canary": {"version": 2, "percent": 10}, "sticky_by": "header"})
    split = ShadowSplit(version=2, percent=10)
    stable_keys = [k for k in (f"user-{i}" for i in range(4000)) if choose(policy, 1, k)[1] == "stable"]
    shadowed = sum(sampled(split, k) for k in stable_keys)
    assert within_99_9(shadowed, len(stable_keys), 10)


@pytest.mark.parametrize(
    ("stable", "shadow", "agree"),
    [
        (
            {"label": "yes", "probabilities": {"yes": 0.9}},
            {"label": "yes", "probabilities": {"yes": 0.6}},
            True,
        ),
        (
            {"label": "yes", "probabilities": {"yes": 0.9}},
            {"label": "no", "probabilities": {"yes": 0.4}},
            False,
        ),
        (100.0, 100.99, True),  # within 1 % of the stable's value
        (100.0, 101.01, False),
        (0.0, 5e-7, True),  # near zero: the absolute floor
        (0.0, 2e-6, False),
        ([1.0, 2.0], [1.0, 2.001], True),
        ([1.0, 2.0], [1.0], False),
        ({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 3.0}, False),
        (float("nan"), float("nan"), True),
        (1.0, float("nan"), False),
        (True, False, False),
        ("x", "x", True),
    ],
)
def test_answers_agree_by_label_or_within_the_tolerance(stable: Any, shadow: Any, agree: bool) -> None:
    assert agrees(stable, shadow) is agree


def test_a_comparison_counts_each_instance_of_the_models_own_answers() -> None:
    served = classified(1, [1, 0, 1], [0.9, 0.2, 0.7])
    assert compare(served, classified(2, [1, 1, 1], [0.6, 0.55, 0.8])) == (3, 2)
    assert compare(regressed(1, [10.0, 20.0]), regressed(2, [10.05, 25.0])) == (2, 1)
    assert compare(served, classified(2, [1], [0.9])) == (0, 0)  # not the same instances


def counted() -> tuple[LiveCounts, list[dict[str, int]]]:
    added: list[dict[str, int]] = []
    return LiveCounts(lambda *args: added.append(args[3]), flush_every_s=None), added


def test_a_full_queue_skips_the_shadow_and_counts_it_without_holding_the_request() -> None:
    live, added = counted()
    running, release = threading.Event(), threading.Event()

    def slow(shadow_job: ShadowJob) -> Answered:
        running.set()
        release.wait(10)
        return classified(2, [1, 0], [0.8, 0.4])

    shadows = Shadows(slow, live, queue_size=2)
    served = classified(1, [1, 1], [0.9, 0.6])
    # Given a shadow run that does not end, and a queue of 2 filled behind it
    assert shadows.submit(job(served))
    assert running.wait(10)
    assert shadows.submit(job(served)) and shadows.submit(job(served))
    # When one more request is sampled, it is not enqueued: skipped and counted, at once
    assert not shadows.submit(job(served))
    assert shadows.skipped == 1
    release.set()
    assert shadows.drain()
    live.flush()
    [counters] = added
    assert (counters["sh_requests"], counters["sh_skipped"]) == (3, 1)
    assert (counters["sh_compared"], counters["sh_agreed"]) == (6, 3)
    figures = shadow_summary(counters)
    assert (figures["requests"], figures["skipped"], figures["agreement"]) == (3, 1, 0.5)


def test_a_failing_shadow_is_counted_and_logged_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    live, added = counted()
    now = [0.0]

    def broken(shadow_job: ShadowJob) -> Answered:
        raise RuntimeError("the shadow's model raised")

    captured: list[Any] = []
    shadows = Shadows(broken, live, capture=lambda *args: captured.append(args), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="aimass.serving.shadow"):
        for at in (0.0, 30.0, 59.0, 61.0):
            now[0] = at
            result = shadows.run_one(job(classified(1, [1], [0.9]), ids=["m:2026120615:" + "a" * 32 + ":0"]))
            assert (result.outcome, result.compared) == ("error", 0)
    assert len([r for r in caplog.records if "the shadow's model raised" in r.getMessage()]) == 2
    assert captured == []  # nothing to capture
    live.flush()
    [counters] = added
    assert (counters["sh_requests"], counters["sh_errors"]) == (4, 4)
    assert shadow_summary(counters)["error_rate"] == 1.0


def test_a_shadow_runs_counters_never_mix_with_what_the_version_served() -> None:
    live, added = counted()
    # Given the shadow version also serving as the canary
    live.request(KEY, 0.004, "answered", False)
    live.answered(KEY, 2, 0, 0, ["yes", "yes"])
    live.shadowed(KEY, 0.003, "answered", 3, 3, 2, ["no", "yes", "yes"])
    live.flush()
    [counters] = added
    served, shadowed = summary(counters), shadow_summary(counters)
    assert (served["requests"], served["instances"], served["compared"]) == (1, 2, 0)
    assert (shadowed["requests"], shadowed["instances"], shadowed["compared"]) == (1, 3, 3)
    assert shadowed["agreement"] == pytest.approx(2 / 3) and served["agreement"] is None
    assert shadowed["classes"] == {"no": pytest.approx(1 / 3), "yes": pytest.approx(2 / 3)}
