"""The request pipeline put together from values: the model store over the registry, a backend for
each kind of version, the observers and capture. The Lambda wiring and the tests build it here."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aimass.registry import Registry
from aimass.serving.backends import BackendKind
from aimass.serving.backends.graph import GraphBackend
from aimass.serving.backends.onnx import OnnxBackend
from aimass.serving.backends.sagemaker import SageMakerBackend
from aimass.serving.breaker import Breakers
from aimass.serving.live import LiveCounts
from aimass.serving.pipeline import Answered, Capture, RequestPipeline, Served
from aimass.serving.shadow import ShadowCapture, ShadowResult
from aimass.serving.store import ModelStore, Recheck


def request_pipeline(
    registry: Registry,
    cache_dir: Path,
    *,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    registry_ttl_s: float = 5.0,
    registry_max_stale_s: float = 300.0,
    recheck: Recheck = Recheck(),
    max_instances: int = 10_000,
    observers: Sequence[Callable[[Answered], None]] = (),
    capture: Capture | None = None,
    sagemaker_runtime: Callable[[], Any] | None = None,
    sagemaker_retry_after_s: int = 2,
    sagemaker_breakers: Breakers | None = None,
    live: LiveCounts | None = None,
    clock: Callable[[], float] = time.monotonic,
    shadow_capture: ShadowCapture | None = None,
    shadow_observers: Sequence[Callable[[ShadowResult], None]] = (),
    pii_key: Callable[[], bytes] | None = None,
    request_observers: Sequence[Callable[[Served], None]] = (),
) -> RequestPipeline:
    """`sagemaker_runtime` makes the SageMaker Runtime client; without it, versions served by an
    endpoint cannot be reached from here (503); `sagemaker_breakers` are their endpoints' circuit
    breakers (None: none); `shadow_capture` writes a shadow version's answers beside the served
    ones (aimass.capture.CaptureWriter.shadow); `pii_key` gives the key personal features are
    tokenised with (aimass.privacy)."""
    backends: dict[str, BackendKind] = {"lambda": OnnxBackend(cache_dir, intra_op_threads, inter_op_threads)}
    if sagemaker_runtime is not None:
        backends["sagemaker"] = SageMakerBackend(
            sagemaker_runtime, sagemaker_retry_after_s, sagemaker_breakers
        )
    store = ModelStore(registry, backends, registry_ttl_s, clock, registry_max_stale_s, recheck, pii_key)
    # A graph's members run through the store itself: their sessions and endpoints are the store's.
    backends["graph"] = GraphBackend(lambda: store)
    return RequestPipeline(
        store,
        max_instances,
        observers,
        capture,
        live,
        shadow_capture,
        shadow_observers,
        request_observers=request_observers,
    )
