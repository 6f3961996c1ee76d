"""The evaluation report of a pipeline run: one self-contained HTML page (inline CSS, no script, no
external URL, each plot inline as a base64 image) and its PNG plots, side by side at
`reports/<model>/pipeline/<run>/`: the page opens whole from one presigned link or a copied folder
(each plot links to its PNG by relative name).

What it shows: the release gate's decision and why (metric, margin, thresholds), the metrics of
the candidate and the champion on the same held-out rows, the dataset snapshot, and plots:
- classification: the confusion matrix of each model (side by side) and the ROC curve. For two
  classes both models' curves of the positive class share the axes. For more, the candidate's
  one-vs-rest curve of each class (up to MAX_ROC_CLASSES of them) and the micro-average of each
  model (every (row, class) pair as one binary decision), which is comparable across models;
- regression: residuals (true - predicted) against the prediction, and their histogram, for each
  model (at most MAX_SCATTER_POINTS points per scatter, a seeded sample);
- feature drift: for the MAX_DRIFT_PLOTS most drifted features, the snapshot's values and the
  serving version's baseline (its statistics.json sketch, or its histogram buckets when it has no
  sketch) as densities on the same bins, with the scores Validate computed (PSI, KS).

Domain code: `build` takes plain data and returns the files; `write` puts them in S3. matplotlib
is imported when a plot is drawn, through its object-oriented API on the Agg canvas (no pyplot and
no global figure state); importing this module does not import matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aimass import artifacts
from aimass.pipeline.config import LOWER_IS_BETTER
from aimass.pipeline.evaluate import promotes
from aimass.reports.page import MISSING, STYLE, figure_html, head
from aimass.reports.page import escape as _e
from aimass.reports.page import number as _number
from aimass.reports.plots import (
    BASELINE_COLOR,
    CANDIDATE_COLOR,
    CHAMPION_COLOR,
    DRIFT_BINS,
    FeatureDrift,
    drift_histograms,
    most_drifted_first,
)
from aimass.reports.plots import figure as _figure
from aimass.reports.plots import plain as _plain
from aimass.reports.plots import png as _png
from aimass.reports.plots import span as _span

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["DRIFT_BINS", "MISSING", "STYLE", "FeatureDrift", "most_drifted_first"]

INDEX = "index.html"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".png": "image/png"}
MAX_DRIFT_PLOTS = 12
MAX_ROC_CLASSES = 10
MAX_SCATTER_POINTS = 5000
MAX_ANNOTATED_CLASSES = 15  # above this a confusion matrix's cells are too small for their counts


def report_prefix(model: str, run: str) -> str:
    return f"reports/{model}/pipeline/{run}/"


@dataclass(frozen=True)
class Answers:
    """One model's answers on the held-out rows: class probabilities (rows by classes) or predicted
    values, and its metrics."""

    name: str
    predicted: np.ndarray
    metrics: dict[str, float]


@dataclass(frozen=True)
class Evaluation:
    """What the report is about. `gate` is aimass.pipeline.evaluate.gate's answer; `snapshot` the
    Ingest step's (uri, sha256, rows); `y_true` the held-out class indices or values."""

    model: str
    run: str
    execution: str
    task: str
    classes: list[str] | None
    y_true: np.ndarray
    candidate: Answers
    champion: Answers | None
    gate: dict[str, Any]
    snapshot: dict[str, Any]
    thresholds: dict[str, float] = field(default_factory=dict)
    release: str = "champion"
    drift: Sequence[FeatureDrift] = ()
    baseline_version: int | None = None

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    def class_names(self) -> list[str]:
        width = self.candidate.predicted.shape[1] if self.candidate.predicted.ndim == 2 else 0
        return list(self.classes) if self.classes else [str(i) for i in range(width)]


