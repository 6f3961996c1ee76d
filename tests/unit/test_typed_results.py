"""The typed results the batch and the pipeline pass around (TypedDicts) name the fields that their
contracts document: a run as the pipeline routes answer it (aimass.contracts.pipeline), and a batch
file's report as docs/batch.md shows it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel

from aimass.batch.results import FileReport
from aimass.contracts.pipeline import (
    PipelineRelease,
    PipelineRun,
    PipelineRunStarted,
    PipelineRunSummary,
    PipelineState,
)
from aimass.pipeline.runs import RunDetail, RunRelease, RunStarted, RunSummary, StatePassed
from tests.support import REPO


def fields(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def keys(typed: Any) -> set[str]:
    return set(typed.__required_keys__ | typed.__optional_keys__)


@pytest.mark.parametrize(
    ("typed", "contract"),
    [
        (RunStarted, PipelineRunStarted),
        (StatePassed, PipelineState),
        (RunSummary, PipelineRunSummary),
        (RunDetail, PipelineRun),
        (RunRelease, PipelineRelease),
    ],
)
def test_a_typed_run_result_has_exactly_its_contracts_fields(typed: Any, contract: type[BaseModel]) -> None:
    assert keys(typed) == fields(contract)


def test_the_typed_batch_report_has_the_fields_docs_batch_md_shows() -> None:
    documented = (REPO / "docs" / "batch.md").read_text().split("## The report", 1)[1]
    example = re.search(r"```json\n(.*?)```", documented, re.S)
    assert example is not None
    shown = set(re.findall(r'^  "(\w+)":', example.group(1), re.M))  # its top-level keys
    # but a part's drift sample and a state machine run's `parts`, which the page tells apart
    assert shown == keys(FileReport) - {"sample", "parts"}
