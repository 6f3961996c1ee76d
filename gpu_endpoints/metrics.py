"""The inference server's Prometheus metrics (`GET /metrics`): its requests and their time, counted as
they are answered, and each loaded model's batching and queue, read from its batcher at each scrape
(the request path pays for two counter updates, nothing more). Names and labels: docs/metrics.md.

With several worker processes (SAGEMAKER_MODEL_SERVER_WORKERS) each answers for itself: a scrape
reads the one process that took it. With front ends (AIMASS_GPU_FRONTENDS) the requests and their
durations are the front end's that took the scrape, the batching figures the model process's."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gpu_endpoints.models import ModelStore

CONTENT_TYPE = CONTENT_TYPE_LATEST
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Requests joined in one model call: powers of two up to the largest max_batch_size worth setting.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class BatchingCollector(Collector):
    """Each loaded model's batches, rows, failures and queue, as its batcher counted them."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        sizes = HistogramMetricFamily(
            "aimass_inference_batch_size", "Requests joined in one model call", labels=["model"]
        )
        rows = CounterMetricFamily("aimass_inference_rows", "Rows run through the model", labels=["model"])
        failed = CounterMetricFamily(
            "aimass_inference_failed_requests", "Requests whose model call failed", labels=["model"]
        )
        depth = GaugeMetricFamily(
            "aimass_inference_queue_depth", "Requests waiting for a batch or running", labels=["model"]
        )
        for name, model in list(self.store.loaded.items()):
            batcher = model.batcher
            counted = dict(batcher.batch_sizes)
            sizes.add_metric(
                [name], list(_buckets(counted)), sum_value=sum(s * n for s, n in counted.items())
            )
            rows.add_metric([name], batcher.rows)
            failed.add_metric([name], batcher.failed)
            depth.add_metric([name], batcher.outstanding)
        yield from (sizes, rows, failed, depth)


def _buckets(counted: dict[int, int]) -> Iterator[tuple[str, float]]:
    """Cumulative counts of batches of at most each bound, then +Inf."""
    for bound in BATCH_SIZE_BUCKETS:
        yield str(float(bound)), sum(n for size, n in counted.items() if size <= bound)
    yield "+Inf", sum(counted.values())


class ServerMetrics:
    """The metrics of one server process, in a registry of their own (with the process metrics)."""

    def __init__(self, store: ModelStore) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        registry.register(BatchingCollector(store))
        self.requests = Counter(
            "aimass_inference_requests",
            "Invocations answered, by model and HTTP status",
            ["model", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "aimass_inference_request_duration_seconds",
            "Time from an invocation's arrival to its answer, by model",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def answered(self, model: str, status: int, seconds: float) -> None:
        self.requests.labels(model, str(status)).inc()
        self.duration.labels(model).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
