"""The data-quality page (aimass.quality.page): one self-contained HTML page on rows against a
version's baseline, built from a quality report, the rows' values and the baseline's statistics."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from aimass.contracts.registry import Feature, Signature, TensorSpec
from aimass.quality.baseline import Baseline, compute
from aimass.quality.checks import RequestChecks
from aimass.quality.columns import columns_of
from aimass.quality.page import (
    DriftPage,
    PredictionDistribution,
    RateBucket,
    page_from_quality_report,
    render,
    values_by_feature,
)
from aimass.quality.report import quality_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OUTPUTS = [TensorSpec(name="variable", dtype="float32", shape=[None, 1])]
NUMERIC = Signature(
    inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 3])],
    outputs=OUTPUTS,
    features=[Feature(name="age"), Feature(name="income"), Feature(name="score")],
)
STRING = Signature(
    inputs=[TensorSpec(name="input", dtype="string", shape=[None, 1])],
    outputs=OUTPUTS,
    features=[Feature(name="colour", dtype="string")],
)


def numeric_rows(seed: int, count: int, income_shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.normal(40, 10, count), rng.normal(50 + income_shift, 10, count), rng.normal(0, 1, count)]
    )


def records(matrix: np.ndarray) -> list[dict[str, Any]]:
    return [{"age": float(a), "income": float(i), "score": float(s)} for a, i, s in matrix]


def inline_images(page: str) -> list[bytes]:
    return [base64.b64decode(d) for d in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)]


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    columns = columns_of(NUMERIC)
    assert columns is not None
    return compute(columns, numeric_rows(0, 2000))


@pytest.fixture(scope="module")
def shifted(baseline: Baseline) -> tuple[DriftPage, str]:
    """Rows whose income moved by two standard deviations, with a rollout's predictions and rates."""
    checks = RequestChecks.build(NUMERIC, baseline.constraints, None)
    assert checks is not None
    instances = records(numeric_rows(1, 600, income_shift=20.0))
    report = quality_report(checks, baseline.statistics, baseline.constraints, instances)
    page = page_from_quality_report(
        report,
        model="credit<risk>",
        versions=[3],
        subject="window 2026-12-05T16:00Z to 2026-12-06T16:00Z",
        observed="window",
        values=values_by_feature(checks, instances),
        statistics=baseline.statistics,
        generated_at="2026-12-06T16:05:00+00:00",
        predictions=PredictionDistribution(
            values=["approve"] * 400 + ["deny"] * 200,
            baseline_classes={"approve": 1500.0, "deny": 500.0},
            scores={"chi_square_p_value": 0.0004, "drifted": True},
        ),
        rates=[
            RateBucket(f"2026-12-06T{h:02d}:00:00Z", 100, anomalies=h % 3, flagged=h % 5) for h in range(6)
        ],
        flag_rate=0.025,
        live_accuracy=0.8125,
        labelled=160,
    )
    return page, render(page)


def test_the_page_is_self_contained(shifted: tuple[DriftPage, str]) -> None:
    # Given a rendered page, when its references are read
    _, page = shifted

    # Then nothing is fetched from elsewhere: no script, no external src or href, images inline
    assert page.startswith("<!doctype html>")
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert 'href="' not in page  # the figures link to no file beside the page: there is none


def test_the_page_has_the_drift_prediction_and_rate_figures(shifted: tuple[DriftPage, str]) -> None:
    _, page = shifted

    images = inline_images(page)

    # Then there are three plots: drifted features, predicted classes, rates per hour, all PNGs
    assert len(images) == 3
    assert all(image.startswith(PNG_SIGNATURE) for image in images)
    assert "<h2>Predictions</h2>" in page and "<h2>Rates over time</h2>" in page


def test_the_summary_names_the_drifted_feature_and_the_numbers(shifted: tuple[DriftPage, str]) -> None:
    drift_page, page = shifted

    # Then income, and only income, drifted; the page gives the rows, rates and live accuracy
    assert drift_page.drifted == ["income"]
    assert "1 of 3<code>" not in page and "1 of 3: <code>income</code>" in page
    assert "600 rows" in page
    assert "81.25% on 160 labelled rows" in page
    assert "2.50%" in page  # the flag rate
    assert "v3" in page and "window 2026-12-05T16:00Z to 2026-12-06T16:00Z" in page


