"""Benchmark 5: how well the anomaly score separates outliers from clean rows (quality, not time).

For each demo, the anomaly model is fitted on its reference data (the training rows, as registered)
and scores the clean held-out rows and outliers injected into copies of the same rows, four kinds:

- shifted: 3 random features moved up by 3 reference standard deviations each (0.1 where a column
  is constant in the reference);
- scaled: the whole row multiplied by a factor drawn from U(1.5, 3);
- out-of-range: 1 random feature set to max + 0.5 * (max - min) of the reference (max + 0.5 where
  the column is constant);
- swapped: the values of 2 random features exchanged (two features whose values differ in that row,
  so that every injected row differs from its clean one).

Reported: the AUROC of clean vs injected, the share of injected rows above the stored threshold, and
the share of clean held-out rows above it (the threshold aims at about 1%), for the shrinkage the
service uses and for the others it was chosen from. Everything is seeded: the figures are the same
on every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench.harness import demo
from bench.report import Table

SEED = 0
KINDS = ("shifted", "scaled", "out-of-range", "swapped")
SHRINKAGES = (0.01, 0.1, 0.3)
MODELS = ("breast-cancer", "digits")


def reference(model: str) -> tuple[np.ndarray, list[str], Any]:
    """The demo's reference matrix over its columns, read as registration reads it, its column names
    and the request-time range checks its baseline gives (RequestChecks, without the anomaly model)."""
    from aimass.quality.baseline import compute, read_reference
    from aimass.quality.checks import RequestChecks
    from aimass.quality.columns import columns_of
    from aimass.serving.backends.onnx import inspect
    from aimass.signature import enrich, from_session

    made = demo(model)
    signature = enrich(from_session(inspect(made.model)), made.enrichment)
    columns = columns_of(signature)
    assert columns is not None
    matrix = read_reference(made.reference_csv, "reference.csv", columns)
    checks = RequestChecks.build(signature, compute(columns, matrix).constraints, None)
    return matrix, [c.name for c in columns], checks


def injected(clean: np.ndarray, ref: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Copies of the clean rows, each made an outlier of `kind`."""
    rows = clean.copy()
    width = rows.shape[1]
    low, high = ref.min(axis=0), ref.max(axis=0)
    std = ref.std(axis=0)
    for row in rows:
        if kind == "shifted":
            for j in rng.choice(width, size=3, replace=False):
                row[j] += 3 * std[j] if std[j] > 0 else 0.1
        elif kind == "scaled":
            row *= rng.uniform(1.5, 3.0)
        elif kind == "out-of-range":
            j = rng.integers(width)
            span = high[j] - low[j]
            row[j] = high[j] + 0.5 * (span if span > 0 else 1.0)
        elif kind == "swapped":
            while True:
                a, b = rng.choice(width, size=2, replace=False)
                if row[a] != row[b]:
                    break
            row[a], row[b] = row[b], row[a]
        else:
            raise ValueError(f"unknown kind {kind!r}")
    return rows


@contextmanager
def shrinkage(value: float) -> Iterator[None]:
    """aimass.quality.anomaly.SHRINKAGE set to `value` for a fit, restored afterwards."""
    from aimass.quality import anomaly

    saved = anomaly.SHRINKAGE
    anomaly.SHRINKAGE = value
    try:
        yield
    finally:
        anomaly.SHRINKAGE = saved