def drift_from(
    validation_drift: dict[str, Any] | None,
    statistics: dict[str, Any] | None,
    names: list[str],
    matrix: np.ndarray,
) -> list[FeatureDrift]:
    """Each feature's drift from what Validate found (`$.validation.drift`) and the baseline's
    statistics.json; `matrix` holds the snapshot's rows (columns in `names` order). A feature with
    neither a score nor a numeric baseline is left out."""
    scores = {d["feature"]: d for d in (validation_drift or {}).get("features", [])}
    described = {f["name"]: f.get("numerical_statistics") for f in (statistics or {}).get("features", [])}
    found = []
    for j, name in enumerate(names):
        numbers = described.get(name) or {}
        kll = numbers.get("distribution", {}).get("kll", {})
        sketch = (kll.get("sketch") or {}).get("data")
        buckets = [(b["lower_bound"], b["upper_bound"], b["count"]) for b in kll.get("buckets") or []]
        if name not in scores and not sketch and not buckets:
            continue
        values = matrix[:, j]
        found.append(
            FeatureDrift(
                name=name,
                values=values[np.isfinite(values)],
                reference=np.asarray(sketch[0], dtype=np.float64) if sketch and sketch[0] else None,
                buckets=buckets or None,
                scores={k: v for k, v in scores.get(name, {}).items() if k != "feature"},
            )
        )
    return found


# --- the files --------------------------------------------------------------------------------------


def build(evaluation: Evaluation) -> dict[str, bytes]:
    """The report's files by name: `index.html` and the PNGs it links to."""
    images: dict[str, tuple[bytes, str, str]] = {}  # name -> (png, alt text, caption)
    both = "the candidate and the champion" if evaluation.champion else "the candidate"
    if evaluation.classification:
        images["confusion_matrix.png"] = (
            _confusion_matrices(evaluation),
            f"Confusion matrices of {both} on the held-out rows",
            "Confusion matrix on the held-out rows: true class by row, predicted class by column.",
        )
        roc = _roc_curves(evaluation)
        if roc is not None:
            images["roc_curve.png"] = roc
    else:
        images["residuals.png"] = (
            _residual_scatter(evaluation),
            f"Residuals against predicted values for {both}",
            "Residuals (true - predicted) against the prediction, on the held-out rows.",
        )
        images["residual_histogram.png"] = (
            _residual_histogram(evaluation),
            f"Histogram of the residuals of {both}",
            "Distribution of the residuals on the held-out rows.",
        )
    drifted = most_drifted_first(evaluation.drift)
    plotted = [f for f in drifted if len(f.values)][:MAX_DRIFT_PLOTS]
    if plotted:
        images["feature_drift.png"] = (
            drift_histograms(plotted, evaluation.baseline_version),
            "Histograms of the most drifted features: snapshot against baseline",
            f"The {len(plotted)} most drifted features: the snapshot's rows against the baseline "
            "(densities on the same bins).",
        )
    files = {name: png for name, (png, _, _) in images.items()}
    # The images are in the page itself, so the one signed link the run status gives opens it whole;
    # the PNG beside the page is what a figure links to, for a copy of the folder or a download.
    figures = {name: figure_html(name, *image) for name, image in images.items()}
    files[INDEX] = _page(evaluation, figures, drifted).encode("utf-8")
    return files


def write(bucket: str, model: str, run: str, files: dict[str, bytes]) -> dict[str, str]:
    """Put the report's files under `reports/<model>/pipeline/<run>/` (the page last, so it never
    links to an image not yet there); the page's S3 URI and key."""
    prefix = report_prefix(model, run)
    for name in sorted(files, key=lambda n: n == INDEX):
        suffix = name[name.rfind(".") :]
        artifacts.put(
            bucket, prefix + name, files[name], CONTENT_TYPES.get(suffix, "application/octet-stream")
        )
    key = prefix + INDEX
    return {"uri": f"s3://{bucket}/{key}", "key": key}


def publish(bucket: str, evaluation: Evaluation) -> dict[str, str]:
    """Build the report and write it: its page's S3 URI and key."""
    return write(bucket, evaluation.model, evaluation.run, build(evaluation))


