"""The V1 protocol (TF-Serving / KServe V1): `{"instances": [...]}` in, `{"predictions": [...]}` out.

An instance is a row of the model's single input (nested lists for an image), an object keyed by
feature name when the input is a table with named columns, or an object keyed by input name for a
model with several inputs."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass.protocol.errors import MAX_DETAILS, ValidationFailed, field_error
from aimass.protocol.tensors import Spec, Where, class_probabilities, convert_clean, json_type, to_tensor

NO_INSTANCES = 'expected {"instances": [...]}, a non-empty list'


def instances_of(payload: Any) -> list[Any]:
    """The instances of a parsed V1 body, or ValidationFailed saying what the body lacks."""
    if not isinstance(payload, dict):
        raise ValidationFailed(NO_INSTANCES, [field_error(["body"], "expected an object", "type_error")])
    where: list[str | int] = ["body", "instances"]
    if "instances" not in payload:
        raise ValidationFailed(NO_INSTANCES, [field_error(where, "field required", "missing")])
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise ValidationFailed(NO_INSTANCES, [field_error(where, "expected a list", "type_error")])
    if not instances:
        raise ValidationFailed(
            NO_INSTANCES, [field_error(where, "expected at least one instance", "too_short")]
        )
    return instances


def feeds(
    instances: list[Any],
    inputs: Sequence[Spec],
    features: Sequence[str] | None = None,
    nullable: Collection[str] = (),
) -> dict[str, np.ndarray]:
    """Instances → the model's feeds. `features` names the columns of a single 2-D input (instances
    may then be objects keyed by them, or rows in their order); a null in a `nullable` feature of a
    float input reaches the model as NaN."""
    if features:
        return {inputs[0].name: _feature_rows(instances, inputs[0], features, nullable)}
    if len(inputs) == 1 and not any(isinstance(x, dict) for x in instances):
        return {inputs[0].name: to_tensor(instances, inputs[0], lambda index: ["instances", *index])}
    names = [spec.name for spec in inputs]
    errors: list[dict[str, Any]] = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            errors.append(
                field_error(
                    ["instances", i],
                    f"expected an object keyed by input name ({', '.join(names)})",
                    "type_error",
                )
            )
            continue
        errors += [
            field_error(["instances", i, n], "required input is missing", "missing")
            for n in names
            if n not in instance
        ]
        errors += [
            field_error(["instances", i, k], "unknown input", "unknown_input")
            for k in instance
            if k not in names
        ]
        if len(errors) >= MAX_DETAILS:
            break
    if errors:
        raise ValidationFailed("instances do not match the model's inputs", errors)
    return {
        spec.name: to_tensor(
            [instance[spec.name] for instance in instances],
            spec,
            _keyed_by_input(spec.name),
        )
        for spec in inputs
    }


def _keyed_by_input(name: str) -> Where:
    """Where a value of an instance keyed by input name is: instances[i][name][...]."""
    return lambda index: ["instances", *index[:1], name, *index[1:]]


def _clean_rows(instances: list[Any], spec: Spec, names: Sequence[str]) -> np.ndarray | None:
    """The usual request in one pass: objects with exactly the features (or rows of their width) and
    clean values. None sends the caller to the checks that explain what is wrong."""
    width = len(names)
    rows: list[Any] = []
    for instance in instances:
        kind = type(instance)
        if kind is dict and len(instance) == width:
            try:
                rows.append([instance[n] for n in names])
            except KeyError:
                return None
        elif kind is list and len(instance) == width:
            rows.append(instance)
        else:
            return None
    try:
        array = np.array(rows, dtype=object)
    except ValueError:
        return None
    if array.shape != (len(rows), width):
        return None
    tensor = convert_clean(array.reshape(-1), spec.element_type())
    return None if tensor is None else tensor.reshape(array.shape)


def _feature_rows(
    instances: list[Any], spec: Spec, names: Sequence[str], nullable: Collection[str]
) -> np.ndarray:
    clean = _clean_rows(instances, spec, names)
    if clean is not None:
        return clean
    known = set(names)
    # A null in a nullable feature reaches a float model as NaN; other tensors have no missing value.
    nulls_allowed = set(nullable) if (spec.dtype or "").startswith("float") else set()
    rows: list[list[Any]] = []
    nulls: list[tuple[int, int]] = []
    errors: list[dict[str, Any]] = []
    for i, instance in enumerate(instances):
        if isinstance(instance, dict):
            missing = [
                n for n in names if n not in instance or (instance[n] is None and n not in nulls_allowed)
            ]
            errors += [
                field_error(["instances", i, n], "required feature is missing", "missing") for n in missing
            ]
            errors += [
                field_error(["instances", i, k], "unknown feature", "unknown_feature")
                for k in instance
                if k not in known
            ]
            row = [instance.get(n) for n in names]
            nulls += [(i, j) for j, value in enumerate(row) if value is None]
            rows.append([0.0 if value is None else value for value in row])
        elif isinstance(instance, list):
            if len(instance) != len(names):
                errors.append(
                    field_error(
                        ["instances", i],
                        f"expected {len(names)} values ({', '.join(names[:3])}, ...), got {len(instance)}",
                        "shape_mismatch",
                    )
                )
            rows.append(instance)
        else:
            errors.append(
                field_error(
                    ["instances", i],
                    f"expected an object keyed by feature name or a list, got {json_type(instance)}",
                    "type_error",
                )
            )
        if len(errors) >= MAX_DETAILS:
            break
    if errors:
        raise ValidationFailed("instances do not match the model's features", errors)
    tensor = to_tensor(
        rows,
        spec,
        lambda index: (
            ["instances", index[0], names[index[1]], *index[2:]] if len(index) > 1 else ["instances", *index]
        ),
    )
    for i, j in nulls:
        tensor[i, j] = np.nan
    return tensor


@dataclass(frozen=True)
class Classes:
    """How a classifier's outputs read: its label output, its probabilities output, and the class
    names that label the probability columns (None: left as a list)."""

    label_output: str
    probabilities_output: str
    labels: Sequence[str] | None = None


def _rows(value: Any) -> list[Any]:
    return value.tolist() if isinstance(value, np.ndarray) else list(value)


def predictions(
    outputs: dict[str, Any], count: int, classes: Classes | None = None, scalar_rows: bool = False
) -> list[Any]:
    """The model's outputs → one prediction per instance: `{"label", "probabilities"}` for a
    classifier, the output's row for one output (a regressor's single value when `scalar_rows`), an
    object keyed by output name for several (one prediction for the request when the outputs do not
    have a row per instance)."""
    if classes is not None:
        return _classifications(
            classes, outputs[classes.label_output], outputs[classes.probabilities_output], count
        )
    if len(outputs) == 1:
        rows = _rows(next(iter(outputs.values())))
        if scalar_rows:
            return [row[0] if isinstance(row, list) and len(row) == 1 else row for row in rows]
        return rows
    columns = {name: _rows(value) for name, value in outputs.items()}
    if any(len(column) != count for column in columns.values()):
        return [columns]
    return [{name: column[i] for name, column in columns.items()} for i in range(count)]


def _classifications(classes: Classes, labels: Any, probabilities: Any, count: int) -> list[Any]:
    names = classes.labels
    if isinstance(probabilities, np.ndarray):
        prob_rows: list[Any] = probabilities.tolist()
        if names:
            prob_rows = [dict(zip(names, row, strict=True)) for row in prob_rows]
    else:  # ZipMap: a list of {class: probability}
        prob_rows = [class_probabilities(row, names) for row in probabilities]
    answers = []
    for label, probs in zip(_rows(labels), prob_rows, strict=True):
        if names and isinstance(label, int) and 0 <= label < len(names):
            label = names[label]
        answers.append({"label": label, "probabilities": probs})
    return answers[:count]
