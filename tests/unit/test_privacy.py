"""Personal features kept out of what is stored: erased or tokenised in capture lines and rejected
rows, whatever shape the instances came in; fields that are not features never captured."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from aimass.batch.job import _protected
from aimass.batch.rows import reason
from aimass.capture import lines
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import Feature, ModelVersion, Signature, SignatureEnrichment, TensorSpec
from aimass.errors import ValidationFailed
from aimass.privacy import ERASED, TOKEN_PREFIX, WITHHELD, masker, personal_features, token
from aimass.serving.pipeline import Answered
from aimass.signature import enrich

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SIGNATURE = Signature(
    inputs=[TensorSpec(name="x", dtype="float32", shape=[None, 3])],
    outputs=[],
    features=[
        Feature(name="age", pii=True),
        Feature(name="income"),
        Feature(name="zip", dtype="string", pii=True),
    ],
    task="regression",
)
AT = datetime(2026, 12, 6, 12, tzinfo=UTC)


def version(signature: Signature = SIGNATURE) -> ModelVersion:
    return ModelVersion(
        name="m", version=1, artifact_uri="s3://b/k", sha256="0", size_bytes=1, signature=signature
    )


def captured_inputs(answered: Answered) -> list[dict[str, Any]]:
    body = lines(answered, [f"id{i}" for i in range(answered.instances)], AT).decode()
    return [
        json.loads(json.loads(line)["captureData"]["endpointInput"]["data"]) for line in body.splitlines()
    ]


def tokenising(key: bytes = KEY) -> Any:
    return masker(SIGNATURE, QualityPolicy(pii="tokenise"), lambda: key)


def test_a_token_is_the_same_for_the_same_value_and_key_and_differs_across_keys_and_values() -> None:
    assert token(KEY, "a@b.c") == token(KEY, "a@b.c")
    assert token(KEY, "a@b.c") != token(OTHER_KEY, "a@b.c")
    assert token(KEY, "a@b.c") != token(KEY, "a@b.d")
    assert token(KEY, 42) == token(KEY, 42.0)  # one number however it was written
    assert token(KEY, "42") != token(KEY, 42)


def test_a_numeric_feature_read_as_text_from_a_file_gets_the_token_of_its_number() -> None:
    mask = tokenising()
    assert mask.field("age", "41") == mask.field("age", 41.0) == token(KEY, 41)
    assert mask.field("zip", "75011") == token(KEY, "75011")  # a string feature stays text
    assert token(KEY, 1).startswith(TOKEN_PREFIX) and len(token(KEY, 1)) == len(TOKEN_PREFIX) + 24


def test_v1_objects_are_captured_with_personal_values_erased_and_other_keys_dropped() -> None:
    # Given a request whose objects carry a field that is not a feature, on a model with two
    # personal features under the default policy (erase)
    given = [{"age": 41, "income": 52000.0, "zip": "75011", "email": "a@b.c"}]
    answered = Answered(version(), 1, given=given, masker=masker(SIGNATURE, QualityPolicy(), None))
    # When it is captured
    [row] = captured_inputs(answered)
    # Then the personal values are erased, the others kept, and the extra field never written
    assert row == {"age": ERASED, "income": 52000.0, "zip": ERASED}
    assert given[0]["age"] == 41  # the request's own objects are left as the model saw them


def test_v1_rows_are_captured_with_personal_values_tokenised_and_missing_values_kept_missing() -> None:
    answered = Answered(
        version(), 2, given=[[41, 52000.0, "75011"], [None, 1.0, "75011"]], masker=tokenising()
    )
    first, second = captured_inputs(answered)
    assert first == {"age": token(KEY, 41), "income": 52000.0, "zip": token(KEY, "75011")}
    assert second == {"age": None, "income": 1.0, "zip": first["zip"]}


def test_v2_tensor_columns_that_are_personal_features_are_masked() -> None:
    feeds = {"x": np.array([[41.0, 52000.0, 75011.0]], dtype=np.float32)}
    answered = Answered(version(), 1, protocol="v2", feeds=feeds, masker=tokenising())
    [row] = captured_inputs(answered)
    assert row == {"age": token(KEY, 41), "income": 52000.0, "zip": token(KEY, 75011)}


def test_without_personal_features_capture_writes_the_values_as_the_model_saw_them() -> None:
    plain = SIGNATURE.model_copy(
        update={"features": [f.model_copy(update={"pii": False}) for f in SIGNATURE.features or []]}
    )
    answered = Answered(version(plain), 1, given=[[41, 52000.0, "75011"]], masker=masker(plain, None, None))
    assert captured_inputs(answered) == [{"age": 41, "income": 52000.0, "zip": "75011"}]


def test_without_a_key_personal_values_are_erased_never_written_raw(caplog: pytest.LogCaptureFixture) -> None:
    def no_key() -> bytes:
        raise LookupError("no key")

    mask = masker(SIGNATURE, QualityPolicy(pii="tokenise"), no_key)
    assert mask.row({"age": 41, "income": 1.0}) == {"age": ERASED, "income": 1.0}
    assert "erased, not tokenised" in caplog.text


def test_the_policy_marks_features_personal_beside_the_signature() -> None:
    policy = QualityPolicy(pii_features=["income", "not-in-this-version"])
    assert personal_features(SIGNATURE, policy) == {"age", "income", "zip"}


def test_a_rejected_row_keeps_no_personal_value_in_its_record_id_or_reasons() -> None:
    mask = tokenising()
    rejected = {
        "row": 3,
        "zip": "75011",  # the file's id column is a personal feature
        "reasons": [
            reason("'abc' is not a number", "type_error", "age"),
            reason("-1 is outside [0, 1e6]", "quality_range", "income"),
        ],
        "type": "type_error",
        "record": {"zip": "75011", "age": "abc", "income": -1, "note": "x"},
    }
    stored = _protected(mask, ["age", "income", "zip"], rejected)
    assert stored["zip"] == token(KEY, "75011") and stored["row"] == 3
    assert stored["record"] == {
        "zip": token(KEY, "75011"),
        "age": token(KEY, "abc"),
        "income": -1,
        "note": "x",
    }
    assert [r["message"] for r in stored["reasons"]] == [WITHHELD, "-1 is outside [0, 1e6]"]
    # A line that could not be read is erased whole: which of its text is personal cannot be told
    unreadable = {"row": 4, "reasons": [reason("bad JSON", "unreadable_row")], "record": '{"age": 41,'}
    assert _protected(mask, ["age", "income", "zip"], unreadable)["record"] == ERASED


def test_pii_given_by_name_marks_the_features_and_an_unknown_name_is_refused() -> None:
    graph = SIGNATURE.model_copy(update={"features": None})
    marked = enrich(graph, SignatureEnrichment(features=["age", "income", "zip"], pii=["zip"]))
    assert [f.name for f in marked.features or [] if f.pii] == ["zip"]
    with pytest.raises(ValidationFailed) as refused:
        enrich(graph, SignatureEnrichment(features=["age", "income", "zip"], pii=["postcode"]))
    assert [(d["loc"], d["type"]) for d in refused.value.details] == [
        (["metadata", "pii", 0], "unknown_feature")
    ]
