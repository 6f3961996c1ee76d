"""The evaluation report of a pipeline run (aimass.pipeline.report): a self-contained HTML page and
the PNG plots it links to, for classification (confusion matrices, ROC curves) and regression
(residuals), with the feature drift the Validate step found; and where it is written."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from aimass.pipeline.report import (
    MAX_DRIFT_PLOTS,
    Answers,
    Evaluation,
    FeatureDrift,
    build,
    drift_from,
    write,
)
from aimass.quality.baseline import compute
from aimass.quality.columns import Column

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RNG_SEED = 7

PROMOTED = {
    "metric": "roc_auc",
    "margin": 0.01,
    "candidate_score": 0.9712,
    "required_score": 0.9134,
    "has_champion": True,
    "passes_thresholds": True,
    "reason": "roc_auc 0.9712 beats the champion's 0.9034 by more than 0.01",
}


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (always the first, right after the signature)."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def image_sources(page: str) -> list[str]:
    """The PNG files the page's figures link to. Each figure shows its image embedded in the page
    (so one signed link opens it whole): the embedded bytes are checked against the file elsewhere."""
    return [name for name, _ in figures(page)]


def figures(page: str) -> list[tuple[str, bytes]]:
    found = re.findall(r'<figure><a href="([^"]+)"><img src="data:image/png;base64,([^"]+)"', page)
    return [(name, base64.b64decode(data)) for name, data in found]


def table_row(page: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell starts with `first_cell`."""
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.S):
        cells = re.findall(r"<td>(.*?)</td>", row, flags=re.S)
        if cells and cells[0].startswith(first_cell):
            return cells
    raise AssertionError(f"no row for {first_cell!r}")


