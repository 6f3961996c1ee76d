"""The parts a process builds once from the settings: the registry, the capture writer, the model
store and the request pipeline over it; and the settings values the batch takes.
Every Lambda function, the local stack and the CLI get them here; the HTTP app's views too
(aimass.api.deps adds only what is HTTP's). Nothing here imports a web framework: the batch and
pipeline functions do not pay for one, and the online function does not import the batch (its
values are built with lazy imports). The pipeline's tasks are not in the core layer: the pipeline
function builds their settings values itself."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from aimass.capture import CaptureWriter
from aimass.config import settings
from aimass.registry import Registry
from aimass.serving.breaker import Breakers
from aimass.serving.build import request_pipeline
from aimass.serving.live import LiveCounts
from aimass.serving.pipeline import Answered, RequestPipeline, Served
from aimass.serving.shadow import ShadowResult
from aimass.serving.store import Recheck

if TYPE_CHECKING:  # aimass.feedback: imported by the first feedback request, not by a prediction's init
    from aimass.batch.drop import BatchSettings
    from aimass.feedback import Recorded
    from aimass.monitoring.actions import MetricsSink, MonitorActions
    from aimass.monitoring.runs import MonitorSettings
    from aimass.pipeline.triggers import DriftRetraining

log = logging.getLogger(__name__)

# Called by the request pipeline after each answer; the Lambda entry adds its metrics here, the local
# server its Prometheus metrics.
prediction_observers: list[Callable[[Answered], None]] = []
# Called by the request pipeline once per request, answered or not (its outcome and time); the Lambda
# entry adds its metrics here, the local server its Prometheus metrics (aimass.prometheus).
request_observers: list[Callable[[Served], None]] = []
# Called on the shadow worker's thread after each shadow run; the Lambda entry adds its metrics here.
shadow_observers: list[Callable[[ShadowResult], None]] = []
# Called after each feedback request that recorded labels; the Lambda entry adds its metrics here.
feedback_observers: list[Callable[[Recorded], None]] = []
# Where a monitor run's metrics go (aimass.monitoring.actions.MetricsSink), each of them: the Lambda
# entry adds EMF here, the local server its Prometheus gauges; with none, they are logged.
monitor_metrics: list[Callable[[str, int, dict[str, float]], None]] = []


@cache
def registry() -> Registry:
    return Registry(settings().registry_table)


def latest_version(name: str) -> int | None:
    """A model's latest registered version, or None when it is not registered (any more)."""
    from aimass.errors import NotFound

    try:
        return registry().get_model(name).latest_version
    except NotFound:
        return None


@cache
def capture() -> CaptureWriter | None:
    s = settings()
    if not s.capture_enabled or s.capture_sample_fraction <= 0:
        return None
    return CaptureWriter(s.bucket, s.capture_sample_fraction)


@cache
def pii_key() -> bytes:
    """The key personal data is tokenised with (aimass.privacy): AIMASS_PII_KEY, else the secret
    AIMASS_PII_KEY_SECRET names. Asked for only when a token is first made (never on a request's path:
    capture masks its lines on its writer threads)."""
    from aimass.privacy import key_from_text

    s = settings()
    if s.pii_key is not None:
        return key_from_text(s.pii_key.get_secret_value())
    if s.pii_key_secret:
        from aimass.gateways.secrets import secret_text

        return key_from_text(secret_text(s.pii_key_secret))
    raise LookupError("no key to tokenise personal data with: set AIMASS_PII_KEY or AIMASS_PII_KEY_SECRET")


def flush_capture(shadows: bool = True) -> None:
    """Wait for this process's captures in flight (before an invocation ends, before feedback reads);
    without `shadows`, not for a shadow version's lines (aimass.capture.CaptureWriter.flush)."""
    if capture.cache_info().currsize and (writer := capture()) is not None:
        writer.flush(shadows=shadows)


@cache
def live() -> LiveCounts:
    """This process's live counts of models under a rollout (aimass.serving.live)."""
    return LiveCounts(registry().add_live_counts)


def flush_live(due_only: bool = False) -> None:
    """Add this process's live counts to the registry (before they are read; `due_only`: as an
    invocation ends, once their interval has passed). Before they are read, the shadow runs
    enqueued so far are waited for (a second at most), so that a rollout's status counts them."""
    if not due_only and serving.cache_info().currsize:
        serving().shadows.drain(timeout=1.0)
    if live.cache_info().currsize:
        live().flush_if_due() if due_only else live().flush()


def rollout_notices(subject: str, message: str) -> None:
    """Publish a rollout's notice on the pipeline topic (aimass.rollout.Notify); only logged without one."""
    from aimass.gateways import sns

    topic = settings().pipeline_topic_arn
    if not topic:
        log.warning("no pipeline topic (AIMASS_PIPELINE_TOPIC_ARN): notice %r only logged", subject)
        return
    sns.publish(topic, subject, message)


