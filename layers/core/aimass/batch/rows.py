"""A batch file's records as a model's instances: each record becomes an instance or the reasons it
cannot be one. Text values (CSV) are parsed by the feature's dtype; typed values (JSON Lines,
Parquet) must already have it, as in an online request."""

from __future__ import annotations

import math
from typing import Any

from aimass.contracts.registry import Feature, Signature
from aimass.quality.columns import BOOLEANS, MISSING

Reason = dict[str, Any]


def reason(message: str, kind: str, field: str | None = None) -> Reason:
    """Why a row was rejected, in the shape of an API error detail less its location."""
    found: Reason = {"message": message, "type": kind}
    if field is not None:
        found["field"] = field
    return found


def value_from_text(feature: Feature, text: str) -> tuple[Any, str | None]:
    """A CSV cell as the feature's value, or the reason it is not one."""
    text = text.strip()
    if text.lower() in MISSING:
        return None, None
    if feature.dtype == "string":
        return text, None
    if feature.dtype == "bool":
        found = BOOLEANS.get(text.lower())
        return (bool(found), None) if found is not None else (None, f"not a boolean: {text!r}")
    try:
        value = float(text)
    except ValueError:
        return None, f"not a number: {text!r}"
    if not math.isfinite(value):
        return None, f"not a finite number: {text!r}"
    if feature.dtype == "int":
        if not value.is_integer():
            return None, f"not an integer: {text!r}"
        return int(value), None
    return value, None


def type_problem(feature: Feature, value: Any) -> str | None:
    """Why a typed value (JSON, Parquet) does not fit the feature, or None when it does."""
    kind = type(value)
    if feature.dtype == "string":
        return None if kind is str else f"expected a string, got {kind.__name__}"
    if feature.dtype == "bool":
        return None if kind is bool else f"expected a boolean, got {kind.__name__}"
    if kind is bool or kind not in (int, float):
        return f"expected a number, got {kind.__name__}"
    if kind is float and not math.isfinite(value):
        return "expected a finite number"
    if feature.dtype == "int" and kind is float and not value.is_integer():
        return f"expected an integer, got {value}"
    return None


class RowParser:
    """Reads one model's instances out of records (column name -> value); made once per file."""

    def __init__(self, signature: Signature, text: bool) -> None:
        if not signature.features:
            raise ValueError("batch files need a model with named features")
        self.features = signature.features
        self.text = text

    def missing_columns(self, columns: list[str]) -> list[str]:
        """Required features a file's header lacks: every row would be rejected for them."""
        given = set(columns)
        return [f.name for f in self.features if f.name not in given and not f.nullable]

    def instance(self, record: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Reason]]:
        """The record as an instance keyed by feature name (other columns left out), or the reasons
        it cannot be one: a missing or null required feature, a value of the wrong type."""
        instance: dict[str, Any] = {}
        reasons: list[Reason] = []
        for feature in self.features:
            value = record.get(feature.name)
            if value is not None and self.text:
                value, problem = value_from_text(feature, value)
            else:
                problem = None if value is None else type_problem(feature, value)
            if problem is not None:
                reasons.append(reason(problem, "type_error", feature.name))
            elif value is None and not feature.nullable:
                reasons.append(reason("required feature is missing", "missing", feature.name))
            else:
                instance[feature.name] = value
        return (None, reasons) if reasons else (instance, [])