def binary_answers(y: np.ndarray, skill: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    positive = np.clip(skill * y + (1 - skill) * rng.random(len(y)), 0, 1)
    return np.column_stack([1 - positive, positive])


def drift(count: int = 5) -> list[FeatureDrift]:
    """Features whose snapshot moved by i/2 standard deviations from the baseline, scored as given,
    in an order that is not the most drifted first."""
    rng = np.random.default_rng(RNG_SEED)
    features = [
        FeatureDrift(
            name=f"feature_{i}",
            values=rng.normal(i / 2, 1, 400),
            reference=np.sort(rng.normal(0, 1, 300)),
            scores={"psi": 0.1 * i, "ks_statistic": 0.05 * i, "ks_p_value": 0.3 / (1 + i), "drifted": i >= 3},
        )
        for i in range(count)
    ]
    return [features[i] for i in np.random.default_rng(1).permutation(count)]


def binary(with_champion: bool = True, **changes: Any) -> Evaluation:
    y = np.random.default_rng(RNG_SEED).integers(0, 2, 143)
    evaluation = Evaluation(
        model="breast-cancer",
        run="breast-cancer-20260101T000000Z-abc",
        execution="arn:aws:states:us-east-1:123456789012:execution:pipeline:breast-cancer-20260101T000000Z-abc",
        task="classification",
        classes=["malignant", "benign"],
        y_true=y,
        candidate=Answers(
            "candidate",
            binary_answers(y, 0.8, 1),
            {"accuracy": 0.9441, "f1": 0.9551, "roc_auc": 0.9712, "log_loss": 0.1523},
        ),
        champion=Answers(
            "champion v2",
            binary_answers(y, 0.4, 2),
            {"accuracy": 0.8811, "f1": 0.9012, "roc_auc": 0.9034, "log_loss": 0.3377},
        )
        if with_champion
        else None,
        gate=PROMOTED
        if with_champion
        else {**PROMOTED, "has_champion": False, "required_score": 0.9712, "reason": "no champion to beat"},
        snapshot={
            "uri": "s3://aimass-test/datasets/breast-cancer/snapshots/run.csv",
            "sha256": "ab" * 32,
            "rows": 569,
        },
        thresholds={"accuracy": 0.9, "log_loss": 0.2},
        drift=drift(),
        baseline_version=2,
    )
    return replace(evaluation, **changes)


@pytest.fixture(scope="module")
def binary_report() -> Mapping[str, bytes]:
    """The files of binary()'s report, drawn once for the tests that only read them (read-only)."""
    return MappingProxyType(build(binary()))


def test_a_binary_report_has_a_page_and_the_plots_it_links_to(binary_report: Mapping[str, bytes]) -> None:
    files = binary_report

    assert set(files) == {"index.html", "confusion_matrix.png", "roc_curve.png", "feature_drift.png"}
    page = files["index.html"].decode()
    assert sorted(image_sources(page)) == sorted(n for n in files if n.endswith(".png"))
    assert all(files[name] == embedded for name, embedded in figures(page))
    for name, data in files.items():
        if name.endswith(".png"):
            width, height = png_size(data)
            assert 400 <= width <= 2000 and 300 <= height <= 2000, (name, width, height)
            assert len(data) > 5_000  # something was drawn, not an empty canvas


def test_the_page_is_self_contained(binary_report: Mapping[str, bytes]) -> None:
    page = binary_report["index.html"].decode()

    assert page.startswith("<!doctype html>") and '<meta charset="utf-8">' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "<style>" in page and 'rel="stylesheet"' not in page


def test_the_metrics_table_compares_the_candidate_with_the_champion_and_marks_the_gate_metric(
    binary_report: Mapping[str, bytes],
) -> None:
    page = binary_report["index.html"].decode()

    assert "<th>candidate</th><th>champion v2</th>" in page
    assert table_row(page, "accuracy") == ["accuracy", "0.9441", "0.8811", "+0.0630"]
    assert table_row(page, "log_loss") == ["log_loss ↓", "0.1523", "0.3377", "-0.1854"]
    assert '<tr class="gate"><td>roc_auc (gate)</td><td>0.9712</td><td>0.9034</td>' in page
    assert page.count('class="gate"') == 1


def test_the_decision_says_promoted_and_why_with_the_thresholds(binary_report: Mapping[str, bytes]) -> None:
    page = binary_report["index.html"].decode()

    assert '<section class="decision promoted"><h2>Decision: promoted</h2>' in page
    assert "roc_auc 0.9712 beats the champion&#x27;s 0.9034 by more than 0.01" in page
    assert "0.9134 (the champion's plus a margin of 0.01)" in page
    assert 'at least 0.9: 0.9441 <span class="pass">passes</span>' in page
    assert 'at most 0.2: 0.1523 <span class="pass">passes</span>' in page


def test_a_candidate_that_does_not_beat_the_champion_is_reported_rejected() -> None:
    gate = {**PROMOTED, "candidate_score": 0.90, "reason": "roc_auc 0.9 does not beat the champion's 0.9034"}

    page = build(binary(gate=gate))["index.html"].decode()

    assert "Decision: rejected" in page and "Decision: promoted" not in page
    assert "does not beat the champion" in page and "not registered" in page


def test_the_dataset_snapshot_is_named_with_its_hash_and_rows(binary_report: Mapping[str, bytes]) -> None:
    page = binary_report["index.html"].decode()

    assert "s3://aimass-test/datasets/breast-cancer/snapshots/run.csv" in page
    assert "ab" * 32 in page
    assert "<dt>rows</dt><dd>569</dd>" in page and "<dt>held-out rows</dt><dd>143</dd>" in page


def test_without_a_champion_the_candidate_is_measured_alone(binary_report: Mapping[str, bytes]) -> None:
    with_champion = binary_report
    files = build(binary(with_champion=False))

    page = files["index.html"].decode()
    assert "champion v2" not in page and "candidate - champion" not in page
    assert "no champion to beat" in page and "Decision: promoted" in page
    assert table_row(page, "accuracy") == ["accuracy", "0.9441"]
    # one confusion matrix, where there were two side by side
    alone, side_by_side = (
        png_size(files["confusion_matrix.png"]),
        png_size(with_champion["confusion_matrix.png"]),
    )
    assert alone[0] < side_by_side[0] * 0.6 and alone[1] == side_by_side[1]
    assert "roc_curve.png" in files


def test_a_multiclass_report_has_a_confusion_matrix_per_model_and_micro_averaged_roc_curves() -> None:
    rng = np.random.default_rng(RNG_SEED)
    y = rng.integers(0, 3, 120)
    candidate = np.eye(3)[y] * 0.6 + rng.random((120, 3)) * 0.4
    champion = rng.random((120, 3))
    evaluation = binary(
        classes=["setosa", "versicolor", "virginica"],
        y_true=y,
        candidate=Answers("candidate", candidate / candidate.sum(axis=1, keepdims=True), {"accuracy": 0.95}),
        champion=Answers("champion v2", champion / champion.sum(axis=1, keepdims=True), {"accuracy": 0.35}),
        gate={**PROMOTED, "metric": "accuracy"},
        thresholds={},
    )

    files = build(evaluation)

    assert {"confusion_matrix.png", "roc_curve.png"} <= set(files)
    page = files["index.html"].decode()
    assert "one-vs-rest curve per class" in page and "micro-average" in page
    assert png_size(files["confusion_matrix.png"])[0] > png_size(files["confusion_matrix.png"])[1]
    assert table_row(page, "accuracy (gate)") == ["accuracy (gate)", "0.9500", "0.3500", "+0.6000"]


def test_a_regression_report_plots_residuals_instead_of_class_plots() -> None:
    rng = np.random.default_rng(RNG_SEED)
    y = rng.normal(100, 20, 200)
    evaluation = binary(
        task="regression",
        classes=None,
        y_true=y,
        candidate=Answers("candidate", y + rng.normal(0, 2, 200), {"rmse": 2.0123, "mae": 1.6, "r2": 0.99}),
        champion=Answers("champion v2", y + rng.normal(5, 8, 200), {"rmse": 9.4567, "mae": 7.2, "r2": 0.8}),
        gate={**PROMOTED, "metric": "rmse", "candidate_score": -2.0123, "required_score": -9.4567},
        thresholds={"rmse": 3.0},
    )

    files = build(evaluation)

    assert set(files) == {"index.html", "residuals.png", "residual_histogram.png", "feature_drift.png"}
    page = files["index.html"].decode()
    assert sorted(image_sources(page)) == ["feature_drift.png", "residual_histogram.png", "residuals.png"]
    assert table_row(page, "rmse") == ["rmse ↓ (gate)", "2.0123", "9.4567", "-7.4444"]
    assert "(lower is better; scores are negated)" in page
    # candidate and champion side by side
    width, height = png_size(files["residuals.png"])
    assert width > 1.5 * height


def test_user_controlled_strings_are_escaped_in_the_page() -> None:
    hostile = "<script>alert(1)</script>"
    features = [replace(drift(1)[0], name=f"radius {hostile}")]

    page = build(
        binary(
            model="bc&co",
            run=f"run-{hostile}",
            classes=[f"$x$ {hostile}", "benign"],
            drift=features,
            gate={**PROMOTED, "reason": f"because {hostile}"},
        )
    )["index.html"].decode()

    assert "<script" not in page
    assert "radius &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "run-&lt;script&gt;" in page and "because &lt;script&gt;" in page
    assert "bc&amp;co" in page


def test_the_drift_section_lists_the_most_drifted_features_first() -> None:
    page = build(binary(drift=drift(15)))["index.html"].decode()

    drift_table = page[page.index('<table class="drift">') :]
    listed = re.findall(r"<tr><td>(feature_\d+)</td>", drift_table)
    assert listed == [f"feature_{i}" for i in range(14, -1, -1)]
    assert table_row(drift_table, "feature_14") == [
        "feature_14",
        "1.4000",
        "0.7000",
        "0.02",
        '<span class="fail">yes</span>',
    ]
    assert table_row(drift_table, "feature_2")[-1] == "no"
    assert "12 of 15 features drifted from v2&#x27;s baseline" in page
    assert f"The {MAX_DRIFT_PLOTS} most drifted features" in page


def test_a_drifted_feature_comes_before_a_higher_psi_that_did_not_drift() -> None:
    quiet, moved = drift(2)
    moved = replace(moved, name="moved", scores={"psi": 0.3, "ks_statistic": 0.2, "drifted": True})
    quiet = replace(quiet, name="quiet", scores={"psi": 0.9, "ks_statistic": 0.05, "drifted": False})

    page = build(binary(drift=[quiet, moved]))["index.html"].decode()

    assert page.index("<tr><td>moved</td>") < page.index("<tr><td>quiet</td>")


def test_without_a_baseline_the_report_says_so_and_draws_no_drift() -> None:
    files = build(binary(drift=[], baseline_version=None))

    assert "feature_drift.png" not in files
    assert "No drift figures" in files["index.html"].decode()


def test_a_baseline_with_only_histogram_buckets_is_drawn_on_its_buckets() -> None:
    feature = FeatureDrift(
        "mean_radius",
        values=np.random.default_rng(RNG_SEED).normal(14, 3, 300),
        buckets=[(6.0 + 2 * i, 8.0 + 2 * i, float(c)) for i, c in enumerate([5, 30, 80, 90, 40, 10])],
        scores={"psi": 0.05, "ks_statistic": 0.04, "ks_p_value": 0.6, "drifted": False},
    )

    files = build(binary(drift=[feature]))

    width, height = png_size(files["feature_drift.png"])
    assert width >= 300 and height >= 250
    assert table_row(files["index.html"].decode(), "mean_radius")[1] == "0.0500"


def test_drift_is_read_from_the_validation_result_and_the_baseline_statistics() -> None:
    # Given a baseline computed as aimass.quality does, and Validate's drift result
    columns = [Column("a", "numeric"), Column("b", "numeric"), Column("c", "numeric")]
    rng = np.random.default_rng(RNG_SEED)
    reference = rng.normal(0, 1, (500, 3))
    statistics = compute(columns, reference).statistics
    validation = {
        "features": [
            {
                "feature": "a",
                "method": "psi+ks",
                "psi": 0.01,
                "ks_statistic": 0.02,
                "ks_p_value": 0.9,
                "drifted": False,
            },
            {
                "feature": "b",
                "method": "psi+ks",
                "psi": 0.8,
                "ks_statistic": 0.4,
                "ks_p_value": 1e-9,
                "drifted": True,
            },
        ],
        "drifted": ["b"],
        "sample_rows": 200,
    }
    snapshot = rng.normal(0, 1, (200, 3))
    snapshot[:5, 0] = np.nan

    # When the report's drift is gathered
    found = {f.name: f for f in drift_from(validation, statistics, ["a", "b", "c"], snapshot)}

    # Then each feature has its scores, the baseline's sketch and the snapshot's present values
    assert found["b"].scores == {
        "method": "psi+ks",
        "psi": 0.8,
        "ks_statistic": 0.4,
        "ks_p_value": 1e-9,
        "drifted": True,
    }
    assert found["a"].values.shape == (195,)
    assert np.allclose(found["a"].reference, np.sort(reference[:, 0]))  # type: ignore[arg-type]
    assert found["c"].scores == {} and found["c"].buckets is not None and len(found["c"].buckets) == 10


def test_no_validation_drift_and_no_baseline_gives_no_features() -> None:
    assert drift_from(None, None, ["a"], np.zeros((10, 1))) == []


@pytest.mark.usefixtures("moto_aws")
def test_the_report_is_written_under_the_runs_prefix_with_its_content_types(
    binary_report: Mapping[str, bytes],
) -> None:
    from aimass import aws

    files = dict(binary_report)

    written = write("aimass-test", "breast-cancer", "run-1", files)

    assert written == {
        "uri": "s3://aimass-test/reports/breast-cancer/pipeline/run-1/index.html",
        "key": "reports/breast-cancer/pipeline/run-1/index.html",
    }
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket="aimass-test", Prefix="reports/breast-cancer/pipeline/run-1/")
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]) == sorted(files)
    page = s3.get_object(Bucket="aimass-test", Key=written["key"])
    assert page["ContentType"].startswith("text/html") and page["Body"].read() == files["index.html"]
    plot = s3.get_object(Bucket="aimass-test", Key="reports/breast-cancer/pipeline/run-1/roc_curve.png")
    assert plot["ContentType"] == "image/png" and plot["Body"].read() == files["roc_curve.png"]


def test_a_constant_feature_and_one_without_values_do_not_stop_the_report() -> None:
    constant = FeatureDrift(
        "always_one", values=np.ones(200), reference=np.ones(50), scores={"psi": 0.0, "drifted": False}
    )
    empty = FeatureDrift("never_given", values=np.array([]), reference=np.ones(50), scores={})
    odd_buckets = FeatureDrift(
        "odd_buckets",
        values=np.arange(100.0),
        buckets=[(5.0, 1.0, 3.0), (1.0, 0.0, 2.0)],  # not bins from left to right
        scores={"psi": 0.1, "drifted": False},
    )

    files = build(binary(drift=[constant, empty, odd_buckets]))

    page = files["index.html"].decode()
    assert png_size(files["feature_drift.png"])[0] >= 700  # two panels side by side
    assert "The 2 most drifted features" in page  # the one without values is listed, not drawn
    assert [table_row(page, n)[0] for n in ("odd_buckets", "always_one", "never_given")] == [
        "odd_buckets",
        "always_one",
        "never_given",
    ]