def _sagemaker_runtime() -> Any:
    from aimass import aws

    return aws.client("sagemaker-runtime")


@cache
def breakers() -> Breakers:
    """The circuit breakers of the endpoints this process calls: the request pipeline's, which
    readiness reads and the local stack's endpoint supervisor trips and closes."""
    s = settings()
    return Breakers(s.sagemaker_breaker_failures, s.sagemaker_breaker_cooldown_s)


@cache
def serving() -> RequestPipeline:
    """The request pipeline over the model store, with a backend for each kind of version."""
    s = settings()
    writer = capture()
    return request_pipeline(
        registry(),
        s.model_cache_dir,
        intra_op_threads=s.ort_intra_op_threads,
        inter_op_threads=s.ort_inter_op_threads,
        registry_ttl_s=s.registry_ttl_s,
        registry_max_stale_s=s.registry_max_stale_s,
        recheck=Recheck(s.integrity_recheck_s, s.integrity_recheck_most_s),
        max_instances=s.max_instances,
        observers=prediction_observers,
        capture=writer,
        sagemaker_runtime=_sagemaker_runtime,
        sagemaker_retry_after_s=s.sagemaker_retry_after_s,
        sagemaker_breakers=breakers(),
        live=live(),
        shadow_capture=None if writer is None else writer.shadow,
        shadow_observers=shadow_observers,
        pii_key=pii_key,
        request_observers=request_observers,
    )


def prepare() -> None:
    """Make, during a function's init, what its first request would otherwise make: the AWS clients of
    the request path (the registry's DynamoDB, the artifacts' S3: ~0.1 s, bench/RESULTS.md) and the
    request pipeline. Reads nothing from AWS. Init runs at full CPU (and, under SnapStart, once per
    published version, into the snapshot); the first request no longer pays it."""
    from aimass import aws

    aws.client("dynamodb")
    aws.client("s3")
    serving()


def drift_retraining() -> DriftRetraining:
    """The drift trigger's settings (read at each call: they are values, not a part to keep)."""
    from aimass.pipeline.triggers import DriftRetraining

    s = settings()
    return DriftRetraining(
        fraction=s.drift_retraining_fraction,
        cooldown_hours=s.drift_retraining_cooldown_hours,
        claims_table=s.idempotency_table,
    )


def monitor_settings(api: bool = False) -> MonitorSettings:
    """A monitor run's settings; through the API (`api`), with the API's row cap."""
    from aimass.monitoring.runs import MonitorSettings

    s = settings()
    return MonitorSettings(
        bucket=s.bucket,
        min_rows=s.monitor_min_rows,
        max_rows=s.monitor_api_max_rows if api else s.monitor_max_rows,
    )


def monitor_actions(metrics: MetricsSink | None = None) -> MonitorActions:
    """What a finished monitor run does: metrics to `metrics` (the Lambda's EMF; else logged), a
    notice on the pipeline topic, retraining through the drift trigger's cooldown."""
    from aimass.gateways import sns
    from aimass.gateways.s3 import Bucket
    from aimass.monitoring import actions, runs

    s = settings()
    return actions.MonitorActions(
        metrics=metrics or (_every_monitor_sink if monitor_metrics else actions.log_metrics),
        topic_arn=s.pipeline_topic_arn,
        publish=sns.publish,
        retraining=drift_retraining(),
        summary_uri=lambda model, run: Bucket(s.bucket).uri(runs.run_prefix(model, run) + runs.SUMMARY),
    )


def _every_monitor_sink(model: str, version: int, figures: dict[str, float]) -> None:
    for sink in monitor_metrics:
        sink(model, version, figures)


def batch_settings() -> BatchSettings:
    from aimass.batch.drop import BatchSettings

    s = settings()
    return BatchSettings(
        bucket=s.bucket,
        chunk_rows=s.batch_chunk_rows,
        drift_sample_rows=s.batch_drift_sample_rows,
        work_dir=s.batch_work_dir,
        map_threshold_bytes=s.batch_map_threshold_bytes,
        part_rows=s.batch_part_rows,
        map_concurrency=s.batch_map_concurrency,
        state_machine_arn=s.batch_state_machine_arn,
        retraining=drift_retraining(),
    )


def registry_changed(name: str) -> None:
    """A change made through this process's own API reaches its model store at once (the local server
    serves both); other containers see it when their registry TTL runs out."""
    if serving.cache_info().currsize:
        serving().store.forget(name)


def reset() -> None:
    """Build everything again from the settings at next use (after they changed: tests, the local stack)."""
    flush_capture()
    flush_live()
    capture.cache_clear()
    pii_key.cache_clear()
    live.cache_clear()
    registry.cache_clear()
    serving.cache_clear()
    breakers.cache_clear()
