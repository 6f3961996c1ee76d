"""A model's rules over a batch chunk's columns at once: the CEL conditions that numpy can compute
(comparisons, arithmetic, boolean logic and the ternary over features, the model's answer and the
model's name and version) computed a column at a time; the rest per row by CEL itself.

CEL runs about 24 µs per rule and row in Python (aimass.rules); numpy does a comparison on a
2,000-row column in a few. The answers must be CEL's, row for row, so the vector form is taken only
where it cannot differ:
- a condition is vectorised only in the subset below; anything else (function calls, macros,
  `has`, `in`, lists, maps, null, escapes in strings, unsigned or huge literals, int division or
  modulo, arithmetic mixing int and double, comparing values of different kinds) is left to CEL;
- a row CEL might treat otherwise is left to CEL too: a missing (null) feature the condition reads,
  an int feature or int arithmetic past 2**53 (where float64 stops being exact);
- every row left to CEL, for any rule of a stage, has the whole stage evaluated by
  CompiledRuleset.evaluate, hit policy and failures included, exactly as the online path does.

What CEL does and numpy does alike, checked here (common-expression-language 0.10): numbers compare
across int and double; double arithmetic is IEEE's (x / 0.0 is inf); NaN compares false."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from aimass.contracts.registry import Signature
from aimass.contracts.rules import FiredRule
from aimass.rules import CompiledRuleset, Stage

# Past this, float64 no longer holds every integer: int values and int arithmetic beyond it go to CEL.
EXACT = float(2**53)

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<number>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)(?P<suffix>[A-Za-z_]\w*)?"
    r"|(?P<string>'[^'\\\n]*'|\"[^\"\\\n]*\")"
    r"|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/%?:()\[\].,{}])"
    r")"
)
_KEYWORDS = {"true": True, "false": False}
_RELATIONS = {"<", "<=", ">", ">=", "==", "!="}
_VARIABLES = ("input", "output", "model")


class Unsupported(Exception):
    """A condition (or a chunk's values) outside what numpy computes as CEL does."""


Kind = Literal["bool", "int", "double", "string"]


@dataclass(frozen=True)
class Column:
    """A value per row (or one for all: a literal, the model's name)."""

    kind: Kind
    values: Any


# --- Parsing --------------------------------------------------------------------------------------

Node = tuple[Any, ...]


def _tokens(source: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    at = 0
    source = source.rstrip()
    while at < len(source):
        match = _TOKEN.match(source, at)
        if match is None or match.end() == at:
            raise Unsupported(f"cannot read {source[at : at + 10]!r}")
        kind = match.lastgroup
        if kind == "suffix" or match.group("suffix"):
            raise Unsupported("a literal with a suffix")
        assert kind is not None
        found.append((kind, match.group(kind)))
        at = match.end()
    return found


class _Parser:
    """CEL's grammar, for the subset the module's docstring names; anything else is Unsupported."""

    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.at = 0

    def parse(self) -> Node:
        node = self.conditional()
        if self.at != len(self.tokens):
            raise Unsupported("trailing tokens")
        return node

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens) or (expected is not None and self.tokens[self.at][1] != expected):
            raise Unsupported(f"expected {expected}")
        self.at += 1
        return self.tokens[self.at - 1]

    def conditional(self) -> Node:
        node = self.binary(0)
        if self.peek() == "?":
            self.take()
            then = self.binary(0)
            self.take(":")
            return ("?", node, then, self.conditional())
        return node

    LEVELS: tuple[frozenset[str], ...] = (
        frozenset({"||"}),
        frozenset({"&&"}),
        frozenset(_RELATIONS),
        frozenset({"+", "-"}),
        frozenset({"*", "/", "%"}),
    )

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.peek() in self.LEVELS[level]:
            op = self.take()[1]
            node = (op, node, self.binary(level + 1))
        return node

    def unary(self) -> Node:
        if self.peek() in ("!", "-"):
            op = self.take()[1]
            return ("neg" if op == "-" else "!", self.unary())
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "name" or self.peek() == "(":
                    raise Unsupported("a method call")
                node = ("get", node, ("lit", name))
            else:
                index = self.conditional()
                self.take("]")
                if index[0] != "lit":
                    raise Unsupported("a computed key")
                node = ("get", node, index)
        return node

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "number":
            if any(c in text for c in ".eE"):
                return ("lit", float(text))
            return ("lit", int(text))
        if kind == "string":
            return ("lit", text[1:-1])
        if kind == "name":
            if self.peek() == "(":
                raise Unsupported("a function call")
            if text in _KEYWORDS:
                return ("lit", _KEYWORDS[text])
            if text not in _VARIABLES:
                raise Unsupported(f"the name {text}")
            return ("var", text)
        if text == "(":
            node = self.conditional()
            self.take(")")
            return node
        raise Unsupported(f"unexpected {text!r}")


# --- Evaluation -----------------------------------------------------------------------------------


@dataclass
class Frame:
    """A chunk's columns as the rules read them, and the rows left to CEL as they are found."""

    # The rows' features (float64, NaN where missing), in the order of `features` (name -> dtype).
    inputs: np.ndarray
    features: Mapping[str, str]
    model: Mapping[str, Any]
    # The model's answer by key path: ("label",), ("probabilities", "x"), ("value",).
    outputs: Mapping[tuple[Any, ...], Column] | None
    unsure: np.ndarray

    @property
    def count(self) -> int:
        return len(self.inputs)

    def resolve(self, variable: str, path: tuple[Any, ...]) -> Column:
        if variable == "input" and len(path) == 1 and path[0] in self.features:
            values = self.inputs[:, list(self.features).index(path[0])]
            self.unsure |= np.isnan(values)  # null to CEL: its errors and its equalities
            if self.features[path[0]] == "int":
                self.unsure |= np.abs(values) > EXACT
                return Column("int", values)
            return Column("double", values)
        if variable == "output" and self.outputs is not None and path in self.outputs:
            return self.outputs[path]
        if variable == "model" and len(path) == 1 and path[0] in self.model:
            return _literal(self.model[path[0]])
        raise Unsupported(f"{variable}{list(path)}")


def _literal(value: Any) -> Column:
    if isinstance(value, bool):
        return Column("bool", value)
    if isinstance(value, int):
        if abs(value) > EXACT:
            raise Unsupported("an int literal past 2**53")
        return Column("int", float(value))
    if isinstance(value, float):
        return Column("double", value)
    return Column("string", value)


def _path(node: Node) -> tuple[str, tuple[Any, ...]]:
    keys: list[Any] = []
    while node[0] == "get":
        keys.append(node[2][1])
        node = node[1]
    if node[0] != "var":
        raise Unsupported("a key of a value")
    return node[1], tuple(reversed(keys))


def _evaluate(node: Node, frame: Frame) -> Column:
    op = node[0]
    if op == "lit":
        return _literal(node[1])
    if op in ("get", "var"):
        return frame.resolve(*_path(node))
    if op == "!":
        value = _evaluate(node[1], frame)
        if value.kind != "bool":
            raise Unsupported("! of a non-bool")
        return Column("bool", np.logical_not(value.values))
    if op == "neg":
        value = _evaluate(node[1], frame)
        if value.kind not in ("int", "double"):
            raise Unsupported("- of a non-number")
        return Column(value.kind, np.negative(value.values))
    if op == "?":
        test = _evaluate(node[1], frame)
        then, otherwise = _evaluate(node[2], frame), _evaluate(node[3], frame)
        if test.kind != "bool" or then.kind != otherwise.kind:
            raise Unsupported("a ternary of mixed kinds")
        return Column(then.kind, np.where(test.values, then.values, otherwise.values))
    return _binary(op, _evaluate(node[1], frame), _evaluate(node[2], frame), frame)


def _binary(op: str, left: Column, right: Column, frame: Frame) -> Column:
    numbers = left.kind in ("int", "double") and right.kind in ("int", "double")
    if op in ("&&", "||"):
        if left.kind != "bool" or right.kind != "bool":
            raise Unsupported(f"{op} of non-bools")
        both = np.logical_and if op == "&&" else np.logical_or
        return Column("bool", both(left.values, right.values))
    if op in ("==", "!="):
        if not numbers and left.kind != right.kind:
            raise Unsupported("equality of different kinds")
        same = _equal(left.values, right.values)
        return Column("bool", same if op == "==" else np.logical_not(same))
    if op in _RELATIONS:
        if not numbers:
            raise Unsupported(f"{op} of non-numbers")
        compare = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}[op]
        return Column("bool", compare(left.values, right.values))
    if not numbers or left.kind != right.kind or op == "%" or (op == "/" and left.kind == "int"):
        raise Unsupported(f"{left.kind} {op} {right.kind}")
    arithmetic = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}[op]
    with np.errstate(all="ignore"):
        values = arithmetic(left.values, right.values)
    if left.kind == "int":  # past 2**53 float64 is not CEL's int64 (nor its overflow error)
        frame.unsure |= np.broadcast_to(np.abs(values) > EXACT, (frame.count,))
    return Column(left.kind, values)


