"""The data-quality gate's problems say where they are: the data file, the column, the first row,
and what is wrong; the rejection carries them as JSON within Step Functions' cause limit
(aimass.pipeline.validate, aimass.pipeline.data)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aimass import aws, wiring
from aimass.local.demo import training_csv
from aimass.pipeline import data
from aimass.pipeline.config import TrainingConfig
from aimass.pipeline.validate import validate
from tests.conftest import Registered

BUCKET = "aimass-test"


def rejected(files: dict[str, bytes]) -> data.DatasetRejected:
    """Validate the demo breast-cancer model's snapshot of these data files; the rejection."""
    for name, body in files.items():
        aws.client("s3").put_object(Bucket=BUCKET, Key=f"datasets/breast-cancer/{name}", Body=body)
    serving = data.serving_version(wiring.registry(), "breast-cancer")
    columns = data.feature_columns(serving)
    config = TrainingConfig()
    snapshot = data.ingest(BUCKET, "breast-cancer", "run-1", [c.name for c in columns], config.label)
    with pytest.raises(data.DatasetRejected) as raised:
        validate(snapshot, columns, config, serving, None, None)
    return raised.value


def lines() -> list[list[str]]:
    return [line.split(",") for line in training_csv().decode().splitlines()]


def test_each_problem_names_its_file_column_and_first_row(registered: Registered) -> None:
    # Given a file whose mean_radius is "n/a" in every third row from its 5th, and a file with no label
    table = lines()
    radius = table[0].index("mean_radius")
    for i, row in enumerate(table[1:], start=1):
        if i >= 5 and i % 3 == 2:
            row[radius] = "n/a"
    broken = "\n".join(",".join(row) for row in table).encode()
    unlabelled = "\n".join(",".join(row[:-1]) for row in lines()[:40]).encode()

    # When the gate reads them
    error = rejected({"broken.csv": broken, "unlabelled.csv": unlabelled})

    # Then each problem says where it is
    found = {(p["type"], p["file"], p["column"], p["row"]) for p in error.problems}
    assert ("missing_column", "datasets/breast-cancer/unlabelled.csv", "label", None) in found
    assert ("incomplete", "datasets/breast-cancer/broken.csv", "mean_radius", 5) in found
    [gaps] = [p for p in error.problems if p["column"] == "mean_radius"]
    assert "'n/a'" in gaps["message"]
    # ... and the rows without a label (the second file's) start at its first row
    [labels] = [p for p in error.problems if p["column"] == "label" and p["type"] == "incomplete"]
    assert (labels["file"], labels["row"]) == ("datasets/breast-cancer/unlabelled.csv", 1)


def test_an_unknown_label_is_found_at_its_row(registered: Registered) -> None:
    table = lines()
    table[7][-1] = "benign-ish"
    error = rejected({"breast_cancer.csv": "\n".join(",".join(row) for row in table).encode()})

    [unknown] = [p for p in error.problems if p["type"] == "unknown_label"]
    assert unknown["file"] == "datasets/breast-cancer/breast_cancer.csv"
    assert (unknown["column"], unknown["row"]) == ("label", 7)
    assert "'benign-ish'" in unknown["message"]


def test_too_few_rows_is_a_problem_of_the_whole_dataset(registered: Registered) -> None:
    few = "\n".join(",".join(row) for row in lines()[:21]).encode()

    error = rejected({"breast_cancer.csv": few})

    [short] = [p for p in error.problems if p["type"] == "too_few_rows" and p["column"] is None]
    assert short == {
        "file": None,
        "column": None,
        "row": None,
        "message": "20 rows, at least 50 needed",
        "type": "too_few_rows",
    }


def test_the_rejection_is_json_that_lists_every_problem_that_fits() -> None:
    problems = [data.problem("column is missing from the file", "missing_column", "a.csv", "x")]

    cause = json.loads(str(data.DatasetRejected("m failed validation (1 problems)", problems)))

    assert cause == {"message": "m failed validation (1 problems)", "problems": problems, "more": 0}


def test_problems_past_the_cause_budget_are_counted_not_listed() -> None:
    # Given more problems than a Step Functions cause (32,768 characters) could hold
    problems: list[dict[str, Any]] = [
        data.problem("x" * 200, "missing_column", f"datasets/m/part-{i}.csv", "label") for i in range(500)
    ]

    text = str(data.DatasetRejected("m failed validation (500 problems)", problems))

    cause = json.loads(text)
    assert len(text) <= data.CAUSE_BUDGET < 32_768
    assert cause["problems"] == problems[: len(cause["problems"])]
    assert cause["more"] == 500 - len(cause["problems"]) > 0
