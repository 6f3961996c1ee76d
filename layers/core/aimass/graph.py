"""Composing versions into a graph version (docs/composition.md): members resolved, the graph checked
to be one that can run, its signature derived, its baseline shared with its input member's, and the
version recorded and audited as any version is. How it runs: aimass.serving.backends.graph."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aimass.contracts.graph import (
    ComposeRequest,
    Ensemble,
    Graph,
    GraphSpec,
    ResolvedMember,
    Sequence,
    Switch,
    given_members,
    split_member,
)
from aimass.contracts.registry import ModelVersion, Signature, TensorSpec
from aimass.contracts.rules import Rule, RuleAction, Ruleset
from aimass.errors import NotFound, ValidationFailed, field_error
from aimass.registry import Registry
from aimass.rules import CompiledRuleset, compile_ruleset

Loc = list[str | int]


def refused(loc: Loc, message: str, kind: str) -> ValidationFailed:
    return ValidationFailed(f"the graph cannot run: {message}", [field_error(loc, message, kind)])


def member_locs(spec: GraphSpec) -> list[Loc]:
    """Where each member is written in a compose request, in the spec's order (Graph.given)."""
    where: Loc = ["body", "graph"]
    if isinstance(spec, Ensemble):
        return [[*where, "members", i] for i in range(len(spec.members))]
    if isinstance(spec, Sequence):
        return [[*where, "steps", i, "model"] for i in range(len(spec.steps))]
    return [[*where, "branches", i, "model"] for i in range(len(spec.branches))] + [[*where, "default"]]


def resolve_members(registry: Registry, spec: GraphSpec) -> tuple[Graph, list[ModelVersion]]:
    """Each member's version (an alias read now, once), which must exist, not be archived and not be a
    graph itself (one level: docs/composition.md); the graph with its members resolved, and their
    records in the spec's order."""
    resolved: dict[str, ResolvedMember] = {}
    records: list[ModelVersion] = []
    for given, loc in zip(given_members(spec), member_locs(spec), strict=True):
        name, version, alias = split_member(given)
        try:
            summary = registry.get_model(name)
        except NotFound:
            raise refused(loc, f"{given}: there is no model {name!r}", "unknown_model") from None
        if version is None:
            assert alias is not None
            version = summary.aliases.get(alias)
            if version is None:
                raise refused(loc, f"{given}: model {name!r} has no alias {alias!r}", "unknown_alias")
        try:
            record = registry.get_version(name, version)
        except NotFound:
            raise refused(
                loc, f"{given}: model {name!r} has no version {version}", "unknown_version"
            ) from None
        if version in summary.archived_versions:
            raise refused(loc, f"{given}: version {version} of {name!r} is archived", "archived")
        if record.graph is not None:
            raise refused(
                loc,
                f"{given} is a graph version: a graph's members are versions that run a model (one level)",
                "nested_graph",
            )
        resolved.setdefault(given, ResolvedMember(given=given, name=name, version=version))
        records.append(record)
    graph = Graph(spec=spec, members=list(resolved.values()))
    if not isinstance(spec, Sequence):
        pinned = [f"{r.name}@{r.version}" for r in records]
        twice = sorted({p for p in pinned if pinned.count(p) > 1})
        if twice:
            raise refused(
                member_locs(spec)[pinned.index(twice[0], pinned.index(twice[0]) + 1)],
                f"{twice[0]} is a member twice; each member is another version (weights say how much "
                "each counts; one condition can say `||`)",
                "duplicate_member",
            )
    return graph, records


def _mismatch(given: TensorSpec, wanted: TensorSpec) -> str | None:
    """Why a tensor of spec `given` cannot feed an input of spec `wanted` (None: it can)."""
    if given.dtype != wanted.dtype:
        return f"{given.dtype}, not {wanted.dtype}"
    if len(given.shape) != len(wanted.shape):
        return f"shape {given.shape}, not of rank {len(wanted.shape)} like {wanted.shape}"
    for a, b in zip(given.shape, wanted.shape, strict=True):
        if a is not None and b is not None and a != b:
            return f"shape {given.shape}, not {wanted.shape}"
    return None


def _classes(signature: Signature) -> tuple[list[str] | None, list[str] | None]:
    return signature.class_labels, signature.output_classes


def _same_inputs(first: ModelVersion, other: ModelVersion, loc: Loc) -> None:
    a, b = first.signature, other.signature
    if [i.name for i in a.inputs] != [i.name for i in b.inputs]:
        raise refused(
            loc,
            f"{other.name}@{other.version} takes inputs {[i.name for i in b.inputs]}, not "
            f"{[i.name for i in a.inputs]} like {first.name}@{first.version}",
            "inputs_differ",
        )
    for x, y in zip(a.inputs, b.inputs, strict=True):
        if (reason := _mismatch(x, y)) is not None:
            raise refused(
                loc,
                f"{other.name}@{other.version}'s input {y.name!r} cannot take {x.name!r}: {reason}",
                "inputs_differ",
            )
    features_a = [f.name for f in a.features or []]
    features_b = [f.name for f in b.features or []]
    if features_a != features_b:
        raise refused(
            loc,
            f"{other.name}@{other.version}'s features are not {first.name}@{first.version}'s (the same "
            "names in the same order)",
            "features_differ",
        )


