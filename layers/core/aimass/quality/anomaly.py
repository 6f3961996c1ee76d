"""Outlier scores against the baseline: a shrunk Mahalanobis distance over the standardised columns.

Why this method (docs/quality.md has the measurements): it needs numpy only, so it is fitted where the
version is registered (the registry Lambda, which has no scikit-learn) and scored in a few
microseconds per request; unlike per-feature z-scores it sees values that are each plausible but not
together (swapped features, a broken correlation). Shrinking the covariance towards its diagonal keeps
it invertible for constant or collinear columns (digits' blank border pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = "mahalanobis-shrinkage"
# Chosen from 0.01, 0.1 and 0.3 by the measurements in bench/RESULTS.md: the least shrinkage that
# keeps the covariance invertible detected every kind of injected outlier best.
SHRINKAGE = 0.01
# The threshold is this quantile of out-of-fold scores of the reference rows: about 1% of data like
# the reference is flagged.
QUANTILE = 0.99
FOLDS = 5
MIN_ROWS = 50


@dataclass(frozen=True)
class AnomalyModel:
    mean: np.ndarray
    # The precision matrix with the standardisation and the per-column average folded in: a row's
    # score is then one subtraction and one product away (this runs on every prediction).
    weights: np.ndarray
    threshold: float

    @classmethod
    def of(cls, mean: np.ndarray, scale: np.ndarray, precision: np.ndarray, threshold: float) -> AnomalyModel:
        return cls(mean, precision / np.outer(scale, scale) / len(scale), threshold)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> AnomalyModel:
        return cls.of(
            np.asarray(document["mean"], dtype=np.float64),
            np.asarray(document["scale"], dtype=np.float64),
            np.asarray(document["precision"], dtype=np.float64),
            float(document["threshold"]),
        )

    def scores(self, matrix: np.ndarray, may_be_missing: bool = True) -> np.ndarray:
        """One score per row: the squared Mahalanobis distance per column (about 1 for typical rows).
        Missing values (NaN) count as the baseline's mean."""
        diff = matrix - self.mean
        if may_be_missing:
            diff[np.isnan(diff)] = 0.0
        return np.einsum("ij,ij->i", diff @ self.weights, diff)


def _fitted(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    present = ~np.isnan(rows)
    counts = np.maximum(present.sum(axis=0), 1)
    # Written out rather than nanmean/nanstd: a column missing in every row gets 0, not a warning.
    mean = np.where(present, rows, 0.0).sum(axis=0) / counts
    std = np.sqrt(np.where(present, (rows - mean) ** 2, 0.0).sum(axis=0) / counts)
    # A column constant in the reference has no spread to scale by: any change from it is a full unit.
    scale = np.where(std > 0, std, 1.0)
    z = (rows - mean) / scale
    z[np.isnan(z)] = 0.0
    covariance = np.atleast_2d(np.cov(z, rowvar=False))
    target = np.eye(len(covariance)) * max(float(np.trace(covariance)) / len(covariance), 1e-12)
    precision = np.linalg.pinv((1 - SHRINKAGE) * covariance + SHRINKAGE * target, hermitian=True)
    return mean, scale, precision


def fit(matrix: np.ndarray, columns: list[str], seed: int = 0) -> dict[str, Any] | None:
    """The anomaly model of a numeric reference matrix, as stored in anomaly.json; None when there are
    fewer than MIN_ROWS rows to calibrate a threshold on."""
    rows = np.asarray(matrix, dtype=np.float64)
    if len(rows) < MIN_ROWS or rows.shape[1] == 0:
        return None
    order = np.random.default_rng(seed).permutation(len(rows))
    out_of_fold = np.empty(len(rows))
    for held in np.array_split(order, FOLDS):
        kept = np.setdiff1d(order, held, assume_unique=True)
        model = AnomalyModel.of(*_fitted(rows[kept]), threshold=np.inf)
        out_of_fold[held] = model.scores(rows[held])
    mean, scale, precision = _fitted(rows)
    return {
        "method": METHOD,
        "shrinkage": SHRINKAGE,
        "quantile": QUANTILE,
        "threshold": float(np.quantile(out_of_fold, QUANTILE)),
        "fit_rows": len(rows),
        "columns": columns,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "precision": precision.tolist(),
    }
