"""A model's business rules: CEL conditions checked against its signature when saved, run per instance
before the model (`pre`) and after it (`post`), and folded into each prediction item.

Pure domain code: rulesets and signatures in, fired rules and predictions out. A rule that fails at
request time (a null value, an odd instance) counts as not matched and is logged; it never breaks a
prediction. Saving is where mistakes are refused, by compiling each `when` and probing it with sample
values built from the signature.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from aimass.contracts.registry import Feature, Signature, TensorSpec
from aimass.contracts.rules import FiredRule, Rule, Ruleset
from aimass.errors import ValidationFailed, field_error

log = logging.getLogger(__name__)


def _load_cel() -> ModuleType:
    """The `cel` extension module alone. The package's __init__ also imports its command-line tool
    (typer, rich, prompt_toolkit): 0.27-0.38 s of a Lambda cold start, against ~35 ms for this
    (measured here; docs/design.md). Falls back to the plain import if the layout ever changes."""
    spec = importlib.util.find_spec("cel")
    folder = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else None
    binary = next(folder.glob("cel.*.so"), None) if folder else None
    extension = importlib.util.spec_from_file_location("cel.cel", binary) if binary else None
    if extension is None or extension.loader is None:
        import cel

        return cel
    module = importlib.util.module_from_spec(extension)
    # Registered where the package's own import looks for it: initialising the extension twice
    # panics (its logger can be set once), so a later `import cel` must find this one.
    sys.modules[extension.name] = module
    extension.loader.exec_module(module)
    return module


cel = _load_cel()

Stage = Literal["pre", "post"]
VARIABLES = ("input", "output", "model")
# The model's answer stays visible next to a rule's decision: `set` cannot overwrite these.
RESERVED_FIELDS = frozenset({"label", "probabilities", "rules", "flags"})
# A bare prediction (regression, a single raw output) is shown to rules, and answered, as {"value": v}.
BARE_KEY = "value"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# How a variable is read when only some of its keys matter: `.name` (not a method call) or ['name'].
_ACCESS = re.compile(rf"\s*(?:\.\s*({_IDENT})\b(?!\s*\()|\[\s*(?:'([^'\\\n]*)'|\"([^\"\\\n]*)\")\s*\])")
_STRING = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_SYNTAX = re.compile(r"<input>:(\d+):(\d+):\s*(?:Syntax error:\s*)?([^\n]*)")
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']*)'")
_CEL_TYPES = {bool: "bool", int: "int", float: "double", str: "string", list: "list", dict: "map"}


# --- Request time ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CompiledRule:
    index: int
    rule: Rule
    program: Any
    # What the rule does when it matches: one shared, read-only record per rule.
    fired: FiredRule


@dataclass(frozen=True)
class _StagePlan:
    rules: list[_CompiledRule]
    # Variable -> the keys its rules read (None: the whole value). Converting a value into CEL costs
    # about 2 µs per map entry, so a context carries only what the stage's rules can see.
    reads: dict[str, frozenset[str] | None]


def _project(value: Any, keys: frozenset[str] | None) -> Any:
    if keys is None or type(value) is not dict:
        return value
    return {k: value[k] for k in keys if k in value}


def output_view(prediction: Any) -> dict[str, Any]:
    """What `output` means for rules: the prediction item, or {"value": v} for a bare value."""
    return prediction if isinstance(prediction, dict) else {BARE_KEY: prediction}


class CompiledRuleset:
    """A ruleset compiled for one signature; evaluate it as often as needed.

    Per request: `contexts` once for the instances, `evaluate` for each stage (the post stage adds the
    model's answer to the same contexts), then `apply` folds what fired into the predictions."""

    def __init__(self, ruleset: Ruleset, compiled: list[_CompiledRule], signature: Signature) -> None:
        self.ruleset = ruleset
        self._first = ruleset.hit_policy == "first"
        # Features are scalars; outputs may be one level deeper (probabilities['benign']).
        flat = {
            name: variables
            for name, depth in (("input", 1), ("output", 2))
            if (variables := _flat_variables(compiled, name, depth)) is not None
        }
        try:
            compiled = [replace(c, program=cel.compile(_flattened(c.rule.when, flat))) for c in compiled]
        except Exception:  # a rewrite CEL refuses: the maps as they are, slower but the same answers
            log.exception("rules of %s kept unflattened", [c.rule.id for c in compiled])
            flat = {}
        self._flat_output = flat.get("output")
        self._stages: dict[str, _StagePlan] = {
            stage: _plan([c for c in compiled if c.rule.stage == stage]) for stage in ("pre", "post")
        }
        # The same FiredRule answers every instance a rule fires on, and so does its dump.
        self._dumps = {id(c.fired): c.fired.model_dump(exclude_none=True) for c in compiled}
        # What either stage reads of `input` and `model`: one context per instance serves both.
        self._shared: dict[str, frozenset[str] | None] = {}
        for plan in self._stages.values():
            for name in ("input", "model"):
                if name in plan.reads:
                    known = self._shared.get(name, frozenset())
                    keys = plan.reads[name]
                    self._shared[name] = None if keys is None or known is None else known | keys
        flat_input = flat.get("input")
        if flat_input is not None:
            self._shared["input"] = frozenset(path[0] for path in flat_input)
        # Instances are read straight into CEL variables: the flat ones, else the `input` map's keys.
        self._reader = _InputReader(
            signature,
            self.input_keys,
            None if flat_input is None else {path[0]: variable for path, variable in flat_input.items()},
        )
        self._input_map = flat_input is None and "input" in self._shared

    def stage_rules(self, stage: Stage) -> list[tuple[Rule, FiredRule]]:
        """The stage's rules in order, each with the FiredRule that `evaluate` reports when it fires."""
        return [(compiled.rule, compiled.fired) for compiled in self._stages[stage].rules]

    @property
    def input_keys(self) -> frozenset[str] | None:
        """The features the rules read (None: any of them); nothing else is converted into CEL."""
        return self._shared.get("input", frozenset())

    def contexts(self, instances: list[Any], model: Mapping[str, Any]) -> list[Any]:
        """Per validated instance, a CEL context with what the rules read of `input` and `model`.
        Converting values into CEL is most of a rule's cost (about 1 µs per value, 2-3 µs per map
        entry, against 0.2 µs to run a rule), so both stages share these; the post stage adds `output`."""
        keys = self._shared.get("model", frozenset())
        constant = {"model": _project(model, keys)} if "model" in self._shared else {}
        views = self._reader.read(instances)
        if self._input_map:
            return [cel.Context({**constant, "input": view}) for view in views]
        if constant:
            return [cel.Context({**constant, **view}) for view in views]
        return [cel.Context(view) for view in views]

    def evaluate(
        self, stage: Literal["pre", "post"], contexts: list[Any], outputs: list[Any] | None = None
    ) -> list[list[FiredRule]]:
        """Per instance, the rules of `stage` that matched, in rule order, honouring the hit policy
        (`first`: at most one rule per stage per instance; `all`: every match). The post stage adds
        each instance's `outputs` (the model's answer) to its context."""
        plan = self._stages[stage]
        if not plan.rules:
            return [[] for _ in contexts]
        if outputs is not None and len(outputs) != len(contexts):
            raise ValueError(f"{len(outputs)} outputs for {len(contexts)} instances")
        flat_output = self._flat_output
        output_keys = plan.reads.get("output")
        with_output = (
            stage == "post" and outputs is not None and ("output" in plan.reads or bool(flat_output))
        )
        programs = [(compiled.program, compiled.fired) for compiled in plan.rules]
        failures: dict[int, tuple[int, str]] = {}
        results: list[list[FiredRule]] = []
        for i, context in enumerate(contexts):
            if with_output:
                assert outputs is not None
                output = output_view(outputs[i])
                if flat_output is not None:
                    context.update(_flat_values(output, flat_output))
                else:
                    context.add_variable("output", _project(output, output_keys))
            # Rules have no side effects: run them all, and take the slow path (which stops at the
            # first match and records failures) only when one fails or does not give a bool.
            try:
                matched = [program.execute(context) for program, _ in programs]
            except Exception:
                matched = None
            if matched is None or any(m is not True and m is not False for m in matched):
                results.append(self._one_by_one(plan, context, failures))
                continue
            fired = [rule for (_, rule), hit in zip(programs, matched, strict=True) if hit]
            results.append(fired[:1] if self._first else fired)
        for index, (count, first_error) in failures.items():
            log.warning(
                "rule %s (stage %s) failed on %d of %d instances and counted as not matched: %s",
                self.ruleset.rules[index].id,
                stage,
                count,
                len(contexts),
                first_error[:300],
            )
        return results

    def _one_by_one(
        self, plan: _StagePlan, context: Any, failures: dict[int, tuple[int, str]]
    ) -> list[FiredRule]:
        """The stage's rules on one context in order, each failure counted as not matched."""
        fired: list[FiredRule] = []
        for compiled in plan.rules:
            try:
                matched = compiled.program.execute(context)
            except Exception as error:  # any CEL failure: not matched, never a broken prediction
                count, first_error = failures.get(compiled.index, (0, f"{type(error).__name__}: {error}"))
                failures[compiled.index] = (count + 1, first_error)
                continue
            if matched is True:
                fired.append(compiled.fired)
                if self._first:
                    break
            elif matched is not False:
                count, first_error = failures.get(compiled.index, (0, f"gave {_cel_type(matched)}"))
                failures[compiled.index] = (count + 1, first_error)
        return fired

    def apply(self, predictions: list[Any], *stages: list[list[FiredRule]]) -> list[Any]:
        """Each prediction with the rules that fired on it in `stages` (pre, then post): a dict
        prediction gets `rules` (FiredRule dumps, exclude_none) and `flags` (reasons of flag rules;
        only when non-empty) and the `set` fields merged in (later rules win); a bare value
        (regression, a raw output) becomes {"value": v, ...} only when a rule fired, else stays."""
        dumps = self._dumps
        answered: list[Any] = []
        for prediction, *fired_per_stage in zip(predictions, *stages, strict=True):
            rules = [rule for fired in fired_per_stage for rule in fired]
            bare = not isinstance(prediction, dict)
            if bare and not rules:
                answered.append(prediction)
                continue
            item: dict[str, Any] = {BARE_KEY: prediction} if bare else dict(prediction)
            flags: list[str] = []
            for rule in rules:
                if rule.set:
                    # Saving refuses these; a prediction built from rules never hides the model's answer.
                    item.update(
                        (k, v)
                        for k, v in rule.set.items()
                        if k not in RESERVED_FIELDS and not (bare and k == BARE_KEY)
                    )
                elif rule.flag is not None:
                    flags.append(rule.flag)
            # Shared, read-only: the answer is serialised, never changed.
            item["rules"] = [dumps[id(rule)] for rule in rules]
            if flags:
                item["flags"] = flags
            else:
                item.pop("flags", None)
            answered.append(item)
        return answered


def _plan(rules: list[_CompiledRule]) -> _StagePlan:
    reads: dict[str, frozenset[str] | None] = {}
    for compiled in rules:
        used = set(compiled.program.variables())
        for name in VARIABLES:
            if name not in used:
                continue
            keys = _keys_read(compiled.rule.when, name)
            known = reads.get(name, frozenset())
            reads[name] = None if keys is None or known is None else known | keys
    return _StagePlan(rules, reads)


@dataclass(frozen=True)
class _Access:
    """`name.key` at source[start:end]; `name.key.inner` (or `['inner']`) up to end_inner."""

    start: int
    end: int
    key: str
    end_inner: int | None = None
    inner: str | None = None


def _accesses(source: str, name: str) -> list[_Access] | None:
    """Each place the expression reads a key of variable `name` by name, or None when it may read any
    (the variable used whole, iterated, or indexed by a computed key)."""
    found: list[_Access] = []
    source = _without_strings(source)
    for variable in re.finditer(rf"(?<![A-Za-z0-9_.]){name}(?![A-Za-z0-9_])", source):
        access = _ACCESS.match(source, variable.end())
        if access is None:
            return None
        key = next(g for g in access.groups() if g is not None)
        inner = _ACCESS.match(source, access.end())
        found.append(
            _Access(variable.start(), access.end(), key)
            if inner is None
            else _Access(
                variable.start(),
                access.end(),
                key,
                inner.end(),
                next(g for g in inner.groups() if g is not None),
            )
        )
    return found


def _keys_read(source: str, name: str) -> frozenset[str] | None:
    """The keys of variable `name` the expression reads, or None when it may read any. Over-counting
    is harmless: a key a rule does not read only costs its conversion."""
    found = _accesses(source, name)
    return None if found is None else frozenset(access.key for access in found)


def _without_strings(source: str) -> str:
    """The expression with string literals blanked (same length, so positions still match), except
    those used as a key (`x['key']`), so that words inside strings are not mistaken for variables."""

    def blank(found: re.Match[str]) -> str:
        text = found.group(0)
        before = source[: found.start()].rstrip()
        after = source[found.end() :].lstrip()
        return (
            text
            if before.endswith("[") and after.startswith("]")
            else text[0] + " " * (len(text) - 2) + text[-1]
        )

    return _STRING.sub(blank, source)


KeyPath = tuple[str, ...]


def _flat_variables(compiled: list[_CompiledRule], name: str, depth: int) -> dict[KeyPath, str] | None:
    """Key path -> a top-level CEL variable standing for `name.key` (or, at depth 2, `name.key.inner`
    where every read of `key` goes one level down), when every rule reads `name` only by key; None
    otherwise. A flat variable costs CEL less than a map entry: about 1.2 against 3 µs."""
    paths: set[KeyPath] = set()
    for rule in compiled:
        if name not in rule.program.variables():
            continue
        # has() tests a field of a map: it needs the map itself.
        found = None if "has(" in rule.rule.when else _accesses(rule.rule.when, name)
        if found is None:
            return None
        paths.update((a.key, a.inner) if depth > 1 and a.inner is not None else (a.key,) for a in found)
    whole = {path[0] for path in paths if len(path) == 1}
    chosen = sorted({path[:1] if path[0] in whole else path for path in paths})
    return {path: f"_{name}_{i}" for i, path in enumerate(chosen)}


def _flattened(source: str, flat: dict[str, dict[KeyPath, str]]) -> str:
    """The expression with each `name.key` (or `name.key.inner`) replaced by its flat variable."""
    spans = []
    for name, variables in flat.items():
        for access in _accesses(source, name) or []:
            if access.end_inner is not None and access.inner is not None:
                deep = variables.get((access.key, access.inner))
                if deep is not None:
                    spans.append((access.start, access.end_inner, deep))
                    continue
            spans.append((access.start, access.end, variables[(access.key,)]))
    for start, end, variable in sorted(spans, reverse=True):
        source = source[:start] + variable + source[end:]
    return source


def _flat_values(value: dict[str, Any], variables: dict[KeyPath, str]) -> dict[str, Any]:
    """The flat variables' values in `value`; a path it lacks stays undeclared, as a missing map key
    fails the rule."""
    found: dict[str, Any] = {}
    for path, variable in variables.items():
        if path[0] not in value:
            continue
        inner = value[path[0]]
        if len(path) == 1:
            found[variable] = inner
        elif type(inner) is dict and path[1] in inner:
            found[variable] = inner[path[1]]
    return found


class _InputReader:
    """Reads what `input` means for rules out of validated instances: per instance a dict feature
    name -> value (tabular models: objects keyed by feature name, or plain lists in feature order),
    or input name -> value (other models); only the `keys` given, else all. With `names`, each value
    is written under the name given for its feature or input instead (a flat CEL variable). Made once
    per compiled ruleset: the lookups it needs cost more than reading a single instance."""

    def __init__(
        self, signature: Signature, keys: frozenset[str] | None, names: dict[str, str] | None = None
    ) -> None:
        self.tabular = bool(signature.features)
        features = signature.features or []
        self.first = signature.inputs[0].name if signature.inputs else "input"
        self.keys = keys
        self.names = names
        # (name, position, written as, type to convert, into): JSON's 17 in a float feature is 17.0 to
        # the model, and to rules too, as CEL's double; 3.0 in an int feature is 3.
        casts: dict[str, tuple[type, type]] = {"float": (int, float), "int": (float, int)}
        self.wanted = [
            (f.name, i, names[f.name] if names else f.name, *casts.get(f.dtype, (None, None)))
            for i, f in enumerate(features)
            if keys is None or f.name in keys
        ]

    def read(self, instances: list[Any]) -> list[dict[str, Any]]:
        if not self.tabular:
            first, names = self.first, self.names
            views = [instance if isinstance(instance, dict) else {first: instance} for instance in instances]
            if names is not None:
                return [{names[k]: v for k, v in view.items() if k in names} for view in views]
            return views if self.keys is None else [_project(view, self.keys) for view in views]
        views = []
        for instance in instances:
            view: dict[str, Any] = {}
            by_name = isinstance(instance, dict)
            for name, position, written, given, cast in self.wanted:
                if by_name:
                    if name not in instance:
                        continue
                    value = instance[name]
                else:
                    value = instance[position]
                if type(value) is given:
                    value = cast(value)
                view[written] = value
            views.append(view)
        return views


def input_views(
    signature: Signature, instances: list[Any], keys: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    """What `input` means for rules (see _InputReader); CompiledRuleset keeps its reader."""
    return _InputReader(signature, keys).read(instances)


# --- Save time ------------------------------------------------------------------------------------


def compile_ruleset(ruleset: Ruleset, signature: Signature) -> CompiledRuleset:
    """Compile and validate against the signature; raise ValidationFailed with one detail per problem,
    loc ["rules", <index>, "when"] (or ["rules", <index>, "then", "set", <field>]), message naming the rule id
    and, for syntax errors, the line:column from CEL's message."""
    samples = _Samples(signature)
    reserved = RESERVED_FIELDS | ({BARE_KEY} if samples.bare_output else set())
    compiled: list[_CompiledRule] = []
    problems: list[dict[str, Any]] = []
    for index, rule in enumerate(ruleset.rules):
        when: list[str | int] = ["rules", index, "when"]
        if rule.then.set is not None:
            problems += [
                field_error(
                    ["rules", index, "then", "set", key],
                    f"rule {rule.id}: `set` cannot overwrite {key!r}; the model's answer stays next to "
                    "the decision (choose another name, e.g. 'decision')",
                    "reserved_field",
                )
                for key in rule.then.set
                if key in reserved
            ]
        try:
            program = cel.compile(rule.when)
        except Exception as error:  # ValueError for syntax errors; anything else is as bad
            problems.append(field_error(when, _syntax_message(rule.id, str(error)), "cel_syntax"))
            continue
        if rule.stage == "pre" and "output" in program.variables():
            problems.append(
                field_error(
                    when,
                    f"rule {rule.id}: a `pre` rule runs before the model and cannot read `output`; "
                    "make it a `post` rule",
                    "output_in_pre",
                )
            )
            continue
        unknown = _unknown_fields(rule, program, samples)
        found = unknown or _probe(rule, program, samples)
        problems += [field_error(when, message, kind) for message, kind in found]
        compiled.append(
            _CompiledRule(
                index,
                rule,
                program,
                FiredRule(
                    id=rule.id,
                    stage=rule.stage,
                    action=rule.then.kind,
                    set=rule.then.set,
                    flag=rule.then.flag,
                    reject=rule.then.reject,
                ),
            )
        )
    if problems:
        ids = sorted({str(ruleset.rules[int(p["loc"][1])].id) for p in problems})
        raise ValidationFailed(
            f"the ruleset does not fit the model's signature: problems in {', '.join(ids)}", problems
        )
    return CompiledRuleset(ruleset, compiled, signature)


def _syntax_message(rule_id: str, text: str) -> str:
    found = _SYNTAX.search(text)
    if found is None:
        return f"rule {rule_id}: `when` does not compile: {text.splitlines()[0][:300] if text else 'error'}"
    line, column, reason = found.groups()
    return f"rule {rule_id}: syntax error at {line}:{column}: {reason.strip()[:300]}"


def _cel_type(value: Any) -> str:
    return "null" if value is None else _CEL_TYPES.get(type(value), type(value).__name__)


class _Samples:
    """Two sample values per variable, built from the signature as requests will bring them: the low
    end (feature min, first class, zeros) and the high end (feature max, last class, ones)."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.model = [{"name": "model", "version": 1, "backend": "lambda"}] * 2
        self.input_names: list[str]
        if signature.features:
            self.input_names = [f.name for f in signature.features]
            self.inputs = [{f.name: _feature_sample(f, high) for f in signature.features} for high in (0, 1)]
            self.input_shapes_known = True
        else:
            self.input_names = [spec.name for spec in signature.inputs]
            self.inputs = [
                {spec.name: _tensor_row(spec, high) for spec in signature.inputs} for high in (0, 1)
            ]
            self.input_shapes_known = all(d is not None for s in signature.inputs for d in s.shape[1:])
        self.outputs, self.output_keys_known, self.bare_output = _output_samples(signature)
        # The top-level keys each variable always has.
        self.keys = {"input": self.input_names, "output": list(self.outputs[0]), "model": list(self.model[0])}

    def contexts(self, stage: Stage) -> Iterable[dict[str, Any]]:
        for i in (0, 1):
            if stage == "pre":
                yield {"input": self.inputs[i], "model": self.model[i]}
                continue
            for o in (0, 1):
                yield {"input": self.inputs[i], "output": self.outputs[o], "model": self.model[i]}


def _feature_sample(feature: Feature, high: int) -> Any:
    if feature.categories:
        value: Any = feature.categories[-1 if high else 0]
    elif feature.dtype == "bool":
        return bool(high)
    elif feature.dtype == "string":
        return "x" if high else ""
    else:
        low = feature.min if feature.min is not None else 0.0
        value = (feature.max if feature.max is not None else low + 1.0) if high else low
    if feature.dtype == "float":
        return float(value)
    if feature.dtype == "int":
        return int(value)
    if feature.dtype == "string":
        return str(value)
    return value


def _scalar(dtype: str, high: int) -> Any:
    if dtype == "string":
        return "x" if high else ""
    if dtype == "bool":
        return bool(high)
    if dtype.startswith(("int", "uint")):
        return high
    return float(high)


def _filled(shape: list[int | None], value: Any) -> Any:
    if not shape:
        return value
    return [_filled(shape[1:], value) for _ in range(shape[0] or 1)]


def _tensor_row(spec: TensorSpec, high: int) -> Any:
    return _filled(spec.shape[1:], _scalar(spec.dtype, high))


def _output_samples(signature: Signature) -> tuple[list[dict[str, Any]], bool, bool]:
    """Prediction items as tensors.v1_predictions gives them, as rules see them; whether the keys of
    nested maps (probabilities) and list lengths are known; whether predictions are bare values."""
    if signature.task == "classification" and signature.label_output and signature.probabilities_output:
        return *_classifier_samples(signature, signature.label_output, signature.probabilities_output), False
    outputs = signature.outputs
    known = all(d is not None for s in outputs for d in s.shape[1:])
    if len(outputs) == 1:
        samples = []
        for high in (0, 1):
            row = _tensor_row(outputs[0], high)
            if signature.task == "regression" and isinstance(row, list) and len(row) == 1:
                row = row[0]
            samples.append({BARE_KEY: row})
        return samples, known, True
    return [{s.name: _tensor_row(s, high) for s in outputs} for high in (0, 1)], known, False


def _classifier_samples(
    signature: Signature, label_output: str, probabilities_output: str
) -> tuple[list[dict[str, Any]], bool]:
    """A classifier's two sample items (the first class with even probabilities, the last class with
    all of it), and whether the probabilities' keys (or list length) are known."""
    specs = {s.name: s for s in signature.outputs}
    labels = signature.class_labels
    probabilities = specs.get(probabilities_output)
    label_spec = specs.get(label_output)
    width = probabilities.shape[-1] if probabilities and len(probabilities.shape) == 2 else None
    zipmap = probabilities is not None and len(probabilities.shape) < 2
    # The classes the probe saw at push time (a ZipMap's keys; a tensor's column indexes).
    seen = signature.output_classes
    if width is None and seen and not zipmap:
        width = len(seen)
    label_is_text = label_spec is not None and label_spec.dtype == "string"
    classes: list[Any]
    low: Any
    high_label: Any
    if labels:
        classes = list(labels)
        low, high_label = labels[0], labels[-1]
    elif zipmap and seen:
        # A ZipMap's classes as the answers key them; its label output gives the class itself.
        classes = list(seen)
        low, high_label = (c if label_is_text else _as_int(c) for c in (seen[0], seen[-1]))
    else:
        classes = list(range(width or 2))
        low, high_label = (str(c) if label_is_text else c for c in (0, len(classes) - 1))
    n = len(classes)
    samples = []
    for high in (0, 1):
        probs = [(1.0 if j == n - 1 else 0.0) if high else 1.0 / n for j in range(n)]
        samples.append(
            {
                "label": high_label if high else low,
                "probabilities": (
                    {str(c): p for c, p in zip(classes, probs, strict=True)} if labels or zipmap else probs
                ),
            }
        )
    # A ZipMap's keys are the graph's classes: the class labels when the version has them (the
    # codecs key its rows by them), else the classes the probe saw, else classes the signature
    # does not name.
    return samples, bool(labels) or (bool(seen) if zipmap else width is not None)


def _as_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def _unknown_fields(rule: Rule, program: Any, samples: _Samples) -> list[tuple[str, str]]:
    """Keys the expression reads by name that the variable never has, whatever the values (the probe
    can miss them behind a short-circuit: `input.mean_radius > 1000.0 && input.typo > 1.0`)."""
    found = []
    used = set(program.variables())
    for name, known in samples.keys.items():
        keys = _keys_read(rule.when, name) if name in used else None
        for key in sorted((keys or set()) - set(known)):
            suggestion = _suggestion(key, name, samples)
            found.append((f"rule {rule.id}: unknown field {name}.{key}{suggestion}", "unknown_field"))
    return found


def _probe(rule: Rule, program: Any, samples: _Samples) -> list[tuple[str, str]]:
    """What goes wrong when the rule runs on the sample contexts: (message, kind), each once."""
    found: dict[str, str] = {}
    for variables in samples.contexts(rule.stage):
        try:
            result = program.execute(cel.Context(variables))
        except Exception as error:
            problem = _explain(rule, error, samples)
            if problem is not None:
                found.setdefault(*problem)
            continue
        if not isinstance(result, bool):
            found.setdefault(
                f"rule {rule.id}: `when` must give true or false, got {_cel_type(result)}", "not_a_bool"
            )
    return list(found.items())


def _explain(rule: Rule, error: Exception, samples: _Samples) -> tuple[str, str] | None:
    """A CEL error on sample values as a detail, or None when it depends on the values (division by
    zero) or on what the signature does not say (the classes of a ZipMap, a dynamic dimension)."""
    text = str(error)
    prefix = f"rule {rule.id}:"
    if isinstance(error, KeyError):
        key = str(error.args[0]) if error.args else text.strip("'\"")
        where = _where_read(rule.when, key)
        if not samples.output_keys_known and where not in (
            f"output.{key}",
            f"output['{key}']",
            f'output["{key}"]',
        ):
            return None
        return (
            f"{prefix} unknown field {where or repr(key)}{_suggestion(key, where, samples)}",
            "unknown_field",
        )
    if isinstance(error, IndexError):
        if not (samples.input_shapes_known and samples.output_keys_known):
            return None
        return f"{prefix} index out of range ({text}) for the model's signature", "unknown_field"
    undefined = _UNDEFINED.search(text)
    if undefined:
        name = undefined.group(1)
        return (
            f"{prefix} unknown name or wrong argument types for `{name}`: rules can read "
            "input, output and model",
            "unknown_name",
        )
    if isinstance(error, TypeError) or "overload" in text.lower():
        return f"{prefix} type mismatch: {text[:400]}", "type_mismatch"
    if isinstance(error, ArithmeticError):
        return None
    return f"{prefix} `when` fails on sample values: {type(error).__name__}: {text[:300]}", "cel_error"


def _where_read(source: str, key: str) -> str | None:
    """How the expression names a missing key (`input.age`, output.probabilities['x']), if it can tell."""
    escaped = re.escape(key)
    pattern = (
        rf"({_IDENT}(?:\s*\.\s*{_IDENT}|\s*\[[^\]]*\])*?)"
        rf"\s*(?:\.\s*{escaped}\b|\[\s*(['\"]?){escaped}\2\s*\])"
    )
    found = re.search(pattern, source)
    if found is None:
        return None
    return re.sub(r"\s+", "", found.group(0))


def _suggestion(key: str, where: str | None, samples: _Samples) -> str:
    if where is not None and re.match(r"output(\.probabilities|\[['\"]probabilities['\"]\])\[", where):
        return _class_suggestion(key, samples)
    if where is None or not where.startswith("input"):
        return ""
    names = samples.input_names
    kind = "features" if samples.signature.features else "inputs"
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    listed = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f"; the model's {kind} are {listed}"


def _class_suggestion(key: str, samples: _Samples) -> str:
    """For a class the probabilities map does not have: the closest one, and the classes it has."""
    probabilities = samples.outputs[0].get("probabilities")
    if not isinstance(probabilities, dict):
        return ""
    classes = list(probabilities)
    close = difflib.get_close_matches(key, classes, n=1)
    listed = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
    if close:
        return f"; did you mean {close[0]!r}? The model's classes are {listed}"
    return f"; the model's classes are {listed}"