def _same_answers(first: ModelVersion, other: ModelVersion, loc: Loc, outputs: bool) -> None:
    """Same task, same classes (labels and the classes the probabilities give) and, with `outputs`,
    the same output names and types."""
    a, b = first.signature, other.signature
    label = f"{other.name}@{other.version}"
    if a.task != b.task:
        raise refused(
            loc, f"{label} is a {b.task} model, {first.name}@{first.version} a {a.task} one", "task_differs"
        )
    labels_a, probed_a = _classes(a)
    labels_b, probed_b = _classes(b)
    if labels_a != labels_b or (probed_a is not None and probed_b is not None and probed_a != probed_b):
        raise refused(
            loc,
            f"{label}'s classes ({labels_b or probed_b}) are not {first.name}@{first.version}'s "
            f"({labels_a or probed_a})",
            "classes_differ",
        )
    if outputs:
        for x in a.outputs:
            y = next((o for o in b.outputs if o.name == x.name), None)
            if y is None or _mismatch(y, x) is not None:
                raise refused(
                    loc,
                    f"{label} has no output {x.name!r} of {x.dtype}{x.shape} like "
                    f"{first.name}@{first.version}",
                    "outputs_differ",
                )


def ensemble_signature(spec: Ensemble, records: list[ModelVersion]) -> Signature:
    """The first member's signature: the members take the same inputs and give the same kind of
    answer (a classifier's label and probabilities over the same classes, or a regressor's value)."""
    first = records[0]
    locs = member_locs(spec)
    task = first.signature.task
    if task not in ("classification", "regression"):
        raise refused(
            locs[0], f"an ensemble combines classifiers or regressors; {first.name} is {task}", "task"
        )
    if task == "regression" and spec.combine == "vote":
        raise refused(
            ["body", "graph", "combine"], "`vote` combines classifiers; regressors take `mean`", "vote"
        )
    s = first.signature
    if task == "classification" and (s.label_output is None or s.probabilities_output is None):
        raise refused(locs[0], f"{first.name}@{first.version} has no label and probabilities outputs", "task")
    for record, loc in zip(records[1:], locs[1:], strict=True):
        _same_inputs(first, record, loc)
        _same_answers(first, record, loc, outputs=False)
        t = record.signature
        if task == "classification" and (t.label_output is None or t.probabilities_output is None):
            raise refused(
                loc, f"{record.name}@{record.version} has no label and probabilities outputs", "task"
            )
    kept = {s.label_output, s.probabilities_output} if task == "classification" else {s.outputs[0].name}
    return s.model_copy(update={"outputs": [o for o in s.outputs if o.name in kept]}, deep=True)


def switch_conditions(spec: Switch, signature: Signature) -> CompiledRuleset:
    """The branches' conditions as one `first`-hit ruleset of `pre` rules over the graph's inputs:
    the same CEL, checked against the signature the same way, as the model's own rules."""
    rules = [
        Rule(id=f"branch-{i}", stage="pre", when=branch.when, then=RuleAction(flag=f"branch {i}"))
        for i, branch in enumerate(spec.branches)
    ]
    try:
        return compile_ruleset(Ruleset(hit_policy="first", rules=rules), signature)
    except ValidationFailed as error:
        details = [
            {
                **d,
                "loc": ["body", "graph", "branches", d["loc"][1], "when"],
                "message": d["message"].replace(f"rule branch-{d['loc'][1]}", f"branch {d['loc'][1]}"),
            }
            for d in error.details
        ]
        raise ValidationFailed(
            "the graph cannot run: a branch's condition does not fit its inputs", details
        ) from None


def switch_signature(spec: Switch, records: list[ModelVersion]) -> Signature:
    """The first branch's signature: every branch (and the default) takes the same inputs and gives
    the same outputs; the conditions read features, so the inputs are one table of named features."""
    first = records[0]
    locs = member_locs(spec)
    s = first.signature
    if len(s.inputs) != 1 or len(s.inputs[0].shape) != 2 or not s.features:
        raise refused(
            locs[0],
            f"{first.name}@{first.version} does not take one table of named features, which the "
            "conditions read",
            "no_features",
        )
    for record, loc in zip(records[1:], locs[1:], strict=True):
        _same_inputs(first, record, loc)
        _same_answers(first, record, loc, outputs=True)
    switch_conditions(spec, s)
    return s.model_copy(deep=True)


@dataclass(frozen=True)
class Wiring:
    """A sequence step's feeds: the member's input name → ("input", graph input) or (step, output)."""

    sources: dict[str, tuple[str, str]]


