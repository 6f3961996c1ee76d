"""What a failed run tells people: its error read out of the Step Functions cause, and the notice the
DescribeFailure task of statemachines/training_pipeline.asl.json publishes.

A task's Catch leaves `{"Error", "Cause"}` at `$.error`. A Lambda task's Cause is the runtime's
error JSON (`errorMessage`, `errorType`, `stackTrace`); a rejected dataset's errorMessage is itself
JSON, `{"message", "problems", "more"}` (aimass.pipeline.data.DatasetRejected); a state's own error
(`States.Timeout`, a SageMaker job's description) is whatever text Step Functions gives. `failure`
reads all of them the same way for the run detail and the notice.

Standard library only: the CLI imports `problem_place` to print problems as the notice does.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

# How many problems the notice lists; `aimass pipeline status` shows them all.
NOTICE_PROBLEMS = 5
# SNS takes a subject of under 100 printable ASCII characters, without line breaks.
SUBJECT_CHARS = 99
# A message longer than this (a stack trace, a job's description) is cut in the summary; the
# outcome JSON at the end keeps all of it.
SUMMARY_MESSAGE_CHARS = 1000

# The pipeline's task states in the order a run passes them, with the key each leaves its result
# under: the first whose result is missing from the state the Catch left is the one that failed.
_BEFORE_TRAINING = (("Ingest", "ingest"), ("Validate", "validation"))
_ON_LAMBDA = (("Train", "training"),)
_ON_SAGEMAKER = (
    ("PrepareTraining", "sagemaker"),
    ("TrainOnSageMaker", "training_job"),
    ("CollectModel", "training"),
)
_AFTER_TRAINING = (("Evaluate", "evaluation"), ("Register", "registered"), ("Release", "released"))


@dataclass(frozen=True)
class Failure:
    """A run's error as people read it: what went wrong, and for a rejected dataset each problem
    (aimass.pipeline.data.problem) with `more` counting those the cause had no room for."""

    message: str
    problems: list[dict[str, Any]] = field(default_factory=list)
    more: int = 0


def failure(cause: str) -> Failure:
    """The error a Step Functions cause carries: a Lambda task's errorMessage when the cause is
    Lambda's error JSON, else the cause as it is; a rejected dataset's problems when there are."""
    message: Any = cause
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(cause).get("errorMessage", cause)
    rejection: Any = None
    with contextlib.suppress(ValueError, TypeError):
        rejection = json.loads(message)
    if isinstance(rejection, dict) and "problems" in rejection:
        return Failure(
            str(rejection.get("message") or ""),
            list(rejection.get("problems") or []),
            int(rejection.get("more") or 0),
        )
    return Failure(str(message))


def problem_place(problem: dict[str, Any]) -> str:
    """Where a problem is: "file, column C, row R" with what is known, or "the data"."""
    where = [
        problem.get("file"),
        f"column {problem['column']}" if problem.get("column") else None,
        f"row {problem['row']}" if problem.get("row") is not None else None,
    ]
    return ", ".join(str(part) for part in where if part) or "the data"


def failed_step(state: dict[str, Any]) -> str | None:
    """The task state a run failed in, from the state its Catch left: the first with no result."""
    training = _ON_SAGEMAKER if (state.get("validation") or {}).get("backend") == "sagemaker" else _ON_LAMBDA
    order = (*_BEFORE_TRAINING, *training, *_AFTER_TRAINING)
    return next((name for name, key in order if key not in state), None)


def failure_notice(run: str, state: dict[str, Any]) -> dict[str, str]:
    """The subject and message of a failed run's notice, from the state at DescribeFailure: the
    outcome the Failed state built (`$.outcome`) and the caught error (`$.error`). The message is a
    summary for people, then the outcome as JSON on its last line, for scripts."""
    outcome: dict[str, Any] = state.get("outcome") or {}
    error: dict[str, Any] = state.get("error") or {}
    model = str(outcome.get("model") or state.get("model") or "?")
    step = failed_step(state)
    code = str(error.get("Error") or outcome.get("error") or "an error")
    cause = error.get("Cause") or outcome.get("cause")
    found = failure(str(cause)) if cause else Failure("no cause was given")
    subject = f"aimass pipeline {model}: failed{f' in {step}' if step else ''} (run {run})"
    lines = [
        f"The aimass pipeline run {run} of {model} failed{f' in {step}' if step else ''}.",
        "",
        f"{code}: {_cut(found.message)}",
        *(f"  {problem_place(p)}: {p.get('message', '')}" for p in found.problems[:NOTICE_PROBLEMS]),
    ]
    more = max(len(found.problems) - NOTICE_PROBLEMS, 0) + found.more
    if more:
        lines.append(f"  ... and {more} more problem{'s' if more > 1 else ''}")
    lines += [
        "",
        f"The run's states and every problem: aimass pipeline status {model} {run}",
        "",
        "The outcome as JSON, for scripts, is the last line:",
        json.dumps(outcome),
    ]
    return {"subject": sns_subject(subject), "message": "\n".join(lines)}


def _cut(text: str) -> str:
    return text if len(text) <= SUMMARY_MESSAGE_CHARS else text[: SUMMARY_MESSAGE_CHARS - 3] + "..."


def sns_subject(text: str) -> str:
    """A notice's subject as SNS takes it: printable ASCII, cut to SUBJECT_CHARS."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return printable if len(printable) <= SUBJECT_CHARS else printable[: SUBJECT_CHARS - 3] + "..."
