"""Request-time checks of a version: constraints from its signature and its baseline, and the
anomaly score, compiled once per version and applied to a request's input matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass.contracts.registry import Signature
from aimass.quality.anomaly import AnomalyModel
from aimass.quality.columns import Column, columns_of, true_cells

# A baseline only knows the range its reference held; a fresh value from the same population falls
# just outside it about 2/(n+1) of the time per feature. Its bounds are widened by this share of
# the range on each side (a signature's own bounds are exact).
RANGE_MARGIN = 0.1


@dataclass(frozen=True)
class RequestChecks:
    columns: list[Column]
    # Numeric range per column (±inf where unbounded); the signature's own bounds win over the
    # baseline's, which only know what the reference held.
    low: np.ndarray
    high: np.ndarray
    domains: dict[int, frozenset[Any]]
    # Nullable columns the reference always had a value for: a missing one is unlike anything it
    # held. None when there are none (and then no value can be missing, for the anomaly score).
    always_present: np.ndarray | None
    anomaly: AnomalyModel | None
    # The columns the anomaly model reads, when not all of them in order.
    anomaly_columns: np.ndarray | None
    tabular: bool
    nullable: bool
    names: frozenset[str]

    @classmethod
    def build(
        cls, signature: Signature, constraints: dict[str, Any] | None, anomaly: dict[str, Any] | None
    ) -> RequestChecks | None:
        columns = columns_of(signature)
        if columns is None:
            return None
        learned = {f["name"]: f for f in (constraints or {}).get("features", [])}
        low = np.full(len(columns), -np.inf)
        high = np.full(len(columns), np.inf)
        domains: dict[int, frozenset[Any]] = {}
        always_present = np.zeros(len(columns), dtype=bool)
        for j, column in enumerate(columns):
            found = learned.get(column.name, {})
            always_present[j] = column.nullable and found.get("completeness", 0.0) >= 1.0
            bounds = found.get("aimass", {})
            margin = RANGE_MARGIN * (bounds["max"] - bounds["min"]) if bounds else 0.0
            low[j] = column.min if column.min is not None else bounds.get("min", -np.inf) - margin
            high[j] = column.max if column.max is not None else bounds.get("max", np.inf) + margin
            domain = column.categories or found.get("string_constraints", {}).get("domains")
            if domain:
                domains[j] = frozenset(domain)
        model = where = None
        if anomaly is not None:
            model = AnomalyModel.from_json(anomaly)
            if anomaly["columns"] != [c.name for c in columns]:
                index = {c.name: j for j, c in enumerate(columns)}
                where = np.array([index[name] for name in anomaly["columns"]])
        return cls(
            columns,
            low,
            high,
            domains,
            always_present if always_present.any() else None,
            model,
            where,
            tabular=bool(signature.features),
            names=frozenset(c.name for c in columns),
            nullable=any(c.nullable for c in columns),
        )

    def unknown_features(self, instances: list[Any]) -> list[tuple[int, str]]:
        """(instance, key) of each key that is not a feature; only objects of the wrong size are read."""
        if not self.tabular:
            return []
        width = len(self.columns)
        known = self.names
        return [
            (i, key)
            for i, instance in enumerate(instances)
            if type(instance) is dict and len(instance) != width
            for key in instance
            if key not in known
        ]

    def violations(self, matrix: np.ndarray) -> list[list[dict[str, Any]]]:
        """Per row, the values outside their column's range or domain (empty lists when all fit)."""
        found: list[list[dict[str, Any]]] = [[] for _ in range(len(matrix))]
        for i, row in self.violating(matrix).items():
            found[i] = row
        return found

    def violating(self, matrix: np.ndarray) -> dict[int, list[dict[str, Any]]]:
        """violations of the rows that have any, by row (in the order of the rows): a batch's chunk
        mostly has none, and makes no list for each of its rows."""
        found: dict[int, list[dict[str, Any]]] = {}
        if matrix.dtype != object:
            # NaN (a null in a nullable column) compares False: missing is not out of range.
            for i, j in true_cells((matrix < self.low) | (matrix > self.high)):
                found.setdefault(i, []).append(self._range_violation(j, float(matrix[i, j])))
            if self.always_present is not None:
                for i, j in true_cells(np.isnan(matrix) & self.always_present):
                    found.setdefault(i, []).append(
                        {
                            "feature": self.columns[j].name,
                            "check": "completeness",
                            "message": "missing, and every row of the baseline had a value",
                        }
                    )
        for j, domain in self.domains.items():
            for i in range(len(matrix)):
                value = matrix[i, j]
                if value is not None and value == value and value not in domain:
                    found.setdefault(i, []).append(
                        {
                            "feature": self.columns[j].name,
                            "check": "category",
                            "message": f"{value!r} is not one of the {len(domain)} known categories",
                        }
                    )
        return dict(sorted(found.items()))

    def _range_violation(self, j: int, value: float) -> dict[str, Any]:
        low, high = self.low[j], self.high[j]
        return {
            "feature": self.columns[j].name,
            "check": "range",
            "message": f"{value:g} is outside [{low:g}, {high:g}]",
        }

    def anomaly_scores(self, matrix: np.ndarray, may_be_missing: bool | None = None) -> np.ndarray | None:
        """Per row, the anomaly score (None without an anomaly model). Missing values are looked for
        only where a column is nullable, unless the caller says otherwise (a lenient batch)."""
        if self.anomaly is None:
            return None
        if self.anomaly_columns is not None:
            matrix = matrix[:, self.anomaly_columns]
        return self.anomaly.scores(
            matrix.astype(np.float64, copy=False), self.nullable if may_be_missing is None else may_be_missing
        )
