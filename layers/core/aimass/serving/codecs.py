"""A version's signature in the protocol codecs' terms: its inputs as specs, its features, how its
outputs read as predictions. Every path that turns requests into feeds (V1, V2, S3 batch, rule dry
runs) and outputs into answers (capture too) goes through here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aimass.contracts.registry import Signature
from aimass.protocol import v1, v2
from aimass.protocol.tensors import Spec


def input_specs(signature: Signature) -> list[Spec]:
    return [Spec(s.name, s.dtype, tuple(s.shape)) for s in signature.inputs]


def v1_feeds(signature: Signature, instances: list[Any]) -> dict[str, np.ndarray]:
    """V1 instances → ONNX feeds. Objects are keyed by feature name (tabular) or by input name."""
    features = signature.features
    if features:
        names = [f.name for f in features]
        nullable = {f.name for f in features if f.nullable}
        return v1.feeds(instances, input_specs(signature), names, nullable)
    return v1.feeds(instances, input_specs(signature))


def v2_feeds(signature: Signature, tensors: Sequence[Any]) -> dict[str, np.ndarray]:
    """Open Inference Protocol input tensors → ONNX feeds, checked against the graph's inputs."""
    return v2.feeds(tensors, input_specs(signature))


def v1_predictions(signature: Signature, outputs: dict[str, Any], count: int) -> list[Any]:
    """ONNX outputs → one prediction per instance: label and class probabilities for classifiers."""
    classes = None
    if signature.task == "classification" and signature.label_output and signature.probabilities_output:
        classes = v1.Classes(signature.label_output, signature.probabilities_output, signature.class_labels)
    return v1.predictions(outputs, count, classes, scalar_rows=signature.task == "regression")


def v2_outputs(
    signature: Signature, outputs: dict[str, Any], wanted: Sequence[str] | None
) -> list[v2.OutputTensor]:
    """ONNX outputs → Open Inference Protocol output tensors; a ZipMap's rows keyed by class name."""
    labels = None
    if signature.class_labels and signature.probabilities_output:
        labels = {signature.probabilities_output: signature.class_labels}
    return v2.output_tensors(outputs, wanted, labels)


def output_names(signature: Signature) -> list[str]:
    return [o.name for o in signature.outputs]
