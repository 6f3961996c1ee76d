"""What a monitor run keeps for its page (aimass.monitoring.judge: the seeded sample, the rows per
hour) and the run's page (aimass.monitoring.page): a section per version of the window."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from aimass.monitoring.judge import Rows, sample
from aimass.monitoring.page import rates, render_run
from aimass.quality.baseline import Baseline, compute
from aimass.quality.checks import RequestChecks
from aimass.quality.columns import columns_of
from aimass.quality.report import quality_report
from tests.unit.test_quality_page import NUMERIC, numeric_rows, records


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    columns = columns_of(NUMERIC)
    assert columns is not None
    return compute(columns, numeric_rows(0, 2000))


@pytest.fixture(scope="module")
def checks(baseline: Baseline) -> RequestChecks:
    built = RequestChecks.build(NUMERIC, baseline.constraints, None)
    assert built is not None
    return built


def test_the_sample_is_bounded_seeded_and_holds_no_personal_feature(checks: RequestChecks) -> None:
    # Given a window of 5,000 rows, a missing value among them, and a prediction per row
    matrix = numeric_rows(3, 5000)
    matrix[7, 0] = np.nan
    predictions: list[Any] = [float(i) for i in range(5000)]
    predictions[11] = float("nan")

    # When it is sampled twice, with income personal
    first = sample(checks, matrix, predictions, frozenset({"income"}), size=1000)
    again = sample(checks, matrix, predictions, frozenset({"income"}), size=1000)

    # Then the same 1,000 rows are drawn each time, of the 5,000
    assert first == again
    assert (first["rows"], first["of"], first["left_out"]) == (1000, 5000, ["income"])
    # with every feature's present values but the personal one's
    assert set(first["features"]) == {"age", "score"}
    assert len(first["features"]["score"]) == 1000
    assert len(first["features"]["age"]) in (999, 1000)  # row 7's missing age, if drawn
    # and the drawn rows' predictions (row i predicted i), without the one that is not a number
    drawn = first["predictions"]
    assert len(drawn) in (999, 1000) and 11.0 not in drawn
    assert set(first["features"]["score"]) <= set(matrix[:, 2].tolist())
    # each list in an order of its own: the drawn rows cannot be put back together
    rows = [i for i in range(5000) if float(i) in set(drawn)]
    assert drawn != sorted(drawn)
    assert first["features"]["score"] != [matrix[i, 2] for i in rows]


def test_a_small_window_is_kept_whole(checks: RequestChecks) -> None:
    matrix = numeric_rows(4, 50)

    kept = sample(checks, matrix, ["yes"] * 50, frozenset())

    assert (kept["rows"], kept["of"]) == (50, 50)
    assert sorted(kept["features"]["age"]) == sorted(matrix[:, 0].tolist())
    assert kept["predictions"] == ["yes"] * 50


def test_rows_count_their_flagged_rows_per_hour_across_chunks(checks: RequestChecks) -> None:
    # Given rows of two hours, folded into two chunks part-way through the second hour
    rows = Rows(checks)
    for i, hour in enumerate(["2026-12-06T15"] * 3 + ["2026-12-06T16"] * 4):
        rows.add({"age": 40.0, "income": 50.0, "score": float(i)}, {"label": "yes"}, hour)
        if i == 4:
            rows.fold()

    # When the rows in a mask (here: the odd ones) are counted by hour
    mask = np.arange(rows.count) % 2 == 1

    # Then each hour has its own, in the hours' order
    assert rows.by_hour(mask) == {"2026-12-06T15": 1, "2026-12-06T16": 2}
    assert len(rows.matrix()) == 7


def judged_version(
    baseline: Baseline, checks: RequestChecks, number: int, shift: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A judged version's entry in a summary, and its files (as a run writes them)."""
    matrix = numeric_rows(number, 400, income_shift=shift)
    report = quality_report(checks, baseline.statistics, baseline.constraints, records(matrix))
    drifted = [d["feature"] for d in report["drift"] if d["drifted"]]
    version = {
        "version": number,
        "status": "drift" if drifted else "ok",
        "rows": 400,
        "drifted_features": drifted,
        "features_skipped": [],
        "flag_rate": 0.01,
        "rows_by_hour": {"2026-12-06T14": 150, "2026-12-06T15": 250},
        "flagged_by_hour": {"2026-12-06T14": 0, "2026-12-06T15": 4},
        "live_accuracy": {"task": "classification", "labelled": 40, "correct": 30, "accuracy": 0.75},
    }
    files = {
        "drift.json": {
            "features": report["drift"],
            "prediction": {"status": "no_reference"},
            "thresholds": report["thresholds"],
            "completeness": report["completeness"],
            "anomalies": None,
        },
        "constraint_violations.json": {"violations": report["violations"]},
        "sample.json": sample(checks, matrix, ["yes"] * 300 + ["no"] * 100, frozenset(), size=200),
    }
    return version, files


def test_a_run_over_a_rollout_is_one_page_with_a_section_per_version(
    baseline: Baseline, checks: RequestChecks
) -> None:
    # Given a run whose window saw v1 (income shifted), v2 (clean) and v3 (too few rows)
    v1, files1 = judged_version(baseline, checks, 1, shift=20.0)
    v2, files2 = judged_version(baseline, checks, 2, shift=0.0)
    v3 = {"version": 3, "status": "insufficient_data", "rows": 12, "reason": "12 captured rows"}
    summary = {
        "model": "credit",
        "run": "20261206T160000123Z-1a2b3c",
        "outcome": "drift",
        "window": {"start": "2026-12-06T14:00:00.000Z", "end": "2026-12-06T16:00:00.000Z"},
        "finished_at": "2026-12-06T16:00:05.000Z",
        "versions": [v1, v2, v3],
    }

    # When its page is drawn
    page = render_run(summary, {1: files1, 2: files2}, {1: baseline.statistics, 2: baseline.statistics})

    # Then each version has its section, the drifted feature named in v1's only
    sections = re.split(r'<h2 id="v\d">', page)[1:]
    assert [s.split("<", 1)[0] for s in sections] == ["v1: 400 rows", "v2: 400 rows", "v3: 12 rows"]
    assert "<code>income</code>" in sections[0] and "<code>income</code>" not in sections[1]
    assert "a seeded sample of 200 of its 400 rows" in sections[0]
    assert "75.00% on 40 labelled rows" in sections[0]
    # with the flag rate of each hour (4 of 250 rows in the second)
    # (no anomaly model: no anomaly rate, rather than one of 0 %)
    assert re.search(
        r"<td>2026-12-06T15:00:00Z</td>\s*<td>250</td>\s*<td>&ndash;</td>\s*<td>1.60%</td>", page
    )
    # and the version not judged says why, with nothing drawn
    assert "v3 was not judged: 12 captured rows" in sections[2] and "<img" not in sections[2]
    assert page.count("<h3>Rates over time</h3>") == 2


def test_the_rates_per_hour_come_from_the_summarys_counts() -> None:
    hours = {"2026-12-06T16": 10, "2026-12-06T15": 5}
    found = rates({"rows_by_hour": hours, "anomalies_by_hour": {"2026-12-06T16": 2}})
    unknown = rates({"rows_by_hour": hours, "flagged_by_hour": {"2026-12-06T15": 1}})

    assert [(r.start, r.rows, r.anomalies, r.flagged) for r in found] == [
        ("2026-12-06T15:00:00Z", 5, 0, 0),
        ("2026-12-06T16:00:00Z", 10, 2, 0),
    ]
    assert [(r.anomalies, r.flagged) for r in unknown] == [(None, 1), (None, 0)]
