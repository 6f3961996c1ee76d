"""Prediction ids, the capture key they name, and how a label is checked against a version's task."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from aimass.capture import CaptureWriter, PredictionId, input_rows
from aimass.contracts.feedback import PREDICTION_ID_PATTERN, LabelRecord
from aimass.contracts.registry import ModelVersion, Signature, TensorSpec
from aimass.feedback import LabelRefused, score, training_row
from aimass.registry import TRANSACTION_ITEMS, _label_chunks
from aimass.serving.pipeline import Answered

CLASSIFIER = Signature(
    inputs=[TensorSpec(name="x", dtype="float32", shape=[None, 2])],
    outputs=[],
    features=[{"name": "a"}, {"name": "b", "nullable": True}],  # type: ignore[list-item]
    task="classification",
    class_labels=["no", "yes"],
)
IMAGE = Signature(
    inputs=[TensorSpec(name="image", dtype="float32", shape=[None, 2, 2])],
    outputs=[],
    task="classification",
    class_labels=[str(d) for d in range(10)],
)
REGRESSOR = CLASSIFIER.model_copy(update={"task": "regression", "class_labels": None})


def test_a_prediction_id_names_its_model_hour_request_and_instance_and_derives_the_capture_key() -> None:
    pid = PredictionId("breast-cancer", "2026112312", "3f2a9c0d6b8e4e0f9d1c2b3a4f5e6d7c", 7)
    text = str(pid)
    assert text == "breast-cancer:2026112312:3f2a9c0d6b8e4e0f9d1c2b3a4f5e6d7c:7"
    assert re.match(PREDICTION_ID_PATTERN, text) and PredictionId.parse(text) == pid
    assert pid.key == "capture/breast-cancer/2026/11/23/12/3f2a9c0d6b8e4e0f9d1c2b3a4f5e6d7c.jsonl"


def test_model_names_with_dots_and_dashes_make_valid_ids() -> None:
    text = str(PredictionId("m.v2-x_y", "2026010100", "0" * 32, 0))
    assert re.match(PREDICTION_ID_PATTERN, text) and PredictionId.parse(text).model == "m.v2-x_y"


@pytest.mark.parametrize("given", ["benign:1", "m:20261123:" + "0" * 32 + ":0", "m:2026112312:xyz:0"])
def test_what_is_not_a_prediction_id_fails_the_pattern(given: str) -> None:
    assert not re.match(PREDICTION_ID_PATTERN, given)


@pytest.mark.parametrize(
    ("label", "written", "correct"),
    [("yes", "yes", True), (1, "yes", True), (0, "no", False), (1.0, "yes", True)],
)
def test_a_class_label_is_a_class_name_or_index(label: Any, written: str, correct: bool) -> None:
    assert score(CLASSIFIER, {"label": "yes", "probabilities": {}}, label) == (written, correct, None)


@pytest.mark.parametrize("label", ["maybe", 2, -1, 0.5])
def test_a_label_that_is_not_a_class_is_refused(label: Any) -> None:
    with pytest.raises(LabelRefused) as refused:
        score(CLASSIFIER, {"label": "yes"}, label)
    assert refused.value.kind == "unknown_label" and "no, yes" in str(refused.value)


def test_digit_classes_take_the_digit_as_text_or_number() -> None:
    assert score(IMAGE, {"label": "3"}, 3) == ("3", True, None)
    assert score(IMAGE, {"label": "3"}, "8") == ("8", False, None)


def test_a_regression_label_is_a_number_scored_by_its_absolute_error() -> None:
    assert score(REGRESSOR, 2.5, 3) == ("3", None, 0.5)
    assert score(REGRESSOR, {"value": 2.5, "rules": []}, 2.0) == ("2", None, 0.5)
    assert score(REGRESSOR, None, 2.0) == ("2", None, None)  # the model answered NaN: not scored
    with pytest.raises(LabelRefused, match="number"):
        score(REGRESSOR, 2.5, "high")


def test_a_model_that_neither_classifies_nor_regresses_takes_no_labels() -> None:
    with pytest.raises(LabelRefused) as refused:
        score(CLASSIFIER.model_copy(update={"task": "other"}), [0.1], 1)
    assert refused.value.kind == "unsupported_task"


def test_captured_inputs_are_keyed_by_feature_as_the_model_saw_them() -> None:
    feeds = {"x": np.array([[0.1, np.nan], [17.99, 2.0]], dtype=np.float32)}
    assert input_rows(CLASSIFIER, feeds, 2) == [{"a": 0.1, "b": None}, {"a": 17.99, "b": 2.0}]
    image = {"image": np.arange(4, dtype=np.float32).reshape(1, 2, 2)}
    assert input_rows(IMAGE, image, 1) == [{"image": [[0.0, 1.0], [2.0, 3.0]]}]


def test_training_rows_are_the_columns_ingest_reads() -> None:
    assert training_row(CLASSIFIER, {"a": 1.5, "b": None}) == (["a", "b"], [1.5, None])
    header, cells = training_row(IMAGE, {"image": [[0.0, 1.0], [2.0, 3.0]]}) or ([], [])
    assert header == ["image[0][0]", "image[0][1]", "image[1][0]", "image[1][1]"] and cells == [
        0.0,
        1.0,
        2.0,
        3.0,
    ]
    two_inputs = Signature(
        inputs=[
            TensorSpec(name="x", dtype="float32", shape=[None, 2]),
            TensorSpec(name="y", dtype="float32", shape=[None, 1]),
        ],
        outputs=[],
    )
    assert training_row(two_inputs, {"x": [1.0, 2.0], "y": [3.0]}) is None


def test_labels_are_written_in_transactions_that_fit_their_version_counters() -> None:
    labels = [
        (
            LabelRecord(prediction_id=f"m:2026010100:{'0' * 32}:{i}", version=1 + i % 2, label="a", file=""),
            "classification",
        )
        for i in range(60)
    ]
    chunks = _label_chunks(labels)  # type: ignore[arg-type]
    assert [label for chunk in chunks for label in chunk] == labels
    assert all(len(chunk) + len({r.version for r, _ in chunk}) <= TRANSACTION_ITEMS for chunk in chunks)


def version(signature: Signature) -> ModelVersion:
    return ModelVersion(
        name="m", version=1, artifact_uri="s3://b/k", sha256="0", size_bytes=1, signature=signature
    )


def test_a_sampled_out_request_gets_no_ids_and_a_full_backlog_captures_nothing() -> None:
    answered = Answered(version(CLASSIFIER), 2)
    sampled_out = CaptureWriter("b", 0.5, draw=lambda: 0.7)
    assert sampled_out(answered) is None
    behind = CaptureWriter("b", 1.0, max_pending_lines=1, now=lambda: datetime(2026, 1, 2, 3, tzinfo=UTC))
    assert behind(answered) is None and behind.shed == 1


def test_requests_arriving_together_share_a_capture_object_on_consecutive_lines() -> None:
    # Given a writer whose objects stay open an hour (nothing is written within this test)
    writer = CaptureWriter("b", max_age_s=3600, now=lambda: datetime(2026, 1, 2, 3, tzinfo=UTC))
    answered = Answered(version(CLASSIFIER), 2)
    # When two requests of two instances come
    first, second = (writer(answered) or [] for _ in range(2))
    parsed = [PredictionId.parse(i) for i in [*first, *second]]
    # Then they share one object, on lines 0-3, and all four lines wait to be written
    assert len({p.key for p in parsed}) == 1 and [p.index for p in parsed] == [0, 1, 2, 3]
    assert writer.pending_lines == 4 and writer.shed == 0
