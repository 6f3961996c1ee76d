"""What compression judges a copy by (aimass.compression.judge) for the kinds of answers the V1
codec gives, and the held-out rows a reference file gives (its `label` column kept)."""

from __future__ import annotations

import pytest

from aimass.compression import judge, rows_from_reference
from aimass.contracts.registry import Feature, Signature, TensorSpec


def signature(task: str) -> Signature:
    outputs = [TensorSpec(name="label", dtype="int64", shape=[None])]
    if task == "classification":
        outputs.append(TensorSpec(name="probabilities", dtype="float32", shape=[None, 2]))
    else:
        outputs = [TensorSpec(name="variable", dtype="float32", shape=[None, 1])]
    return Signature(
        inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 2])],
        outputs=outputs,
        features=[Feature(name="a"), Feature(name="b")],
        task=task,  # type: ignore[arg-type]
        label_output="label" if task == "classification" else None,
        probabilities_output="probabilities" if task == "classification" else None,
    )


def test_a_classifier_is_judged_by_its_labels_probabilities_and_accuracy() -> None:
    original = [{"label": "no", "probabilities": {"no": 0.9, "yes": 0.1}}] * 3 + [
        {"label": "yes", "probabilities": {"no": 0.45, "yes": 0.55}}
    ]
    copy = [{"label": "no", "probabilities": {"no": 0.88, "yes": 0.12}}] * 3 + [
        {"label": "no", "probabilities": {"no": 0.51, "yes": 0.49}}
    ]

    figures = judge(signature("classification"), original, copy, ["no", "no", "yes", "yes"])

    assert figures["agreement"] == 0.75
    assert figures["max_probability_difference"] == pytest.approx(0.06)
    assert (figures["metric"], figures["metric_original"], figures["metric_compressed"]) == (
        "accuracy",
        0.75,
        0.5,
    )
    assert figures["metric_delta"] == -0.25


def test_a_regressor_agrees_within_one_percent_of_the_answers_spread() -> None:
    original = [0.0, 10.0, 20.0, 30.0]  # standard deviation 11.18: 1 % is 0.1118
    copy = [0.1, 10.0, 20.2, 30.0]

    figures = judge(signature("regression"), original, copy, ["0", "10", "20", "31"])

    assert figures["agreement"] == 0.75
    assert figures["max_value_difference"] == pytest.approx(0.2)
    assert figures["metric"] == "mae"
    assert figures["metric_original"] == pytest.approx(0.25)
    assert figures["metric_compressed"] == pytest.approx((0.1 + 0.2 + 1.0) / 4)


def test_reference_rows_keep_their_label_column_and_are_sampled_to_the_limit() -> None:
    data = b"b,label,a\n" + b"".join(f"{i},{'yes' if i % 2 else 'no'},{-i}\n".encode() for i in range(10))

    rows = rows_from_reference(signature("classification"), data, "held.csv", "s3://b/held.csv", 4)

    assert rows.matrix.shape == (4, 2)
    assert rows.labels is not None and len(rows.labels) == 4
    for (a, b), label in zip(rows.matrix.tolist(), rows.labels, strict=True):
        assert a == -b and label == ("yes" if int(b) % 2 else "no")
    assert rows.source == "s3://b/held.csv"
