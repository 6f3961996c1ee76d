"""What a finished monitor run does, in one place: metrics per model and version, a notice on the
pipeline topic when it found drift, and a retraining request through the drift trigger's cooldown
(aimass.pipeline.triggers, the same claim the batch files' drift takes: one retraining per model per
cooldown, whichever found the drift first).

Never raises for AWS: the run's files are written, and what the actions could not do is kept in the
summary under `actions`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aimass.gateways import AwsCallFailed
from aimass.pipeline import triggers
from aimass.pipeline.notices import sns_subject

log = logging.getLogger(__name__)

# (model, version, {metric name: value}): the Lambda emits them as EMF, the local stack logs them.
MetricsSink = Callable[[str, int, dict[str, float]], None]
Publish = Callable[[str, str, str], str]  # (topic, subject, message) -> message id


@dataclass(frozen=True)
class MonitorActions:
    metrics: MetricsSink
    topic_arn: str | None
    publish: Publish | None
    retraining: triggers.DriftRetraining | None
    summary_uri: Callable[[str, str], str]  # (model, run) -> where its summary.json is


def metric_values(version: dict[str, Any]) -> dict[str, float]:
    """A judged version's metrics (docs/monitoring.md, "Metrics")."""
    figures = {
        "MonitoredRows": float(version["rows"]),
        "DriftedFeatures": float(len(version["drifted_features"])),
        "DriftScore": float(version["drift_score"]),
        "ConstraintViolations": float(version["violations"]),
        "QualityFlagRate": float(version["flag_rate"]),
        "PredictionDrift": float(bool(version["prediction_drift"].get("drifted"))),
    }
    if version.get("anomaly_rate") is not None:
        figures["AnomalyRate"] = float(version["anomaly_rate"])
    return figures


def log_metrics(model: str, version: int, figures: dict[str, float]) -> None:
    """The local stack's metrics: a log line (there is no CloudWatch)."""
    log.info("monitor metrics %s v%s: %s", model, version, json.dumps(figures, sort_keys=True))


def act(actions: MonitorActions, summary: dict[str, Any]) -> dict[str, Any]:
    """Emit the metrics of every judged version; on drift, the notice and the retraining request."""
    model, run = summary["model"], summary["run"]
    judged = [v for v in summary["versions"] if v["status"] in ("ok", "drift")]
    for version in judged:
        actions.metrics(model, version["version"], metric_values(version))
    done: dict[str, Any] = {"metrics": [v["version"] for v in judged]}
    drifted = [v for v in judged if v["status"] == "drift"]
    if not drifted:
        return done
    uri = actions.summary_uri(model, run)
    done["notice"] = _notice(actions, summary, drifted, uri)
    if actions.retraining is not None:
        worst = max(drifted, key=lambda v: (v["drift_score"], v["version"]))
        report = {
            "status": "succeeded",
            "model": {"version": worst["version"]},
            "drift": {"features": worst["features_checked"], "drifted": worst["drifted_features"]},
        }
        done["retraining"] = triggers.request_retraining(actions.retraining, model, report, uri)
    return done


def notice(summary: dict[str, Any], drifted: list[dict[str, Any]], uri: str) -> dict[str, str]:
    """The subject and message of a run's drift notice: a summary for people, then the summary's
    versions as JSON on the last line, for scripts (as the pipeline's notices do)."""
    model, run = summary["model"], summary["run"]
    names = sorted({f for v in drifted for f in v["drifted_features"]})
    what = f"{len(names)} feature{'s' if len(names) != 1 else ''}" if names else "predictions"
    subject = f"aimass monitor {model}: drift in {what} (run {run})"
    lines = [f"The aimass monitor run {run} of {model} found drift in the window {_window(summary)}.", ""]
    for v in drifted:
        features = ", ".join(v["drifted_features"]) or "none"
        predictions = "drifted" if v["prediction_drift"].get("drifted") else "did not drift"
        lines.append(
            f"v{v['version']}: {len(v['drifted_features'])} of {len(v['features_checked'])} features drifted "
            f"({features}); predictions {predictions}; {v['rows']} rows"
        )
    lines += [
        "",
        f"The run: aimass monitor reports {model}; its files: {uri.rsplit('/', 1)[0]}/",
        "",
        "The drifted versions as JSON, for scripts, is the last line:",
        json.dumps(
            [{k: v[k] for k in ("version", "drifted_features", "drift_score", "rows")} for v in drifted]
        ),
    ]
    return {"subject": sns_subject(subject), "message": "\n".join(lines)}


def _window(summary: dict[str, Any]) -> str:
    return f"{summary['window']['start']} to {summary['window']['end']}"


def _notice(actions: MonitorActions, summary: dict[str, Any], drifted: list[dict[str, Any]], uri: str) -> Any:
    said = notice(summary, drifted, uri)
    if not actions.topic_arn or actions.publish is None:
        log.warning("no pipeline topic: monitor notice %r only logged", said["subject"])
        return {"decision": "logged", "subject": said["subject"]}
    try:
        message_id = actions.publish(actions.topic_arn, said["subject"], said["message"])
    except AwsCallFailed as error:
        log.exception("monitor notice %r could not be published", said["subject"])
        return {"decision": "failed", "subject": said["subject"], "error": str(error)}
    return {"decision": "published", "subject": said["subject"], "message_id": message_id}
