"""Ground truth for past predictions: a label given by prediction id becomes a training row under
`datasets/<model>/feedback/` (which the next Ingest snapshots with the rest of the model's data) and
moves the live accuracy of the version that made the prediction.

Each label stands alone, as rows of a batch file do: the good ones are recorded and the bad ones
come back with their reasons (field-level details). A prediction keeps its first label: one given
again is refused, so no row is counted twice, in the training data or in the live accuracy.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from aimass import artifacts
from aimass.capture import Captured, PredictionId, read
from aimass.contracts.feedback import FeedbackRequest, LabelRecord
from aimass.contracts.registry import ModelVersion, Signature, TrafficPolicy
from aimass.errors import MAX_DETAILS, ValidationFailed, field_error
from aimass.pipeline.data import class_index, datasets_prefix, stored_config
from aimass.quality.columns import columns_of
from aimass.registry import Registry
from aimass.serving import live as live_counts

DEFAULT_LABEL_COLUMN = "label"

log = logging.getLogger(__name__)


class LabelRefused(ValueError):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Recorded:
    """What a feedback request recorded, for metrics: labels, and how many were right (classifiers)
    or the sum of their absolute errors (regressors)."""

    model: str
    labelled: int
    correct: int
    classified: int
    abs_error: float
    scored: int


def _label_column(bucket: str, model: str) -> str:
    """The label column's name, as the model's training settings give it (docs/pipeline.md)."""
    try:
        stored = stored_config(bucket, model)
    except ValueError:  # not JSON: retraining will say so; the rows get the default name
        return DEFAULT_LABEL_COLUMN
    label = stored.get("label") if isinstance(stored, dict) else None
    return label if isinstance(label, str) and label else DEFAULT_LABEL_COLUMN


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def score(
    signature: Signature, output: Any, label: str | int | float
) -> tuple[str, bool | None, float | None]:
    """A label checked against the version's task: its text in the training data, whether the
    prediction was right (classification) and its absolute error (regression)."""
    predicted = (
        output.get("label" if signature.task == "classification" else "value")
        if isinstance(output, dict)
        else output
    )
    if signature.task == "classification":
        classes = signature.class_labels
        if classes:
            index = class_index(_text(label), classes)
            if index is None:
                shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
                raise LabelRefused(
                    f"not one of the model's classes ({shown}) or their index", "unknown_label"
                )
            return classes[index], _text(predicted) == classes[index], None
        return _text(label), _text(predicted) == _text(label), None
    if signature.task == "regression":
        if isinstance(label, str):
            raise LabelRefused("a regression model's label is a number", "not_a_number")
        if not isinstance(predicted, int | float) or not math.isfinite(predicted):
            return _text(label), None, None  # the model answered NaN: labelled, not scored
        return _text(label), None, abs(float(label) - float(predicted))
    raise LabelRefused(
        "the model is neither a classifier nor a regressor: its predictions have no label to check",
        "unsupported_task",
    )


def training_row(signature: Signature, inputs: dict[str, Any]) -> tuple[list[str], list[Any]] | None:
    """A captured prediction's inputs as the columns Ingest reads (features, or an image's cells
    named like `image[3][4]`); None when the model's input has no such columns."""
    columns = columns_of(signature)
    if columns is None:
        return None
    names = [c.name for c in columns]
    if signature.features:
        return names, [inputs.get(name) for name in names]
    cells = np.asarray(inputs[signature.inputs[0].name], dtype=object).reshape(-1).tolist()
    return (names, cells) if len(cells) == len(names) else None


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return out.getvalue().encode()


@dataclass(frozen=True)
class _Accepted:
    position: int
    captured: Captured
    version: ModelVersion
    record: LabelRecord

    @property
    def row(self) -> tuple[list[str], list[Any]] | None:
        return training_row(self.version.signature, self.captured.inputs)


def _layout(model: str, accepted: list[_Accepted], now: datetime) -> dict[str, str]:
    """Which file each label's row goes to: `<uuid>.csv` (`<uuid>-<n>.csv` when versions took
    different columns), `<uuid>.jsonl` for inputs that are not columns (Ingest reads only the CSV)."""
    base = f"{datasets_prefix(model)}feedback/{now:%Y/%m/%d}/{uuid.uuid4().hex}"
    headers: dict[tuple[str, ...], int] = {}
    for item in accepted:
        row = item.row
        if row is not None:
            headers.setdefault(tuple(row[0]), len(headers))
    layout = {}
    for item in accepted:
        row = item.row
        if row is None:
            layout[item.record.prediction_id] = f"{base}.jsonl"
        else:
            n = headers[tuple(row[0])]
            layout[item.record.prediction_id] = f"{base}-{n}.csv" if len(headers) > 1 else f"{base}.csv"
    return layout


def _files(label_column: str, kept: list[_Accepted]) -> dict[str, tuple[bytes, str]]:
    """The labelled rows by file: a CSV of `prediction_id`, the columns and the label column; JSON
    Lines of `prediction_id`, `inputs` and the label column."""
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    other: dict[str, list[str]] = {}
    for item in kept:
        key, pid, label = item.record.file, item.record.prediction_id, item.record.label
        row = item.row
        if row is None:
            line = {"prediction_id": pid, "inputs": item.captured.inputs, label_column: label}
            other.setdefault(key, []).append(json.dumps(line))
        else:
            header, values = row
            table = tables.setdefault(key, (["prediction_id", *header, label_column], []))
            table[1].append([pid, *values, label])
    files = {key: (_csv(header, rows), "text/csv") for key, (header, rows) in tables.items()}
    for key, found in other.items():
        files[key] = (("\n".join(found) + "\n").encode(), "application/jsonlines")
    return files


