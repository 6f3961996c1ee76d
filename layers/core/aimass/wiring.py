"""The parts a process builds once from the settings: the registry, the capture writer and the
predictor. Every Lambda function, the local stack and the CLI get them here; the HTTP app's views too
(aimass.api.deps adds only what is HTTP's). Nothing here imports a web framework: the batch and
pipeline functions do not pay for one."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from aimass.capture import CaptureWriter
from aimass.config import settings
from aimass.contracts import Backend
from aimass.feedback import Recorded
from aimass.inference.predictor import Answered, EndpointRunner, Predictor
from aimass.registry import Registry

# Called by every predictor after each answer; the Lambda entry adds its metrics here.
prediction_observers: list[Callable[[Answered], None]] = []
# Called after each feedback request that recorded labels; the Lambda entry adds its metrics here.
feedback_observers: list[Callable[[Recorded], None]] = []


@cache
def registry() -> Registry:
    return Registry(settings().registry_table)


@cache
def capture() -> CaptureWriter | None:
    s = settings()
    if not s.capture_enabled or s.capture_sample_fraction <= 0:
        return None
    return CaptureWriter(s.bucket, s.capture_sample_fraction)


def flush_capture() -> None:
    """Wait for this process's captures in flight (before an invocation ends, before feedback reads)."""
    if capture.cache_info().currsize and (writer := capture()) is not None:
        writer.flush()


def endpoint_runner(backend: Backend) -> EndpointRunner:
    from aimass import aws
    from aimass.inference import sagemaker

    assert backend.endpoint is not None
    client = aws.client("sagemaker-runtime")
    return sagemaker.EndpointRunner(
        client, backend.endpoint, backend.target_model, settings().sagemaker_retry_after_s
    )


@cache
def predictor() -> Predictor:
    s = settings()
    return Predictor(
        registry(),
        s.model_cache_dir,
        s.ort_intra_op_threads,
        s.ort_inter_op_threads,
        s.registry_ttl_s,
        s.max_instances,
        prediction_observers,
        capture=capture(),
        endpoint_runners=endpoint_runner,
    )


def registry_changed(name: str) -> None:
    """A change made through this process's own API reaches its predictor at once (the local server
    serves both); other containers see it when their registry TTL runs out."""
    if predictor.cache_info().currsize:
        predictor().forget(name)


def reset() -> None:
    """Build everything again from the settings at next use (after they changed: tests, the local stack)."""
    flush_capture()
    capture.cache_clear()
    registry.cache_clear()
    predictor.cache_clear()