def test_the_drift_table_lists_the_most_drifted_feature_first(shifted: tuple[DriftPage, str]) -> None:
    _, page = shifted

    drift_table = re.search(r'<table class="drift">(.*?)</table>', page, flags=re.S)
    assert drift_table is not None
    first_cells = re.findall(r"<tr><td>([^<]*)</td>", drift_table.group(1))

    assert first_cells[0] == "income"
    assert sorted(first_cells) == ["age", "income", "score"]


def test_the_violations_table_lists_the_drift_violation(shifted: tuple[DriftPage, str]) -> None:
    _, page = shifted

    violations = re.search(r'<table class="violations">(.*?)</table>', page, flags=re.S)

    assert violations is not None
    assert "baseline_drift_check" in violations.group(1) and "income" in violations.group(1)


def test_user_strings_are_escaped(shifted: tuple[DriftPage, str]) -> None:
    _, page = shifted

    assert "credit&lt;risk&gt;" in page and "credit<risk>" not in page


def test_without_predictions_or_rates_their_sections_are_left_out(shifted: tuple[DriftPage, str]) -> None:
    drift_page, _ = shifted

    page = render(replace(drift_page, predictions=None, rates=()))

    assert len(inline_images(page)) == 1
    assert "<h2>Predictions</h2>" not in page and "<h2>Rates over time</h2>" not in page


def test_predicted_values_are_drawn_as_a_histogram_against_the_baselines(
    shifted: tuple[DriftPage, str],
) -> None:
    drift_page, _ = shifted
    rng = np.random.default_rng(2)

    page = render(
        replace(
            drift_page,
            predictions=PredictionDistribution(
                values=rng.normal(1, 1, 300).tolist(), baseline_values=rng.normal(0, 1, 500)
            ),
        )
    )

    assert "The 300 predicted values of the window against the baseline" in page
    assert len(inline_images(page)) == 3


def test_a_categorical_feature_is_drawn_against_the_baselines_categories() -> None:
    # Given a string feature whose rows are mostly a colour the baseline rarely saw
    columns = columns_of(STRING)
    assert columns is not None
    rng = np.random.default_rng(0)
    reference = np.array(rng.choice(["red", "blue", "green"], 1000, p=[0.5, 0.3, 0.2]), dtype=object)[:, None]
    baseline = compute(columns, reference)
    checks = RequestChecks.build(STRING, baseline.constraints, None)
    assert checks is not None
    instances = [{"colour": c} for c in rng.choice(["red", "blue", "green"], 300, p=[0.1, 0.1, 0.8])]
    report = quality_report(checks, baseline.statistics, baseline.constraints, instances)

    # When the page is built and rendered
    drift_page = page_from_quality_report(
        report,
        model="m",
        versions=[1],
        subject="rows of colours.csv",
        values=values_by_feature(checks, instances),
        statistics=baseline.statistics,
    )
    page = render(drift_page)

    # Then the colour drifted by chi-square, with its categories as the baseline's
    (feature,) = drift_page.features
    assert feature.scores["drifted"] and feature.categories is not None
    assert {name for name, _ in feature.categories} == {"red", "blue", "green"}
    assert len(feature.values) == 300
    assert "chi_square" in page and len(inline_images(page)) == 1


def test_too_few_rows_say_so_and_draw_nothing(baseline: Baseline) -> None:
    checks = RequestChecks.build(NUMERIC, baseline.constraints, None)
    assert checks is not None
    instances = records(numeric_rows(3, 5))
    report = quality_report(checks, baseline.statistics, baseline.constraints, instances)

    page = render(
        page_from_quality_report(
            report,
            model="m",
            versions=[1],
            subject="rows",
            values=values_by_feature(checks, instances),
            statistics=baseline.statistics,
            note="Too few rows to judge drift.",
        )
    )

    assert "No drift figures" in page and "Too few rows to judge drift." in page
    assert inline_images(page) == []


def test_rows_given_as_lists_are_read_by_the_features_order(baseline: Baseline) -> None:
    checks = RequestChecks.build(NUMERIC, baseline.constraints, None)
    assert checks is not None

    values = values_by_feature(checks, [[1.0, 2.0, 3.0], {"age": 4.0, "score": "x"}, [5.0, None, 6.0]])

    assert values == {"age": [1.0, 4.0, 5.0], "income": [2.0], "score": [3.0, 6.0]}
