"""Step Functions executions: start one by name, read one and its history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NotRequired, TypedDict

from aimass import aws


class ExecutionExists(Exception):
    """An execution of that name was started before (Step Functions keeps a standard execution's
    name for 90 days); `execution_arn` names it."""

    def __init__(self, execution_arn: str) -> None:
        super().__init__(f"execution {execution_arn} exists")
        self.execution_arn = execution_arn


@dataclass(frozen=True)
class Started:
    execution_arn: str
    started_at: datetime


class Execution(TypedDict):
    """DescribeExecution's answer, the fields the domain reads (Step Functions' names)."""

    status: str
    startDate: NotRequired[datetime]
    stopDate: NotRequired[datetime]
    output: NotRequired[str]
    error: NotRequired[str]
    cause: NotRequired[str]


def start(state_machine_arn: str, name: str, run_input: dict[str, Any]) -> Started:
    """Start an execution named `name` with `run_input` (as JSON); ExecutionExists when one is."""
    sfn = aws.client("stepfunctions")
    try:
        started = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(run_input)
        )
    except sfn.exceptions.ExecutionAlreadyExists as error:
        raise ExecutionExists(
            f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
        ) from error
    return Started(started["executionArn"], started["startDate"])


def describe(execution_arn: str) -> Execution:
    found: Execution = aws.client("stepfunctions").describe_execution(executionArn=execution_arn)
    return found


def status(execution_arn: str) -> str | None:
    """The execution's status (RUNNING, SUCCEEDED, ...), or None when there is no such execution."""
    sfn = aws.client("stepfunctions")
    try:
        return str(sfn.describe_execution(executionArn=execution_arn)["status"])
    except sfn.exceptions.ExecutionDoesNotExist:
        return None


def history(execution_arn: str) -> list[dict[str, Any]]:
    """Every event of the execution's history, oldest first (Step Functions' shapes)."""
    sfn = aws.client("stepfunctions")
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    events: list[dict[str, Any]] = []
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]