def _source(
    source: str | None,
    input_name: str,
    previous: str | None,
    graph_inputs: dict[str, TensorSpec],
    outputs: dict[str, dict[str, TensorSpec]],
    loc: Loc,
) -> tuple[str, str]:
    """Where a step's input comes from: ("input", graph input) or (earlier step, its output)."""
    if source is None:  # by name: the previous step's output, else the graph's input
        if previous is not None and input_name in outputs[previous]:
            return previous, input_name
        if input_name in graph_inputs:
            return "input", input_name
        raise refused(
            loc,
            f"nothing feeds input {input_name!r}: no output of the step before nor graph input of that "
            "name; map it in `inputs`",
            "unfed_input",
        )
    if "." in source:
        source_step, _, output = source.partition(".")
        if source_step not in outputs:
            raise refused(loc, f"{source!r}: no earlier step {source_step!r}", "unknown_step")
        if output not in outputs[source_step]:
            raise refused(
                loc,
                f"{source!r}: step {source_step!r} has no output {output!r} "
                f"(it gives {sorted(outputs[source_step])})",
                "unknown_output",
            )
        return source_step, output
    if source in graph_inputs:
        return "input", source
    raise refused(
        loc,
        f"{source!r} is not a graph input ({sorted(graph_inputs)}) nor `<step>.<output>`",
        "unknown_source",
    )


def sequence_plan(spec: Sequence, records: list[ModelVersion]) -> list[Wiring]:
    """Where each step's inputs come from, checked by name, dtype and shape; the graph's inputs are
    the first step's."""
    names = [step.name or split_member(step.model)[0] for step in spec.steps]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise refused(
                ["body", "graph", "steps", i, "name"],
                f"two steps are called {name!r}: give each a `name`",
                "duplicate_step",
            )
    graph_inputs = {i.name: i for i in records[0].signature.inputs}
    outputs: dict[str, dict[str, TensorSpec]] = {}
    plan = []
    for i, (step, record, name) in enumerate(zip(spec.steps, records, names, strict=True)):
        loc: Loc = ["body", "graph", "steps", i, "inputs"]
        wanted = {t.name: t for t in record.signature.inputs}
        unknown = sorted(set(step.inputs) - set(wanted))
        if unknown:
            raise refused(
                [*loc, unknown[0]],
                f"{step.model} has no input {unknown[0]!r} (it takes {sorted(wanted)})",
                "unknown_input",
            )
        previous = names[i - 1] if i else None
        sources: dict[str, tuple[str, str]] = {}
        for input_name, spec_wanted in wanted.items():
            where: Loc = [*loc, input_name]
            found = _source(step.inputs.get(input_name), input_name, previous, graph_inputs, outputs, where)
            given = graph_inputs[found[1]] if found[0] == "input" else outputs[found[0]][found[1]]
            if (reason := _mismatch(given, spec_wanted)) is not None:
                raise refused(
                    where,
                    f"{step.model}'s input {input_name!r} cannot take {'.'.join(found)}: it is {reason}",
                    "input_mismatch",
                )
            sources[input_name] = found
        outputs[name] = {o.name: o for o in record.signature.outputs}
        plan.append(Wiring(sources))
    return plan


def sequence_signature(spec: Sequence, records: list[ModelVersion]) -> Signature:
    """The first step's inputs and features; the last step's outputs and how they read."""
    sequence_plan(spec, records)
    first, last = records[0].signature, records[-1].signature
    return last.model_copy(update={"inputs": first.inputs, "features": first.features}, deep=True)


SIGNATURES: dict[str, Callable[..., Signature]] = {
    "ensemble": ensemble_signature,
    "sequence": sequence_signature,
    "switch": switch_signature,
}


def compose_version(
    registry: Registry,
    bucket: str,
    name: str,
    request: ComposeRequest,
    actor: str,
    note: str | None = None,
) -> ModelVersion:
    """Register a graph version: its members resolved (aliases to numbers, now), the graph checked,
    its signature derived, the baseline of its input member (the first) shared, the graph stored as
    its artifact (graph.json, sha256 checked before use like a model file); audited as any version."""
    # Registering is the registry function's: the online function, which serves graphs, never imports it.
    from aimass.registration import StoredFile, check_name, record_version

    check_name(name)
    graph, records = resolve_members(registry, request.graph)
    signature = SIGNATURES[request.graph.kind](request.graph, records)
    # The graph's inputs are its first member's: that member's baseline judges them (the same files).
    baseline = records[0].baseline
    document = graph.model_dump_json(indent=1).encode()
    described: dict[str, Any] = {
        "signature": signature,
        "backend": "graph",
        "graph": graph,
        "description": request.description,
        "baseline": baseline,
        "lineage": {"graph": [f"{m.name}@{m.version}" for m in graph.members]},
        "created_by": actor,
    }
    artifact = StoredFile("graph.json", document, "application/json")
    return record_version(
        registry, bucket, name, described, artifact, ("the graph version", ["body", "graph"]), note
    )