Refuse = Callable[[int, str, str, str], None]


def _checked(
    registry: Registry, bucket: str, model: str, request: FeedbackRequest, actor: str, refuse: Refuse
) -> list[_Accepted]:
    """The labels that check out against their captured predictions; the others are refused."""
    wanted: dict[int, PredictionId] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(request.labels):
        pid = PredictionId.parse(item.prediction_id)
        if pid.model != model:
            refuse(
                i, "prediction_id", f"a prediction of model {pid.model!r}, not {model!r}", "model_mismatch"
            )
        elif item.prediction_id in first:
            at = first[item.prediction_id]
            refuse(i, "prediction_id", f"labelled already in this request (labels[{at}])", "duplicate")
        else:
            first[item.prediction_id] = i
            wanted[i] = pid
    captured: dict[str, Captured] = {}
    for key in sorted({pid.key for pid in wanted.values()}):
        captured.update(read(bucket, key))
    versions: dict[int, ModelVersion] = {}
    accepted: list[_Accepted] = []
    for i, pid in wanted.items():
        found = captured.get(str(pid))
        if found is None:
            refuse(i, "prediction_id", "no captured prediction has this id", "unknown_prediction")
            continue
        if found.version not in versions:
            versions[found.version] = registry.get_version(model, found.version)
        version = versions[found.version]
        try:
            text, correct, error = score(version.signature, found.output, request.labels[i].label)
        except LabelRefused as refused:
            refuse(i, "label", str(refused), refused.kind)
            continue
        record = LabelRecord(
            prediction_id=str(pid),
            version=found.version,
            label=text,
            correct=correct,
            abs_error=error,
            file="",
            created_by=actor,
        )
        accepted.append(_Accepted(i, found, version, record))
    layout = _layout(model, accepted, datetime.now(UTC))
    return [
        replace(
            a, record=a.record.model_copy(update={"file": f"s3://{bucket}/{layout[a.record.prediction_id]}"})
        )
        for a in accepted
    ]


def record(
    registry: Registry, bucket: str, model: str, request: FeedbackRequest, actor: str
) -> tuple[dict[str, Any], Recorded]:
    """Record the labels that check out: the FeedbackResponse, and what was recorded. When none
    does, ValidationFailed with every label's reason."""
    summary = registry.get_model(model)  # 404 for an unknown model
    details: list[tuple[int, dict[str, Any]]] = []

    def refuse(i: int, field: str, message: str, kind: str) -> None:
        details.append((i, field_error(["body", "labels", i, field], message, kind)))

    accepted = _checked(registry, bucket, model, request, actor, refuse)
    # Everything that may fail is read before the labels are recorded
    label_column = _label_column(bucket, model) if accepted else DEFAULT_LABEL_COLUMN
    # The labels first: a prediction labelled twice (here, or by a request running alongside) is
    # refused there, before any row of it is written.
    taken = set(registry.record_labels(model, [(a.record, a.version.signature.task) for a in accepted]))
    kept = []
    for item in accepted:
        if item.record.prediction_id in taken:
            refuse(item.position, "prediction_id", "this prediction has a label already", "already_labelled")
        else:
            kept.append(item)
    rejected = [detail for _, detail in sorted(details, key=lambda found: found[0])]
    if not kept:
        raise ValidationFailed("no label was recorded", rejected[:MAX_DETAILS])
    files = _files(label_column, kept)
    try:
        for uri, (data, content_type) in files.items():
            artifacts.put(*artifacts.parse_uri(uri), data, content_type)
    except Exception:
        try:  # the labels go back, so that they can be sent again
            registry.unrecord_labels(model, [(a.record, a.version.signature.task) for a in kept])
        except Exception:
            log.exception("labels of %s recorded without their rows: %s", model, [a.record for a in kept])
        raise
    records = [item.record for item in kept]
    _count_for_rollout(registry, summary.traffic, model, records)
    response = {
        "model": model,
        "accepted": len(records),
        "rejected": rejected[:MAX_DETAILS],
        "files": list(files),
        "versions": [v.model_dump() for v in registry.live_accuracy(model)],
    }
    return response, Recorded(
        model=model,
        labelled=len(records),
        correct=sum(bool(r.correct) for r in records),
        classified=sum(r.correct is not None for r in records),
        abs_error=sum(r.abs_error or 0.0 for r in records),
        scored=sum(r.abs_error is not None for r in records),
    )


def _count_for_rollout(
    registry: Registry, policy: TrafficPolicy, model: str, records: list[LabelRecord]
) -> None:
    """Labels given while a rollout is under way also go to its live counts, for the version that made
    each prediction: the accuracy guard compares the versions on them. A count that cannot be added
    is logged and dropped, as live counts are (the labels themselves are recorded)."""
    if not policy.under_way:
        return
    totals: dict[int, Counter[str]] = {}
    for record in records:
        totals.setdefault(record.version, Counter()).update(
            live_counts.label_counters(record.correct, record.abs_error)
        )
    for version, counters in totals.items():
        try:
            registry.add_live_counts(model, policy.live_key, version, dict(counters))
        except Exception:
            log.exception("labels of %s v%s not counted for its rollout %s", model, version, policy.live_key)


def live_accuracy(registry: Registry, model: str) -> dict[str, Any]:
    registry.get_model(model)  # 404 for an unknown model
    return {"model": model, "versions": [v.model_dump() for v in registry.live_accuracy(model)]}