def evaluate(model: str) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from aimass.quality import anomaly

    ref, names, checks = reference(model)
    held_out = demo(model).holdout
    clean = np.asarray(held_out, dtype=np.float64).reshape(len(held_out), -1)

    def range_flagged(rows: np.ndarray) -> np.ndarray:
        """Rows the request-time range check flags (a value outside the reference's range + 10%)."""
        return np.array([bool(found) for found in checks.violations(rows)])

    # One generator per kind: the injected rows do not depend on which kinds run or in what order.
    outliers = {
        kind: injected(clean, ref, kind, np.random.default_rng([SEED, i])) for i, kind in enumerate(KINDS)
    }
    fits = []
    for value in SHRINKAGES:
        with shrinkage(value):
            document = anomaly.fit(ref, names)
        assert document is not None and document["shrinkage"] == value
        detector = anomaly.AnomalyModel.from_json(document)
        threshold = detector.threshold
        clean_scores = detector.scores(clean)
        clean_range = range_flagged(clean)
        kinds = {}
        for kind, rows in outliers.items():
            scores = detector.scores(rows)
            labels = np.r_[np.zeros(len(clean_scores)), np.ones(len(scores))]
            ranged = range_flagged(rows)
            kinds[kind] = {
                "auroc": float(roc_auc_score(labels, np.r_[clean_scores, scores])),
                "flagged": float(np.mean(scores > threshold)),
                "range_flagged": float(np.mean(ranged)),
                "either_flagged": float(np.mean(ranged | (scores > threshold))),
                "median_score": float(np.median(scores)),
            }
        fits.append(
            {
                "shrinkage": value,
                "threshold": threshold,
                "clean_flagged": int(np.sum(clean_scores > threshold)),
                "clean_flag_rate": float(np.mean(clean_scores > threshold)),
                "clean_range_flag_rate": float(np.mean(clean_range)),
                "clean_either_flag_rate": float(np.mean(clean_range | (clean_scores > threshold))),
                "clean_median_score": float(np.median(clean_scores)),
                "kinds": kinds,
            }
        )
    return {
        "model": model,
        "reference_rows": len(ref),
        "holdout_rows": len(clean),
        "columns": len(names),
        "fits": fits,
    }


def run(scale: float = 1.0) -> dict[str, Any]:
    """`scale` is ignored: the figures are exact, not sampled over time."""
    from aimass.quality import anomaly

    return {"service_shrinkage": anomaly.SHRINKAGE, "models": [evaluate(model) for model in MODELS]}


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def tables(result: dict[str, Any]) -> list[Table]:
    shipped = result["service_shrinkage"]
    detail = Table(
        f"Anomaly score on held-out rows vs injected outliers (shrinkage {shipped}, as the service fits)",
        [
            "model / rows",
            "rows",
            "AUROC clean vs injected",
            "anomaly flagged",
            "range check flagged",
            "either flagged",
            "median score",
        ],
        note="Clean: the held-out rows as they are; what is flagged of them is a false flag (the anomaly "
        "threshold, the 0.99 quantile of out-of-fold reference scores, aims at about 1%). Each kind "
        "injects one outlier into a copy of every held-out row. Anomaly flagged: score above the stored "
        "threshold; range check: a value outside the reference's range widened by 10% (RequestChecks."
        "violations); either: what a `flag` policy on both marks. A typical row scores about 1.",
    )
    compare = Table(
        "The same for each shrinkage the service's value was chosen from: AUROC / flagged",
        ["model", "shrinkage", "threshold", "clean flagged", *KINDS],
        note="Same reference, held-out rows and injected outliers for every shrinkage (seeded).",
    )
    for model in result["models"]:
        for fit in model["fits"]:
            kinds = fit["kinds"]
            compare.add(
                model["model"],
                f"{fit['shrinkage']:g}",
                f"{fit['threshold']:.3g}",
                f"{percent(fit['clean_flag_rate'])} ({fit['clean_flagged']}/{model['holdout_rows']})",
                *(f"{kinds[k]['auroc']:.3f} / {percent(kinds[k]['flagged'])}" for k in KINDS),
            )
            if fit["shrinkage"] != shipped:
                continue
            detail.add(
                f"{model['model']} ({model['columns']} columns, {model['reference_rows']} reference rows)",
                *[""] * 6,
            )
            detail.add(
                "  clean (false flags)",
                str(model["holdout_rows"]),
                "",
                f"{percent(fit['clean_flag_rate'])} ({fit['clean_flagged']})",
                percent(fit["clean_range_flag_rate"]),
                percent(fit["clean_either_flag_rate"]),
                f"{fit['clean_median_score']:.3g}",
            )
            for kind in KINDS:
                found = kinds[kind]
                detail.add(
                    f"  {kind}",
                    str(model["holdout_rows"]),
                    f"{found['auroc']:.3f}",
                    percent(found["flagged"]),
                    percent(found["range_flagged"]),
                    percent(found["either_flagged"]),
                    f"{found['median_score']:.3g}",
                )
    return [detail, compare]
