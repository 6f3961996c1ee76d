"""The notice a failed run publishes (aimass.pipeline.notices): its subject names the model, the failed
step and the run; its message is a summary a person reads (the error, the first problems of a
rejected dataset, the command that lists them all), then the outcome JSON on its last line."""

from __future__ import annotations

import json
from typing import Any

from aimass.pipeline import data, notices

RUN = "bc-20261206T130000Z-0a1b2c3d"


def lambda_cause(message: str, kind: str) -> str:
    """A task's cause as Step Functions gets it from the Lambda runtime."""
    return json.dumps({"errorMessage": message, "errorType": kind, "stackTrace": ['  File "x.py"']})


def failed_state(error: str, cause: str | None, **results: Any) -> dict[str, Any]:
    """The state DescribeFailure gets: the run's input, the results before the failure, the error
    the Catch left and the outcome the Failed state built from it."""
    caught = {"Error": error, **({"Cause": cause} if cause is not None else {})}
    outcome = {"model": "bc", "run": RUN, "decision": "failed", "error": error, "cause": cause}
    return {"model": "bc", **results, "error": caught, "outcome": outcome}


def rejection(count: int, more: int) -> str:
    """A rejected dataset's text listing `count` problems, with `more` the cause had no room for."""
    problems = [
        data.problem(f"problem {i}", "incomplete", f"datasets/bc/part{i}.csv", "mean_radius", i + 1)
        for i in range(count)
    ]
    message = f"the training data for bc failed validation ({count + more} problems)"
    return json.dumps({"message": message, "problems": problems, "more": more})


def outcome_of(message: str) -> dict[str, Any]:
    return dict(json.loads(message.splitlines()[-1]))


def test_a_rejected_dataset_notice_lists_its_problems_each_where_it_is() -> None:
    problems = [
        data.problem("column is missing from the file", "missing_column", "datasets/bc/nolabel.csv", "label"),
        data.problem(
            "33.6% of rows have no number here", "incomplete", "datasets/bc/b.csv", "mean_radius", 1
        ),
        data.problem("12 rows, at least 20 needed", "too_few_rows"),
    ]
    error = data.DatasetRejected("the training data for bc failed validation (3 problems)", problems)
    state = failed_state("DatasetRejected", lambda_cause(str(error), "DatasetRejected"), ingest={})

    notice = notices.failure_notice(RUN, state)

    assert notice["subject"] == f"aimass pipeline bc: failed in Validate (run {RUN})"
    lines = notice["message"].splitlines()
    assert lines[0] == f"The aimass pipeline run {RUN} of bc failed in Validate."
    assert lines[2:6] == [
        "DatasetRejected: the training data for bc failed validation (3 problems)",
        "  datasets/bc/nolabel.csv, column label: column is missing from the file",
        "  datasets/bc/b.csv, column mean_radius, row 1: 33.6% of rows have no number here",
        "  the data: 12 rows, at least 20 needed",
    ]
    assert f"aimass pipeline status bc {RUN}" in notice["message"]
    assert "more problem" not in notice["message"] and "stackTrace" not in "\n".join(lines[:-1])
    # Scripts read the outcome, its fields as they were, from the last line
    assert outcome_of(notice["message"]) == state["outcome"]


def test_many_problems_are_cut_to_the_first_few_and_counted() -> None:
    cause = lambda_cause(rejection(8, more=3), "DatasetRejected")
    state = failed_state("DatasetRejected", cause, ingest={})

    notice = notices.failure_notice(RUN, state)

    listed = [line for line in notice["message"].splitlines() if line.startswith("  datasets/")]
    assert listed == [
        f"  datasets/bc/part{i}.csv, column mean_radius, row {i + 1}: problem {i}"
        for i in range(notices.NOTICE_PROBLEMS)
    ]
    # the 3 listed in the cause past the first 5, and the 3 the cause had no room for
    assert "  ... and 6 more problems" in notice["message"].splitlines()


def test_a_text_cause_is_shown_as_it_is() -> None:
    # A state's own error: a SageMaker job's description, and a timeout with no cause at all
    job = json.dumps({"TrainingJobName": "aimass-prod-bc-1", "FailureReason": "AlgorithmError: MemoryError"})
    on_sagemaker = {"ingest": {}, "validation": {"backend": "sagemaker"}, "sagemaker": {}}

    notice = notices.failure_notice(RUN, failed_state("States.TaskFailed", job, **on_sagemaker))
    timeout = notices.failure_notice(RUN, failed_state("States.Timeout", None, ingest={}, validation={}))

    assert notice["subject"] == f"aimass pipeline bc: failed in TrainOnSageMaker (run {RUN})"
    assert f"States.TaskFailed: {job}" in notice["message"].splitlines()
    assert timeout["subject"] == f"aimass pipeline bc: failed in Train (run {RUN})"
    assert "States.Timeout: no cause was given" in timeout["message"].splitlines()
    assert outcome_of(timeout["message"])["error"] == "States.Timeout"


def test_an_error_without_problems_gives_its_message_and_no_problem_lines() -> None:
    error = ValueError("Train: invalid parameter 'no_such_parameter' for estimator DecisionTreeClassifier")
    done = {"ingest": {}, "validation": {}, "training": {}, "evaluation": {}}
    state = failed_state("ValueError", lambda_cause(str(error), "ValueError"), **done)

    notice = notices.failure_notice(RUN, state)

    lines = notice["message"].splitlines()
    assert notice["subject"] == f"aimass pipeline bc: failed in Register (run {RUN})"
    assert lines[2] == f"ValueError: {error}" and lines[3] == ""
    assert not [line for line in lines if line.startswith("  ")]


def test_the_subject_is_what_sns_takes_however_long_the_names() -> None:
    state = failed_state("DatasetRejected", "x")
    state["outcome"]["model"] = "é" + "m" * 120

    subject = notices.failure_notice("r" * 80, state)["subject"]

    assert len(subject) < 100 and subject.isascii() and subject.isprintable()
    assert subject.startswith("aimass pipeline ?mmm") and subject.endswith("...")


def test_a_long_message_is_cut_in_the_summary_and_kept_whole_in_the_outcome() -> None:
    cause = "x" * 5000
    notice = notices.failure_notice(RUN, failed_state("States.TaskFailed", cause, ingest={}))

    summary = notice["message"].splitlines()[2]
    assert len(summary) < 1100 and summary.endswith("...")
    assert outcome_of(notice["message"])["cause"] == cause