def _equal(left: Any, right: Any) -> Any:
    if (isinstance(left, np.ndarray) and left.dtype == object) or (
        isinstance(right, np.ndarray) and (right.dtype == object)
    ):
        return np.array(np.broadcast_to(left, np.broadcast(left, right).shape) == right, dtype=bool)
    return np.equal(left, right)


# --- A ruleset over a chunk -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Vector:
    """One rule's condition in vector form, or None where CEL must run it."""

    rule: FiredRule
    node: Node | None


class ColumnRules:
    """A compiled ruleset over chunks of rows given as columns. Per stage, `fired` gives a boolean
    matrix (rows x the stage's rules, in rule order) with the hit policy applied."""

    def __init__(self, rules: CompiledRuleset, signature: Signature) -> None:
        self.rules = rules
        self.first = rules.ruleset.hit_policy == "first"
        self.features = {f.name: f.dtype for f in signature.features or []}
        self.stages: dict[str, list[_Vector]] = {}
        for stage in ("pre", "post"):
            vectors = []
            for rule, fired in rules.stage_rules(stage):
                try:
                    node: Node | None = _Parser(rule.when).parse()
                except Unsupported:
                    node = None
                vectors.append(_Vector(fired, node))
            self.stages[stage] = vectors

    def order(self, stage: Stage) -> list[FiredRule]:
        return [v.rule for v in self.stages[stage]]

    @property
    def vectorised(self) -> bool:
        """Whether every rule has a vector form (else every row of a stage with one is CEL's)."""
        return all(v.node is not None for vectors in self.stages.values() for v in vectors)

    def fired(
        self,
        stage: Stage,
        inputs: np.ndarray,
        model: Mapping[str, Any],
        outputs: Mapping[tuple[Any, ...], Column] | None,
        by_cel: Callable[[np.ndarray], list[list[FiredRule]]],
    ) -> np.ndarray:
        """Rows x the stage's rules: which fired. `inputs` are the rows' features (float64, NaN where
        missing), `outputs` the model's answer by key path (post stage); `by_cel` evaluates the
        stage the online way for the rows (indexes) given."""
        vectors = self.stages[stage]
        count = len(inputs)
        matched = np.zeros((count, len(vectors)), dtype=bool)
        if not vectors or count == 0:
            return matched
        frame = Frame(inputs, self.features, model, outputs, np.zeros(count, dtype=bool))
        cel_rows = np.zeros(count, dtype=bool)
        for j, vector in enumerate(vectors):
            try:
                if vector.node is None:
                    raise Unsupported("no vector form")
                result = _evaluate(vector.node, frame)
                if result.kind != "bool":
                    raise Unsupported("not a bool")
                matched[:, j] = np.broadcast_to(result.values, (count,))
            except Unsupported:
                cel_rows[:] = True
                break
        if self.first:
            matched &= np.cumsum(matched, axis=1) == 1
        cel_rows |= frame.unsure
        if cel_rows.any():
            self._by_cel(vectors, matched, np.flatnonzero(cel_rows), by_cel)
        return matched

    @staticmethod
    def _by_cel(
        vectors: list[_Vector],
        matched: np.ndarray,
        at: np.ndarray,
        by_cel: Callable[[np.ndarray], list[list[FiredRule]]],
    ) -> None:
        """The rows `at` as CEL fires the stage's rules on them, hit policy and failures its own."""
        matched[at] = False
        where = {id(v.rule): j for j, v in enumerate(vectors)}
        for row, fired in zip(at, by_cel(at), strict=True):
            matched[row, [where[id(rule)] for rule in fired]] = True


def output_columns(
    signature: Signature, columns: Mapping[str, list[Any] | np.ndarray]
) -> dict[tuple[Any, ...], Column]:
    """The model's answer (aimass.batch.columns' output columns) as rules read it: `output.label`,
    `output.probabilities[...]` (by class name, or by index without class labels), `output.value`."""
    found: dict[tuple[Any, ...], Column] = {}
    if "label" in columns:
        labels = columns["label"]
        kinds = set(map(type, labels))
        if kinds == {str}:
            found[("label",)] = Column("string", np.array(labels, dtype=object))
        elif kinds == {int}:
            found[("label",)] = Column("int", np.array(labels, dtype=np.float64))
        names = signature.class_labels
        prefix = "probability_"
        for key, values in columns.items():
            if key.startswith(prefix):
                name = key[len(prefix) :]
                path = ("probabilities", name if names else int(name))
                found[path] = Column("double", np.asarray(values, dtype=np.float64))
    elif "prediction" in columns:
        values = columns["prediction"]
        if set(map(type, values)) == {float}:
            found[("value",)] = Column("double", np.array(values, dtype=np.float64))
    return found
