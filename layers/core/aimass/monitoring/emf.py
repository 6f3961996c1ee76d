"""The monitor's metrics in a Lambda: one CloudWatch embedded-metric-format line per judged version,
with the dimensions `model` and `version` (namespace POWERTOOLS_METRICS_NAMESPACE, aimass), which the
dashboards and drift alarms read (docs/monitoring.md, "Metrics")."""

from __future__ import annotations

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

_UNITS = {
    "MonitoredRows": MetricUnit.Count,
    "DriftedFeatures": MetricUnit.Count,
    "ConstraintViolations": MetricUnit.Count,
}


def emit(model: str, version: int, figures: dict[str, float]) -> None:
    """aimass.monitoring.actions.MetricsSink for a Lambda."""
    metrics = EphemeralMetrics()
    metrics.add_dimension(name="model", value=model)
    metrics.add_dimension(name="version", value=str(version))
    for name, value in figures.items():
        metrics.add_metric(name=f"Monitor{name}", unit=_UNITS.get(name, MetricUnit.NoUnit), value=value)
    metrics.flush_metrics()
