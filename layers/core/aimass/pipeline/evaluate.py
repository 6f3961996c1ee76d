"""The candidate and the champion measured on the same held-out rows, through ONNX Runtime (what
serves them), and the numbers the release gate compares.

The gate itself is a Choice in the state machine: promote when the candidate passes every
threshold and either there is no champion or `candidate_score > required_score`. Scores are
oriented so that higher is better (a loss is negated); `required_score` is the champion's plus
the margin.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from aimass.pipeline.config import LOWER_IS_BETTER, TrainingConfig
from aimass.serving.backends import Runner
from aimass.serving.backends.onnx import run


def predictions(session: ort.InferenceSession, x: np.ndarray, classification: bool) -> np.ndarray:
    """Class probabilities (classification) or predicted values (regression) for the rows."""
    return predictions_of(lambda feeds: run(session, feeds), session.get_inputs()[0].name, x, classification)


def predictions_of(runner: Runner, input_name: str, x: np.ndarray, classification: bool) -> np.ndarray:
    """The same through a version's runner, whatever backend serves it."""
    outputs = runner({input_name: x.astype(np.float32)})
    if classification:
        probabilities = np.asarray(outputs["probabilities"], dtype=np.float64)
        return probabilities / probabilities.sum(axis=1, keepdims=True)  # float32 rows sum to 1 +- 1e-7
    return np.asarray(next(iter(outputs.values())), dtype=np.float64).reshape(len(x))


def metrics(y: np.ndarray, predicted: np.ndarray, classification: bool, classes: int) -> dict[str, float]:
    from sklearn import metrics as m

    if not classification:
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y, predicted))),
            "mae": float(m.mean_absolute_error(y, predicted)),
            "r2": float(m.r2_score(y, predicted)),
        }
    labels = list(range(classes))
    chosen = predicted.argmax(axis=1)
    binary = classes == 2
    return {
        "accuracy": float(m.accuracy_score(y, chosen)),
        "f1": float(m.f1_score(y, chosen, average="binary" if binary else "macro", labels=labels)),
        "roc_auc": float(
            m.roc_auc_score(y, predicted[:, 1])
            if binary
            else m.roc_auc_score(y, predicted, multi_class="ovr", labels=labels)
        ),
        "log_loss": float(m.log_loss(y, np.clip(predicted, 1e-15, 1), labels=labels)),
    }


def oriented(metric: str, value: float) -> float:
    return -value if metric in LOWER_IS_BETTER else value


def gate(
    config: TrainingConfig,
    task: str,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
) -> dict[str, Any]:
    """The numbers the release gate's Choice reads, and the reasons a person reads."""
    metric = config.metric_for(task)
    failures = [
        f"{name} {candidate[name]:.4g} {_side(name)} {limit:.4g}"
        for name, limit in sorted(config.thresholds.items())
        if name in candidate and oriented(name, candidate[name]) < oriented(name, limit)
    ]
    inapplicable = sorted({metric, *config.thresholds} - set(candidate))
    failures += [f"{name} does not apply to a {task} model" for name in inapplicable]
    score = oriented(metric, candidate[metric]) if metric in candidate else 0.0
    beaten = champion is not None and metric in champion
    required = oriented(metric, champion[metric]) + config.margin if champion and beaten else score
    if failures:
        reason = "; ".join(failures)
    elif champion is None:
        reason = "no champion to beat"
    else:
        verb = "beats" if score > required else "does not beat"
        reason = (
            f"{metric} {candidate[metric]:.4g} {verb} the champion's {champion[metric]:.4g} "
            f"by more than {config.margin:g}"
        )
    return {
        "metric": metric,
        "margin": config.margin,
        "candidate_score": score,
        "required_score": required,
        "has_champion": champion is not None,
        "passes_thresholds": not failures,
        "reason": reason,
    }


def promotes(numbers: dict[str, Any]) -> bool:
    """What the ReleaseGate Choice decides on gate()'s numbers (the definition is the authority)."""
    return bool(
        numbers["passes_thresholds"]
        and (not numbers["has_champion"] or numbers["candidate_score"] > numbers["required_score"])
    )


def _side(metric: str) -> str:
    return "above the maximum" if metric in LOWER_IS_BETTER else "below the minimum"
