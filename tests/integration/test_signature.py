"""Signatures read from ONNX graphs (the demo models as trained) and the enrichment an uploader may
add."""

from __future__ import annotations

from typing import Any

import pytest

from aimass.contracts.registry import Feature, SignatureEnrichment
from aimass.errors import ValidationFailed
from aimass.serving.backends.onnx import inspect
from aimass.signature import enrich, from_session


def test_a_scikit_learn_classifier_is_recognised_from_its_outputs(demos: dict[str, Any]) -> None:
    signature = from_session(inspect(demos["breast-cancer"].model))
    assert signature.task == "classification"
    assert [(i.name, i.dtype, i.shape) for i in signature.inputs] == [("input", "float32", [None, 30])]
    assert (signature.label_output, signature.probabilities_output) == ("label", "probabilities")


def test_the_image_model_takes_8x8_images(demos: dict[str, Any]) -> None:
    signature = from_session(inspect(demos["digits"].model))
    assert signature.inputs[0].shape == [None, 8, 8]


def test_bytes_that_are_not_onnx_are_a_422_naming_the_file() -> None:
    with pytest.raises(ValidationFailed) as error:
        inspect(b"not a model")
    assert error.value.details[0]["loc"] == ["body", "model"]


def test_feature_names_must_match_the_input_width(demos: dict[str, Any]) -> None:
    signature = from_session(inspect(demos["breast-cancer"].model))
    with pytest.raises(ValidationFailed, match="2 features for an input of width 30"):
        enrich(signature, SignatureEnrichment(features=["a", "b"]))


def test_feature_names_must_be_unique(demos: dict[str, Any]) -> None:
    signature = from_session(inspect(demos["breast-cancer"].model))
    with pytest.raises(ValidationFailed, match="unique"):
        enrich(signature, SignatureEnrichment(features=["f"] * 30))


def test_features_get_ranges_and_class_labels_are_counted(demos: dict[str, Any]) -> None:
    signature = from_session(inspect(demos["breast-cancer"].model))
    features: list[Feature | str] = [Feature(name=f"f{i}", min=0, max=1) for i in range(30)]
    enriched = enrich(signature, SignatureEnrichment(features=features, class_labels=["m", "b"]))
    assert enriched.features and enriched.features[0].max == 1 and enriched.class_labels == ["m", "b"]
    with pytest.raises(ValidationFailed, match="3 class labels for 2"):
        enrich(signature, SignatureEnrichment(class_labels=["a", "b", "c"]))


def test_a_feature_whose_min_is_greater_than_its_max_is_refused_naming_it(demos: dict[str, Any]) -> None:
    signature = from_session(inspect(demos["breast-cancer"].model))
    features: list[Feature | str] = [Feature(name=f"f{i}", min=0, max=1) for i in range(30)]
    features[3] = Feature(name="f3", min=2, max=1)
    features[4] = Feature(name="f4", min=1, max=1)  # one value fits: a constant column
    with pytest.raises(ValidationFailed) as error:
        enrich(signature, SignatureEnrichment(features=features))
    assert error.value.details == [
        {
            "loc": ["metadata", "features", 3, "min"],
            "message": "min 2.0 is greater than max 1.0",
            "type": "range",
        }
    ]


def test_features_only_apply_to_a_single_2d_input(demos: dict[str, Any]) -> None:
    signature = from_session(inspect(demos["digits"].model))
    with pytest.raises(ValidationFailed, match="one 2-D input"):
        enrich(signature, SignatureEnrichment(features=[f"p{i}" for i in range(64)]))