# --- the page ---------------------------------------------------------------------------------------


def _page(evaluation: Evaluation, figures: dict[str, str], drifted: list[FeatureDrift]) -> str:
    ev = evaluation
    title = f"Evaluation report: {ev.model}, run {ev.run}"
    parts = [
        *head(title),
        f"<h1>Evaluation report: {_e(ev.model)}</h1>",
        f'<p class="meta">Run <code>{_e(ev.run)}</code> · execution <code>{_e(ev.execution)}</code> · '
        f"{_e(ev.task)} · {len(ev.y_true)} held-out rows</p>",
        _decision(ev),
        "<h2>Metrics on the held-out rows</h2>",
        _metrics_table(ev),
        "<h2>Dataset</h2>",
        _dataset(ev),
        "<h2>Plots</h2>",
        *(figure for name, figure in figures.items() if name != "feature_drift.png"),
        "<h2>Feature drift</h2>",
        _drift_section(ev, drifted, figures.get("feature_drift.png")),
        '<footer><p class="meta">Written by the aimass retraining pipeline\'s Evaluate step.</p></footer>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _decision(ev: Evaluation) -> str:
    gate = ev.gate
    promoted = promotes(gate)
    verdict = "promoted" if promoted else "rejected"
    if promoted:
        outcome = (
            "The run goes on to register the candidate as a new version and to point "
            f"<code>{_e(ev.release)}</code> at it."
        )
    else:
        outcome = "The candidate is not registered: the registry stays as it was."
    lines = [
        (
            "metric",
            f"<code>{_e(gate['metric'])}</code>"
            + (" (lower is better; scores are negated)" if gate["metric"] in LOWER_IS_BETTER else ""),
        ),
        ("candidate score", _number(gate["candidate_score"])),
        (
            "required score",
            f"{_number(gate['required_score'])} (the champion's plus a margin of {gate['margin']:g})"
            if gate["has_champion"]
            else f"{MISSING} (no champion to beat)",
        ),
    ]
    for name, limit in sorted(ev.thresholds.items()):
        value = ev.candidate.metrics.get(name)
        lower = name in LOWER_IS_BETTER
        passed = value is not None and (value <= limit if lower else value >= limit)
        mark = '<span class="pass">passes</span>' if passed else '<span class="fail">fails</span>'
        lines.append(
            (
                f"threshold <code>{_e(name)}</code>",
                f"{'at most' if lower else 'at least'} {limit:g}: {_number(value)} {mark}",
            )
        )
    rows = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in lines)
    return (
        f'<section class="decision {verdict}"><h2>Decision: {verdict}</h2>'
        f"<p>{_e(gate['reason'])}. {outcome}</p><dl>{rows}</dl></section>"
    )


def _metrics_table(ev: Evaluation) -> str:
    champion = ev.champion
    names = list(ev.candidate.metrics) + [
        n for n in (champion.metrics if champion else {}) if n not in ev.candidate.metrics
    ]
    head = ["metric", _e(ev.candidate.name)]
    if champion:
        head += [_e(champion.name), "candidate - champion"]
    rows = []
    for name in names:
        ours = ev.candidate.metrics.get(name)
        theirs = champion.metrics.get(name) if champion else None
        gated = name == ev.gate["metric"]
        label = _e(name) + (" ↓" if name in LOWER_IS_BETTER else "") + (" (gate)" if gated else "")
        cells = [label, _number(ours)]
        if champion:
            diff = ours - theirs if ours is not None and theirs is not None else None
            cells += [_number(theirs), MISSING if diff is None else f"{diff:+.4f}"]
        css = ' class="gate"' if gated else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    note = "" if champion else "<p>There is no champion: the candidate is measured alone.</p>"
    return (
        note
        + '<table class="metrics"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + ('<p class="meta">↓ lower is better.</p>' if LOWER_IS_BETTER & set(names) else "")
    )


