"""A request's data-quality screening: its instances checked against the version's constraints and
scored for anomaly, the model's policy applied, and the findings folded into the predictions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aimass.contracts.quality import QualityPolicy
from aimass.errors import MAX_DETAILS, ValidationFailed, field_error
from aimass.quality.checks import RequestChecks
from aimass.quality.columns import as_matrix
from aimass.rules import BARE_KEY


@dataclass(frozen=True)
class Screening:
    """A request's quality findings, per instance: constraint violations and anomaly scores."""

    violations: list[list[dict[str, Any]]] | None
    scores: list[float] | None
    threshold: float

    def annotate(self, predictions: list[Any]) -> list[Any]:
        """Each prediction with its `quality` violations (when any) and its `anomaly` score."""
        answered = []
        for i, prediction in enumerate(predictions):
            found: dict[str, Any] = {}
            if self.violations and self.violations[i]:
                found["quality"] = self.violations[i]
            if self.scores is not None:
                score = self.scores[i]
                found["anomaly"] = {
                    "score": score,
                    "threshold": self.threshold,
                    "anomalous": score > self.threshold,
                }
            if not found:
                answered.append(prediction)
                continue
            item = dict(prediction) if isinstance(prediction, dict) else {BARE_KEY: prediction}
            answered.append(item | found)
        return answered

    def parameters(self) -> dict[str, Any] | None:
        """The findings as V2 response parameters: per instance, in request order."""
        found: dict[str, Any] = {}
        if self.violations and any(self.violations):
            found["quality"] = self.violations
        if self.scores is not None:
            found["anomaly_scores"] = self.scores
            found["anomaly_threshold"] = self.threshold
            found["anomalous"] = [score > self.threshold for score in self.scores]
        return found or None

    @property
    def anomalies(self) -> int:
        return 0 if self.scores is None else sum(score > self.threshold for score in self.scores)

    @property
    def flagged(self) -> int:
        return 0 if not self.violations else sum(1 for found in self.violations if found)


def without_unknown(checks: RequestChecks, instances: list[Any]) -> tuple[list[Any], list[tuple[int, str]]]:
    """The instances without keys that are not features (they are reported, not fed)."""
    unknown = checks.unknown_features(instances)
    if not unknown:
        return instances, unknown
    drop: dict[int, set[str]] = {}
    for i, key in unknown:
        drop.setdefault(i, set()).add(key)
    kept = [
        {k: v for k, v in instance.items() if k not in drop[i]} if i in drop else instance
        for i, instance in enumerate(instances)
    ]
    return kept, unknown


def screen(
    checks: RequestChecks, policy: QualityPolicy, tensor: Any, unknown: list[tuple[int, str]]
) -> Screening:
    """Constraint violations and anomaly scores of a request; a 422 where the policy says reject."""
    matrix = as_matrix(checks.columns, tensor)
    violations = None
    if policy.violations != "ignore":
        violations = checks.violations(matrix)
        for i, key in unknown:
            violations[i].append(
                {"feature": key, "check": "unknown_feature", "message": "not a feature of the model"}
            )
        if policy.violations == "reject" and any(violations):
            raise ValidationFailed(
                "instances break the model's data-quality constraints",
                [
                    field_error(["instances", i, v["feature"]], v["message"], f"quality_{v['check']}")
                    for i, found in enumerate(violations)
                    for v in found
                ][:MAX_DETAILS],
            )
    scores = None
    threshold = 0.0
    if policy.anomalies != "ignore" and checks.anomaly is not None:
        found_scores = checks.anomaly_scores(matrix)
        threshold = checks.anomaly.threshold
        scores = [] if found_scores is None else found_scores.tolist()
        anomalous = [(i, s) for i, s in enumerate(scores) if s > threshold]
        if policy.anomalies == "reject" and anomalous:
            raise ValidationFailed(
                "instances are anomalous against the model's baseline",
                [
                    field_error(
                        ["instances", i],
                        f"anomaly score {s:.4g} is above the threshold {threshold:.4g}",
                        "anomaly",
                    )
                    for i, s in anomalous[:MAX_DETAILS]
                ],
            )
    return Screening(violations, scores, threshold)
