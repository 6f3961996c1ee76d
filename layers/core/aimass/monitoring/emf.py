"""The monitor's metrics in a Lambda: one CloudWatch embedded-metric-format line per judged version,
with two dimension sets, (`model`, `version`), which the dashboard reads, and the model's own
(`model`, `service`), which DriftAlarm reads (namespace POWERTOOLS_METRICS_NAMESPACE, aimass;
docs/monitoring.md, "Actions")."""

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
    metrics.add_dimensions(model=model, version=str(version))
    for name, value in figures.items():
        metrics.add_metric(name=f"Monitor{name}", unit=_UNITS.get(name, MetricUnit.NoUnit), value=value)
    metrics.flush_metrics()