def _dataset(ev: Evaluation) -> str:
    snapshot = ev.snapshot
    rows = [
        ("snapshot", f"<code>{_e(snapshot['uri'])}</code>" if "uri" in snapshot else MISSING),
        ("sha256", f"<code>{_e(snapshot['sha256'])}</code>" if "sha256" in snapshot else MISSING),
        ("rows", _e(snapshot["rows"]) if "rows" in snapshot else MISSING),
        ("held-out rows", str(len(ev.y_true))),
    ]
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _drift_section(ev: Evaluation, drifted: list[FeatureDrift], figure: str | None) -> str:
    if not drifted:
        return (
            "<p>No drift figures: the serving version has no baseline, or the snapshot has too few "
            "rows to compare.</p>"
        )
    against = f"v{ev.baseline_version}'s baseline" if ev.baseline_version is not None else "the baseline"
    count = sum(1 for f in drifted if f.scores.get("drifted"))
    parts = [f"<p>{count} of {len(drifted)} features drifted from {_e(against)}, most drifted first.</p>"]
    if figure is not None:
        parts.append(figure)
    head = ["feature", "PSI", "KS distance", "KS p-value", "drifted"]
    rows = []
    for feature in drifted:
        s = feature.scores
        flag = s.get("drifted")
        mark = MISSING if flag is None else ('<span class="fail">yes</span>' if flag else "no")
        cells = [
            _e(feature.name),
            _number(s.get("psi")),
            _number(s.get("ks_statistic")),
            MISSING if s.get("ks_p_value") is None else f"{s['ks_p_value']:.3g}",
            mark,
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append(
        '<table class="drift"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    return "\n".join(parts)


# --- the plots --------------------------------------------------------------------------------------


def _models(ev: Evaluation) -> list[tuple[Answers, str]]:
    found = [(ev.candidate, CANDIDATE_COLOR)]
    if ev.champion is not None:
        found.append((ev.champion, CHAMPION_COLOR))
    return found


def _confusion_matrices(ev: Evaluation) -> bytes:
    names = [_plain(n) for n in ev.class_names()]
    k = len(names)
    models = _models(ev)
    side = min(4.5 + 0.25 * k, 10.0)
    figure = _figure(side * len(models), side)
    y = ev.y_true.astype(np.int64)
    for index, (answers, _) in enumerate(models):
        axes = figure.add_subplot(1, len(models), index + 1)
        counts = np.zeros((k, k), dtype=np.int64)
        np.add.at(counts, (y, answers.predicted.argmax(axis=1)), 1)
        axes.imshow(counts, cmap="Blues", vmin=0)
        if k <= MAX_ANNOTATED_CLASSES:
            peak = int(np.max(counts))
            dark = peak / 2 if peak else 1
            for i in range(k):
                for j in range(k):
                    axes.text(
                        j,
                        i,
                        str(counts[i, j]),
                        ha="center",
                        va="center",
                        color="white" if counts[i, j] > dark else "black",
                    )
        axes.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
        axes.set_yticks(range(k), names)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        accuracy = float(np.trace(counts) / counts.sum()) if counts.sum() else 0.0
        axes.set_title(f"{_plain(answers.name)} (accuracy {accuracy:.3f})")
    return _png(figure)


def _roc_curves(ev: Evaluation) -> tuple[bytes, str, str] | None:
    from sklearn.metrics import auc, roc_curve

    y = ev.y_true.astype(np.int64)
    k = ev.candidate.predicted.shape[1]
    figure = _figure(6.5, 5.5)
    axes = figure.add_subplot()
    drawn = False
    if k == 2:
        if len(np.unique(y)) < 2:
            return None
        for answers, color in _models(ev):
            fpr, tpr, _ = roc_curve(y, answers.predicted[:, 1])
            axes.plot(fpr, tpr, color=color, lw=2, label=f"{_plain(answers.name)} (AUC {auc(fpr, tpr):.3f})")
        drawn = True
        alt = "ROC curves of the candidate and the champion" if ev.champion else "ROC curve of the candidate"
        caption = f"ROC curve of the class {ev.class_names()[1]!r} on the held-out rows."
    else:
        onehot = np.eye(k, dtype=np.int64)[y]
        names = ev.class_names()
        if k <= MAX_ROC_CLASSES:
            for c in range(k):
                if 0 < onehot[:, c].sum() < len(y):
                    fpr, tpr, _ = roc_curve(onehot[:, c], ev.candidate.predicted[:, c])
                    axes.plot(
                        fpr,
                        tpr,
                        color=f"C{2 + c % 8}",  # C0 and C1 are the candidate's and the champion's
                        lw=1,
                        alpha=0.8,
                        label=f"{_plain(names[c])} vs rest ({auc(fpr, tpr):.3f})",
                    )
                    drawn = True
        for answers, color in _models(ev):
            fpr, tpr, _ = roc_curve(onehot.ravel(), answers.predicted.ravel())
            axes.plot(
                fpr,
                tpr,
                color=color,
                lw=2.5,
                linestyle="-" if answers is ev.candidate else "--",
                label=f"{_plain(answers.name)} micro-average (AUC {auc(fpr, tpr):.3f})",
            )
            drawn = True
        alt = "One-vs-rest ROC curves of the candidate and micro-averaged ROC curves of both models"
        caption = (
            "ROC curves on the held-out rows: the candidate's one-vs-rest curve per class, and each "
            "model's micro-average (every row and class as one binary decision)."
        )
    if not drawn:
        return None
    axes.plot([0, 1], [0, 1], color=BASELINE_COLOR, lw=1, linestyle=":", label="chance")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title("ROC curve")
    axes.legend(loc="lower right", fontsize="small")
    return _png(figure), alt, caption


def _sample(count: int) -> np.ndarray:
    if count <= MAX_SCATTER_POINTS:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, MAX_SCATTER_POINTS, replace=False))


