"""What the batch hands on: a file's report (written to reports/<model>/<file>.json, docs/batch.md
"The report"), the summary of a file that a handler or a state machine task returns, and the state
the batch state machine carries between Plan, the parts and Merge. TypedDicts: the JSON written and
passed is the dicts themselves, key order included."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from aimass.serving.store import VersionRef

# `in` is a keyword: the functional form.
Rows = TypedDict("Rows", {"in": int, "predicted": int, "rejected": int})


class Timing(TypedDict):
    started_at: str
    finished_at: str
    seconds: float
    rows_per_second: float | None


class ViolationCount(TypedDict):
    feature: str
    check: str
    rows: int


class QualityCounts(TypedDict):
    rows_flagged: int
    anomalies: int
    violations: list[ViolationCount]
    rejected_by: dict[str, int]


class Counts(TypedDict):
    """A file's (or a part's) rows, timing and quality, as counted."""

    rows: Rows
    timing: Timing
    quality: QualityCounts


class DriftSummary(TypedDict):
    sample_rows: int
    features: list[dict[str, Any]]
    drifted: list[str]
    completeness: dict[str, Any]
    thresholds: dict[str, Any]


class ReportError(TypedDict):
    code: str
    message: str
    # A run that failed in the state machine: the error's name as Step Functions passed it.
    name: NotRequired[str]
    # The data rows read before the error; none of them is written (a failed file has no outputs).
    rows_read: NotRequired[int]


class FileReport(TypedDict):
    """A file's report. A file that could not be processed at all has no timing, quality or drift;
    `file` comes first once written; `sample` only in a part's report; `outputs` the URIs written
    when it succeeded, null when it failed (nothing is written then, and its `rows` are zero);
    `retraining` only when it succeeded; `parts` when it went through the state machine."""

    file: NotRequired[dict[str, Any]]
    status: str
    error: ReportError | None
    model: NotRequired[VersionRef | None]
    # Why `model` predicted it: the traffic policy's stable or canary version, or the one it named
    variant: NotRequired[str]
    drift: NotRequired[DriftSummary | None]
    sample: NotRequired[list[dict[str, Any]]]
    rows: Rows
    timing: NotRequired[Timing]
    quality: NotRequired[QualityCounts]
    parts: NotRequired[dict[str, Any]]
    outputs: NotRequired[dict[str, str] | None]
    retraining: NotRequired[dict[str, Any] | None]


class FileSummary(TypedDict):
    """What the batch function answers for a file: its status and rows (none yet when it was handed to
    the state machine: then its execution), and where its report is (or will be)."""

    key: str
    status: str
    rows: Rows | None
    execution: NotRequired[str]
    report: NotRequired[str]


class Manifest(TypedDict):
    """Where the Distributed Map's ItemReader finds the parts (S3's names)."""

    Bucket: str
    Key: str


class Planned(TypedDict):
    """Plan's result: what every part and Merge need to know (the state machine's `planned`)."""

    drop: dict[str, Any]
    run: str
    started_at: str
    parts: int
    manifest: Manifest
    max_concurrency: int
    options: dict[str, Any]
    variant: NotRequired[str]


class PartItem(TypedDict):
    """One entry of the manifest: a part's object and the number of its first row in the file."""

    index: int
    key: str
    first_row: int
    rows: int


class PartDone(TypedDict):
    index: int
    rows: Rows
