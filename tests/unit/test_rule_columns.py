"""Rules over a chunk's columns (aimass.rule_columns) fire exactly where CEL fires them row by row:
random rulesets on random rows, missing values and huge ints included, both paths compared."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from aimass.contracts.rules import Ruleset
from aimass.errors import ValidationFailed
from aimass.rule_columns import ColumnRules, Unsupported, _Parser, output_columns
from aimass.rules import CompiledRuleset, compile_ruleset
from tests.unit.test_rules import CLASSIFIER, MODEL

NUMBERS_IN = ["input.age", "input.income", "input.children", "model.version"]
NUMBERS_OUT = ["output.probabilities['yes']", "output.probabilities.no"]
# Valid CEL with no vector form: CEL runs every row of their stage.
NO_VECTOR = [
    "input.age in [30.0, 40.0]",
    "has(input.income)",
    "size(model.name) > 3",
    "int(input.age) > 30",
    "input.income == null",
    "input.children % 2 == 0",
    "input.children / 2 > 1",
]


class Draw:
    def __init__(self, seed: int, stage: str) -> None:
        self.random = random.Random(seed)
        self.numbers = NUMBERS_IN + (NUMBERS_OUT if stage == "post" else [])
        self.stage = stage

    def number(self, depth: int) -> str:
        r = self.random
        choice = r.random()
        if depth == 0 or choice < 0.4:
            return r.choice(self.numbers)
        if choice < 0.55:
            return str(r.randint(-5, 120))
        if choice < 0.7:
            return f"{r.uniform(-5, 120):.2f}"
        if choice < 0.8:
            return f"-{self.number(depth - 1)}"
        op = r.choice(["+", "-", "*", "/"])
        return f"({self.number(depth - 1)} {op} {self.number(depth - 1)})"

    def condition(self, depth: int) -> str:
        r = self.random
        choice = r.random()
        if depth == 0 or choice < 0.35:
            return f"{self.number(depth)} {r.choice(['<', '<=', '>', '>=', '==', '!='])} {self.number(depth)}"
        if choice < 0.42 and self.stage == "post":
            return f"output.label {r.choice(['==', '!='])} '{r.choice(['yes', 'no'])}'"
        if choice < 0.46:
            return r.choice(["true", "false", "model.name == 'loans'"])
        if choice < 0.5:
            return r.choice(NO_VECTOR)
        if choice < 0.6:
            return f"!({self.condition(depth - 1)})"
        if choice < 0.7:
            return (
                f"({self.condition(depth - 1)} ? {self.condition(depth - 1)} : {self.condition(depth - 1)})"
            )
        op = r.choice(["&&", "||"])
        return f"({self.condition(depth - 1)} {op} {self.condition(depth - 1)})"


def random_rows(
    seed: int, count: int
) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, list[Any]], list[Any]]:
    """Features (float64, NaN where missing), the instances CEL reads, the model's answer as columns
    and as items."""
    draw = np.random.default_rng(seed)
    age = draw.uniform(0, 120, count).round(draw.integers(0, 3))
    income = np.where(draw.random(count) < 0.2, np.nan, draw.uniform(-10, 200, count))
    children = draw.integers(0, 13, count).astype(np.float64)
    children[draw.random(count) < 0.02] = 2.0**60  # past what float64 holds exactly
    matrix = np.column_stack([age, income, children])
    instances = [
        {"age": a, "income": None if i != i else i, "children": int(c)} for a, i, c in matrix.tolist()
    ]
    yes = draw.random(count).astype(np.float32)
    labels = ["yes" if p > 0.5 else "no" for p in yes.tolist()]
    columns = {"label": labels, "probability_no": (1 - yes).tolist(), "probability_yes": yes.tolist()}
    items = [
        {"label": label, "probabilities": {"no": no, "yes": y}}
        for label, no, y in zip(labels, columns["probability_no"], columns["probability_yes"], strict=True)
    ]
    return matrix, instances, columns, items


def random_ruleset(seed: int) -> tuple[CompiledRuleset, list[dict[str, Any]]]:
    """A random ruleset CEL accepts: drawn again (from the next seed of its own) while CEL's probe
    refuses it (mixed int and double arithmetic, ...), so that every case compares something."""
    for attempt in range(50):
        draw = random.Random(seed * 1000 + attempt)
        rules = []
        for i in range(draw.randint(1, 5)):
            stage = draw.choice(["pre", "post"])
            when = Draw((seed * 1000 + attempt) * 100 + i, stage).condition(draw.randint(0, 3))
            rules.append({"id": f"r{i}", "stage": stage, "when": when, "then": {"flag": f"f{i}"}})
        ruleset = Ruleset.model_validate({"hit_policy": draw.choice(["first", "all"]), "rules": rules})
        try:
            return compile_ruleset(ruleset, CLASSIFIER), rules
        except ValidationFailed:
            continue
    raise AssertionError(f"seed {seed}: CEL refused 50 random rulesets in a row")


@pytest.mark.parametrize("seed", range(150))
def test_rules_over_columns_fire_where_cel_fires_them_row_by_row(seed: int) -> None:
    compiled, rules = random_ruleset(seed)
    matrix, instances, columns, items = random_rows(seed, 300)
    contexts = compiled.contexts(instances, MODEL)
    by_columns = ColumnRules(compiled, CLASSIFIER)

    for stage in ("pre", "post"):
        outputs = items if stage == "post" else None
        expected = compiled.evaluate(stage, contexts, outputs)

        def by_cel(at: np.ndarray, stage: str = stage, outputs: Any = outputs) -> Any:
            picked = [contexts[i] for i in at]
            return compiled.evaluate(stage, picked, None if outputs is None else [outputs[i] for i in at])

        fired = by_columns.fired(
            stage,  # type: ignore[arg-type]
            matrix,
            MODEL,
            output_columns(CLASSIFIER, columns) if stage == "post" else None,
            by_cel,
        )
        order = by_columns.order(stage)  # type: ignore[arg-type]
        assert [[order[j].id for j in np.flatnonzero(row)] for row in fired] == [
            [rule.id for rule in found] for found in expected
        ], [r["when"] for r in rules]


@pytest.mark.parametrize(
    "when",
    [
        "input.age > 30.0 && output.label == 'yes'",
        "!(input.age <= 1e2) || input.children * 2 != 4",
        "output.probabilities['yes'] - 0.5 > 0.1 ? model.version >= 3 : false",
        "-input.age < -3.5",
    ],
)
def test_the_vector_form_reads_what_numpy_computes_alike(when: str) -> None:
    _Parser(when).parse()


@pytest.mark.parametrize("when", [*NO_VECTOR, "input.age > 1.0 || input.income - 1.0 > 3.0"])
def test_what_numpy_might_compute_otherwise_is_left_to_cel(when: str) -> None:
    # Given a rule without a vector form (or reading a feature that is missing in some rows)
    compiled = compile_ruleset(
        Ruleset.model_validate({"rules": [{"id": "r", "stage": "pre", "when": when, "then": {"flag": "f"}}]}),
        CLASSIFIER,
    )
    matrix, instances, _, _ = random_rows(0, 50)
    contexts = compiled.contexts(instances, MODEL)
    left: list[int] = []

    def by_cel(at: np.ndarray) -> Any:
        left.extend(at.tolist())
        return compiled.evaluate("pre", [contexts[i] for i in at])

    # When the chunk's rows are evaluated
    fired = ColumnRules(compiled, CLASSIFIER).fired("pre", matrix, MODEL, None, by_cel)

    # Then CEL evaluated the rows numpy could get wrong, and the answers are CEL's
    missing = {i for i, instance in enumerate(instances) if instance["income"] is None}
    assert set(left) == (missing if "income -" in when else set(range(50)))
    assert [bool(row[0]) for row in fired] == [bool(found) for found in compiled.evaluate("pre", contexts)]


@pytest.mark.parametrize(
    "when", ["input.age > 1u", "'a\\'b' == model.name", "input['a' + 'b'] > 1", "0x10 > 1"]
)
def test_literals_and_keys_numpy_might_read_otherwise_have_no_vector_form(when: str) -> None:
    with pytest.raises(Unsupported):
        _Parser(when).parse()
