"""Backend kind `graph`: a version whose graph (aimass.contracts.graph) runs its members' runners in
this process, one after another, and answers in the graph's own output names (docs/composition.md).

Members run through the model store (their sessions and endpoint runners are the store's, shared
with requests for the members themselves): no HTTP hop between steps. A step that fails raises its
own error again, naming the step, with the same status (a member's 4xx stays a 4xx, an endpoint's
throttling a 429 with Retry-After); nothing of it goes downstream."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from aimass.contracts.graph import Ensemble, Sequence, Switch
from aimass.contracts.registry import ModelVersion
from aimass.errors import AimassError, BackendError, field_error
from aimass.graph import Wiring, sequence_plan, switch_conditions
from aimass.rules import CompiledRuleset
from aimass.serving.backends import Runner, StepRun


class Members(Protocol):
    """What a graph needs of the model store: its members' records and runners."""

    def resolve(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion: ...

    def run_of(self, record: ModelVersion) -> Runner:
        """The member's runner, through its own backend kind (IntegrityError while its file is refused)."""
        ...

    def runs_locally(self, name: str, version: int) -> bool:
        """Whether the member's record is held and its backend needs nothing outside this process."""
        ...


def step_failed(name: str, member: ModelVersion, error: Exception) -> AimassError:
    """The step's error, naming it: an AimassError of the same kind (its status and headers), any
    other a BackendError (502)."""
    where = f"step {name} ({member.name}@{member.version})"
    if not isinstance(error, AimassError):
        return BackendError(f"{where} failed: {type(error).__name__}: {str(error)[:300]}")
    failed = copy.copy(error)
    failed.message = f"{where} failed: {error.message}"
    failed.args = (failed.message,)
    failed.details = [field_error(["graph", "steps", name], error.message[:300], error.code), *error.details][
        : len(error.details) + 1
    ]
    return failed


def _run_step(name: str, member: ModelVersion, run: Runner, feeds: dict[str, Any]) -> dict[str, Any]:
    try:
        return run(feeds)
    except Exception as error:  # whatever the member raised is the step's, with its status
        raise step_failed(name, member, error) from error


# --- combining an ensemble's answers ---------------------------------------------------------------


def probability_rows(value: Any, keys: list[str] | None = None) -> tuple[np.ndarray, list[Any] | None]:
    """A probabilities output as an (instances x classes) matrix, and a ZipMap's keys as it gives them
    (None for a tensor). `keys` (as text): the column order to read a ZipMap in."""
    if isinstance(value, np.ndarray):
        return np.asarray(value, dtype=np.float64).reshape(len(value), -1), None
    rows = list(value)
    own = list(rows[0]) if rows else []
    by_text = [{str(k): v for k, v in row.items()} for row in rows]
    order = keys if keys is not None else [str(k) for k in own]
    return np.array([[row[k] for k in order] for row in by_text], dtype=np.float64), own


def weighted_mean(values: list[np.ndarray], weights: list[float]) -> np.ndarray:
    # A sum of a few arrays: cheaper than stacking them for tensordot at a request's sizes.
    total = float(sum(weights))
    mean = np.asarray(values[0], dtype=np.float64) * (weights[0] / total)
    for value, weight in zip(values[1:], weights[1:], strict=True):
        mean += np.asarray(value, dtype=np.float64) * (weight / total)
    return mean


def vote(labels: list[list[Any]], weights: list[float]) -> list[Any]:
    """Per instance, the label with the most weight among the members' (members in order, each a list
    of labels per instance); a tie goes to the first member among the tied."""
    winners = []
    for row in zip(*labels, strict=True):
        totals: dict[Any, float] = {}
        for label, weight in zip(row, weights, strict=True):
            totals[label] = totals.get(label, 0.0) + weight
        best = max(totals.values())
        winners.append(next(label for label in row if totals[label] == best))
    return winners


@dataclass(frozen=True)
class Classifier:
    """How one member's classifier outputs read: its label output and probabilities output."""

    label: str
    probabilities: str


def combine_classifiers(
    answers: list[dict[str, Any]], readers: list[Classifier], weights: list[float], how: str
) -> tuple[Any, Any]:
    """The members' answers combined into the first member's form: (labels, probabilities).
    `mean`: the weighted mean of the probabilities, the label the most probable class; `vote`: the
    weighted majority of the labels, the probabilities each class's share of the votes."""
    first, reader = answers[0], readers[0]
    matrix, zipkeys = probability_rows(first[reader.probabilities])
    keys = None if zipkeys is None else [str(k) for k in zipkeys]
    matrices = [matrix] + [
        probability_rows(a[r.probabilities], keys)[0] for a, r in zip(answers[1:], readers[1:], strict=True)
    ]
    labels = [_label_list(a[r.label]) for a, r in zip(answers, readers, strict=True)]
    # The label each class column stands for: a ZipMap's key; else as the members' own answers pair
    # them (their most probable column with their label: a tensor of probabilities does not name its
    # classes), a column none of them chose by its index.
    label_of: dict[int, Any] = dict(enumerate(zipkeys)) if zipkeys is not None else {}
    if zipkeys is None:
        for m, member_labels in zip(matrices, labels, strict=True):
            for column, label in zip(_clear_winners(m), member_labels, strict=True):
                if column is not None:
                    label_of.setdefault(column, label)
    if how == "vote":
        chosen = vote(labels, weights)
        column_of = {str(label): column for column, label in label_of.items()}
        shares = np.zeros_like(matrix)
        total = float(sum(weights))
        for member_labels, weight in zip(labels, weights, strict=True):
            for i, label in enumerate(member_labels):
                column = column_of.get(str(label), label if isinstance(label, int) else None)
                if column is not None and 0 <= column < shares.shape[1]:
                    shares[i, column] += weight / total
        combined = shares
    else:
        combined = weighted_mean(matrices, weights)
        chosen = [label_of.get(column, column) for column in np.argmax(combined, axis=1).tolist()]
    return _like(first[reader.label], chosen), _probabilities_like(
        first[reader.probabilities], combined, zipkeys
    )


def _clear_winners(matrix: np.ndarray) -> list[int | None]:
    """Per row, the most probable column; None where two columns tie for it (its label says nothing
    of which column it stands for)."""
    best: list[int] = np.argmax(matrix, axis=1).tolist()
    if matrix.shape[1] < 2:
        return list(best)
    top = np.partition(matrix, -2, axis=1)
    tied: list[bool] = (top[:, -1] == top[:, -2]).tolist()
    return [None if tie else column for column, tie in zip(best, tied, strict=True)]


def _label_list(value: Any) -> list[Any]:
    return np.asarray(value).reshape(-1).tolist() if isinstance(value, np.ndarray) else list(value)


def _like(template: Any, labels: list[Any]) -> Any:
    if isinstance(template, np.ndarray):
        return np.asarray(labels, dtype=template.dtype).reshape((len(labels), *template.shape[1:]))
    return labels


def _probabilities_like(template: Any, matrix: np.ndarray, zipkeys: list[Any] | None) -> Any:
    if zipkeys is None:
        return matrix.astype(np.asarray(template).dtype).reshape(
            (len(matrix), *np.asarray(template).shape[1:])
        )
    return [dict(zip(zipkeys, row, strict=True)) for row in matrix.tolist()]


# --- the runners -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    member: ModelVersion
    run: Runner


class GraphRunner:
    """Runs a graph version: `graph(feeds)` its outputs, `with_steps(feeds)` each step's too."""

    def __init__(self, record: ModelVersion, steps: list[Step], plan: Any) -> None:
        self.record = record
        self.steps = steps
        self.plan = plan

    def __call__(self, feeds: dict[str, Any]) -> dict[str, Any]:
        return self.with_steps(feeds)[0]

    def with_steps(self, feeds: dict[str, Any]) -> tuple[dict[str, Any], list[StepRun]]:
        raise NotImplementedError


class EnsembleRunner(GraphRunner):
    def with_steps(self, feeds: dict[str, Any]) -> tuple[dict[str, Any], list[StepRun]]:
        spec = self.plan
        assert isinstance(spec, Ensemble)
        answers = [_run_step(s.name, s.member, s.run, feeds) for s in self.steps]
        runs = [StepRun(s.name, s.member, a) for s, a in zip(self.steps, answers, strict=True)]
        weights = spec.weights or [1.0] * len(self.steps)
        signature = self.record.signature
        if signature.task == "regression":
            template = answers[0][self.steps[0].member.signature.outputs[0].name]
            values = [
                np.asarray(a[s.member.signature.outputs[0].name]).reshape(np.shape(template))
                for s, a in zip(self.steps, answers, strict=True)
            ]
            mean = weighted_mean(values, weights).astype(np.asarray(template).dtype)
            return {signature.outputs[0].name: mean}, runs
        readers = []
        for s in self.steps:
            sig = s.member.signature
            assert sig.label_output is not None and sig.probabilities_output is not None
            readers.append(Classifier(sig.label_output, sig.probabilities_output))
        labels, probabilities = combine_classifiers(answers, readers, weights, spec.combine)
        assert signature.label_output is not None and signature.probabilities_output is not None
        return {signature.label_output: labels, signature.probabilities_output: probabilities}, runs


class SequenceRunner(GraphRunner):
    def with_steps(self, feeds: dict[str, Any]) -> tuple[dict[str, Any], list[StepRun]]:
        wirings: list[Wiring] = self.plan
        values: dict[tuple[str, str], Any] = {("input", k): v for k, v in feeds.items()}
        runs: list[StepRun] = []
        outputs: dict[str, Any] = {}
        for step, wiring in zip(self.steps, wirings, strict=True):
            member_feeds = {name: values[source] for name, source in wiring.sources.items()}
            outputs = _run_step(step.name, step.member, step.run, member_feeds)
            values.update({(step.name, k): v for k, v in outputs.items()})
            runs.append(StepRun(step.name, step.member, outputs))
        return outputs, runs


class SwitchRunner(GraphRunner):
    def with_steps(self, feeds: dict[str, Any]) -> tuple[dict[str, Any], list[StepRun]]:
        conditions: CompiledRuleset = self.plan
        signature = self.record.signature
        assert signature.features is not None
        table = np.asarray(feeds[signature.inputs[0].name])
        names = [f.name for f in signature.features]
        instances = [dict(zip(names, row, strict=True)) for row in table.tolist()]
        fired = conditions.evaluate("pre", conditions.contexts(instances, {}))
        default = len(self.steps) - 1
        chosen = [int(f[0].id.removeprefix("branch-")) if f else default for f in fired]
        runs: list[StepRun] = []
        for index, step in enumerate(self.steps):
            rows = [i for i, c in enumerate(chosen) if c == index]
            if not rows:
                continue
            taken = np.asarray(rows)
            part = {k: np.asarray(v)[taken] for k, v in feeds.items()}
            runs.append(
                StepRun(step.name, step.member, _run_step(step.name, step.member, step.run, part), rows)
            )
        return merge_rows(runs, len(chosen)), runs


def merge_rows(runs: list[StepRun], count: int) -> dict[str, Any]:
    """Each output put together from the steps' rows, in the instances' order."""
    merged: dict[str, Any] = {}
    for name in runs[0].outputs:
        pieces = [(run.rows, run.outputs[name]) for run in runs]
        sample = pieces[0][1]
        if isinstance(sample, np.ndarray):
            out = np.empty((count, *sample.shape[1:]), dtype=sample.dtype)
            for rows, value in pieces:
                out[np.asarray(rows)] = value
            merged[name] = out
        else:
            listed: list[Any] = [None] * count
            for rows, value in pieces:
                assert rows is not None
                for i, item in zip(rows, value, strict=True):
                    listed[i] = item
            merged[name] = listed
    return merged


RUNNERS: dict[str, type[GraphRunner]] = {
    "ensemble": EnsembleRunner,
    "sequence": SequenceRunner,
    "switch": SwitchRunner,
}


@dataclass(frozen=True)
class Plan:
    """What a graph version's runner is made of, made once per container: its steps' names and
    members, and its kind's plan (a sequence's wiring, a switch's compiled conditions)."""

    names: list[str]
    members: list[ModelVersion]
    plan: Any


class GraphBackend:
    """Runs versions whose backend is `graph`, through the model store's runners of their members."""

    def __init__(self, members: Callable[[], Members]) -> None:
        # The model store, asked for at first use: it is made with this backend in its table.
        self.members = members
        self._plans: dict[tuple[str, int], Plan] = {}

    def _plan(self, record: ModelVersion) -> Plan:
        key = (record.name, record.version)
        plan = self._plans.get(key)
        if plan is None:
            graph = record.graph
            assert graph is not None
            store = self.members()
            members = [store.resolve(m.name, m.version) for m in map(graph.member, graph.given())]
            spec = graph.spec
            kind_plan: Any = spec
            if isinstance(spec, Sequence):
                kind_plan = sequence_plan(spec, members)
            elif isinstance(spec, Switch):
                kind_plan = switch_conditions(spec, record.signature)
            plan = self._plans[key] = Plan(graph.step_names(), members, kind_plan)
        return plan

    def local(self, record: ModelVersion) -> bool:
        graph = record.graph
        if graph is None or (record.name, record.version) not in self._plans:
            return False
        store = self.members()
        return all(store.runs_locally(m.name, m.version) for m in graph.members)

    def runner(self, record: ModelVersion) -> Runner:
        plan = self._plan(record)
        store = self.members()
        steps = []
        for name, member in zip(plan.names, plan.members, strict=True):
            try:
                steps.append(Step(name, member, store.run_of(member)))
            except AimassError as error:  # a member that cannot be run now (its file refused, its endpoint)
                raise step_failed(name, member, error) from error
        assert record.graph is not None
        return RUNNERS[record.graph.spec.kind](record, steps, plan.plan)
