"""Prometheus metrics of the local server (`aimass serve`), fed by the request pipeline's observers:
what the deployed stack sends CloudWatch as EMF (aimass.api.lambda_entry), under Prometheus' names.

Only the local server imports this module (aimass.api.app, with its `metrics` part): the online
Lambda never pays for prometheus-client (docs/metrics.md lists the metrics and a scrape config).
"""

from __future__ import annotations

from functools import cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from aimass.feedback import Recorded
from aimass.serving.pipeline import Answered, Served

CONTENT_TYPE = CONTENT_TYPE_LATEST
# From a cached ONNX answer (well under a millisecond) to a slow SageMaker endpoint (seconds).
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A monitor run's figures (aimass.monitoring.actions.metric_values) as gauges: each run's replace the
# last run's, per model and version. Name: (Prometheus name, help).
MONITOR_GAUGES = {
    "MonitoredRows": ("aimass_monitor_rows", "Captured rows the last monitor run judged"),
    "DriftedFeatures": ("aimass_monitor_drifted_features", "Features the last monitor run found drifted"),
    "DriftScore": ("aimass_monitor_drift_score", "Share of the checked features that drifted, last run"),
    "ConstraintViolations": (
        "aimass_monitor_constraint_violations",
        "Constraint violations (constraint_violations.json) of the last monitor run",
    ),
    "AnomalyRate": ("aimass_monitor_anomaly_rate", "Share of anomalous rows in the last monitor run"),
    "QualityFlagRate": (
        "aimass_monitor_quality_flag_rate",
        "Share of rows with a constraint violation in the last monitor run",
    ),
    "PredictionDrift": (
        "aimass_monitor_prediction_drift",
        "1 when the last monitor run's predictions drifted",
    ),
}


class PrometheusMetrics:
    """The metrics in a registry of their own, with the process, platform and GC collectors."""

    def __init__(self) -> None:
        self._answered: dict[tuple[str, str, str, str], tuple[Counter, Counter, Counter, Counter]] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        answered = ["model", "version", "variant", "protocol"]
        self.predictions = Counter(
            "aimass_predictions",
            "Requests answered, by the version that did",
            answered,
            registry=registry,
        )
        self.instances = Counter(
            "aimass_prediction_instances", "Instances predicted", answered, registry=registry
        )
        self.anomalies = Counter(
            "aimass_anomalies",
            "Anomalous instances found",
            ["model", "version"],
            registry=registry,
        )
        self.quality_flags = Counter(
            "aimass_quality_flags",
            "Instances flagged by the data-quality checks",
            ["model", "version"],
            registry=registry,
        )
        self.stale = Counter(
            "aimass_stale_predictions",
            "Instances answered from the registry as last read: AWS could not be reached",
            ["model"],
            registry=registry,
        )
        self.duration = Histogram(
            "aimass_request_duration_seconds",
            "Time the request pipeline took for a request, answered or not",
            ["model", "protocol"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.rule_rejections = Counter(
            "aimass_rule_rejections", "Requests a rule of the model rejected", ["model"], registry=registry
        )
        self.fallbacks = Counter(
            "aimass_fallbacks",
            "Requests the fallback alias answered: the version meant could not",
            ["model"],
            registry=registry,
        )
        self.errors = Counter(
            "aimass_errors", "Requests not answered, by error code", ["model", "code"], registry=registry
        )
        self.feedback_labels = Counter(
            "aimass_feedback_labels", "Ground-truth labels recorded", ["model"], registry=registry
        )
        self.feedback_classified = Counter(
            "aimass_feedback_classified", "Labels of a classifier's predictions", ["model"], registry=registry
        )
        self.feedback_correct = Counter(
            "aimass_feedback_correct",
            "Labels that agreed with the prediction",
            ["model"],
            registry=registry,
        )
        self.feedback_scored = Counter(
            "aimass_feedback_scored", "Labels of a regressor's predictions", ["model"], registry=registry
        )
        self.feedback_absolute_error = Counter(
            "aimass_feedback_absolute_error",
            "Sum of a regressor's absolute errors (MAE: this over aimass_feedback_scored_total)",
            ["model"],
            registry=registry,
        )

        self.monitor = {
            figure: Gauge(name, description, ["model", "version"], registry=registry)
            for figure, (name, description) in MONITOR_GAUGES.items()
        }

    def answered(self, answered: Answered) -> None:
        name, version = answered.version.name, str(answered.version.version)
        key = (name, version, answered.variant or "", answered.protocol)
        # labels() takes a lock and checks the values at each call (about 2 µs): the children of a
        # label set are looked up once, then only incremented.
        children = self._answered.get(key)
        if children is None:
            children = self._answered[key] = (
                self.predictions.labels(*key),
                self.instances.labels(*key),
                self.anomalies.labels(name, version),
                self.quality_flags.labels(name, version),
            )
        predictions, instances, anomalies, quality_flags = children
        predictions.inc()
        instances.inc(answered.instances)
        anomalies.inc(answered.anomalies)
        quality_flags.inc(answered.flagged)
        if answered.stale:
            self.stale.labels(name).inc(answered.instances)

    def served(self, served: Served) -> None:
        # A request for a model that does not exist names whatever its caller wrote: a label per name
        # would let any caller grow the exposition without bound.
        model = "" if served.code == "not_found" else served.model
        duration = self._durations.get((model, served.protocol))
        if duration is None:
            duration = self._durations[model, served.protocol] = self.duration.labels(model, served.protocol)
        duration.observe(served.seconds)
        if served.fell_back:
            self.fallbacks.labels(model).inc()
        if served.outcome == "rejected":
            self.rule_rejections.labels(model).inc()
        if served.code is not None:
            self.errors.labels(model, served.code).inc()

    def feedback(self, recorded: Recorded) -> None:
        self.feedback_labels.labels(recorded.model).inc(recorded.labelled)
        if recorded.classified:
            self.feedback_classified.labels(recorded.model).inc(recorded.classified)
            self.feedback_correct.labels(recorded.model).inc(recorded.correct)
        if recorded.scored:
            self.feedback_scored.labels(recorded.model).inc(recorded.scored)
            self.feedback_absolute_error.labels(recorded.model).inc(recorded.abs_error)

    def monitored(self, model: str, version: int, figures: dict[str, float]) -> None:
        """aimass.monitoring.actions.MetricsSink: a judged version's figures after a monitor run."""
        for figure, value in figures.items():
            gauge = self.monitor.get(figure)
            if gauge is not None:
                gauge.labels(model, str(version)).set(value)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format (CONTENT_TYPE)."""
        return generate_latest(self.registry)


@cache
def metrics() -> PrometheusMetrics:
    """This process's metrics, fed by the observers `observe` adds."""
    return PrometheusMetrics()


def observe() -> PrometheusMetrics:
    """This process's metrics, fed from now on by the request pipeline's and feedback's observers and
    by the monitor runs' metrics."""
    from aimass import wiring

    m = metrics()
    if m.answered not in wiring.prediction_observers:
        wiring.prediction_observers.append(m.answered)
    if m.served not in wiring.request_observers:
        wiring.request_observers.append(m.served)
    if m.feedback not in wiring.feedback_observers:
        wiring.feedback_observers.append(m.feedback)
    if m.monitored not in wiring.monitor_metrics:
        wiring.monitor_metrics.append(m.monitored)
    return m