def _residual_scatter(ev: Evaluation) -> bytes:
    models = _models(ev)
    figure = _figure(5.5 * len(models), 4.5)
    picked = _sample(len(ev.y_true))
    shared: Axes | None = None
    for index, (answers, color) in enumerate(models):
        axes = figure.add_subplot(1, len(models), index + 1, sharey=shared)
        shared = shared or axes
        residuals = ev.y_true - answers.predicted
        axes.scatter(answers.predicted[picked], residuals[picked], s=8, alpha=0.5, color=color, linewidths=0)
        axes.axhline(0, color="black", lw=1)
        axes.set_xlabel("predicted")
        axes.set_ylabel("residual (true - predicted)")
        rmse = float(np.sqrt(np.mean(residuals**2))) if len(residuals) else 0.0
        axes.set_title(f"{_plain(answers.name)} (RMSE {rmse:.4g})")
    return _png(figure)


def _residual_histogram(ev: Evaluation) -> bytes:
    figure = _figure(6.5, 4.5)
    axes = figure.add_subplot()
    residuals = [(answers, ev.y_true - answers.predicted, color) for answers, color in _models(ev)]
    pooled = np.concatenate([r for _, r, _ in residuals])
    pooled = pooled[np.isfinite(pooled)]
    low, high = _span(pooled, pooled)
    bins = np.linspace(low, high, 31)
    for answers, values, color in residuals:
        axes.hist(
            values[np.isfinite(values)],
            bins=bins.tolist(),
            histtype="stepfilled",
            alpha=0.35,
            color=color,
            edgecolor=color,
            label=f"{_plain(answers.name)} (mean {np.mean(values):.3g})",
        )
    axes.axvline(0, color="black", lw=1)
    axes.set_xlabel("residual (true - predicted)")
    axes.set_ylabel("rows")
    axes.set_title("Residuals")
    axes.legend(fontsize="small")
    return _png(figure)
