"""The request pipeline: every prediction goes decode → screen → pre-rules → run → post-rules →
annotate → observe, whatever the protocol and whatever runs the version.

A protocol is a view (`V1`, `V2`): how a request decodes into feeds, how the outputs read as its
answer, how findings, prediction ids and a fallback show in it. `quality:check` and
`rules:evaluate` are views over the same store and stages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NotRequired, Protocol, TypedDict

import numpy as np

from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import FALLBACK_ALIAS, ModelVersion, Signature
from aimass.contracts.rules import FiredRule, RulesEvaluationRequest
from aimass.errors import (
    MAX_DETAILS,
    AimassError,
    BackendError,
    Conflict,
    NotFound,
    RuleRejected,
    ValidationFailed,
    field_error,
)
from aimass.privacy import NO_MASK, Masker
from aimass.protocol import v2
from aimass.quality.checks import RequestChecks
from aimass.quality.report import quality_report
from aimass.quality.screening import Screening, screen, without_unknown
from aimass.registry import version_meant
from aimass.rules import compile_ruleset
from aimass.serving import codecs, traffic
from aimass.serving.backends import StepRun, run_with_steps
from aimass.serving.live import Key, LiveCounts, Outcome
from aimass.serving.shadow import ShadowCapture, ShadowJob, ShadowResult, Shadows, sampled
from aimass.serving.store import LoadedModel, ModelStore, VersionRef
from aimass.serving.traffic import Variant

log = logging.getLogger(__name__)

# Set while requests only prime the path (aimass.api.snapstart): the observers that hear them; see `priming`.
_priming: ContextVar[tuple[object, ...] | None] = ContextVar("aimass_priming", default=None)


@contextmanager
def priming(observers: Sequence[object] = ()) -> Iterator[None]:
    """Requests made inside are answered as any other and heard by no one but `observers`: no capture,
    no live counts, no shadow run. A SnapStart hook's synthetic request touches what a real one touches
    (the code, the store's caches, the ONNX session's buffers) and leaves nothing behind. `observers`:
    those of the pipeline's observers (of answers or of requests) that hear them all the same, for a
    caller that discards what they record (the function's metrics, whose line the hook sends nowhere).
    A context variable, not an argument: it crosses the HTTP app (its task copies the context) and no
    header or body can set it."""
    token = _priming.set(tuple(observers))
    try:
        yield
    finally:
        _priming.reset(token)


@dataclass(frozen=True)
class Answered:
    """What observers (metrics) and capture hear of each answered request. The inputs and answers
    are the request's own objects, shared and never changed: capture shapes them off the request's
    path (aimass.capture)."""

    version: ModelVersion
    instances: int
    anomalies: int = 0
    flagged: int = 0
    protocol: Literal["v1", "v2"] = "v1"
    # Which variant of the model's traffic policy answered, while a rollout is under way (else None);
    # `shadow`: a shadow version's answer, never returned (aimass.serving.shadow)
    variant: str | None = None
    # Served from the model's registry summary past its TTL: AWS could not be reached (aimass.serving.store).
    stale: bool = False
    # The inputs as the model saw them (the ONNX feeds, and V1's instances as sent, less unknown
    # features); V1: the predictions as answered; both: the graph's raw outputs (V2 answers them;
    # shadow agreement compares them).
    feeds: dict[str, Any] = field(default_factory=dict)
    given: list[Any] | None = None
    predictions: list[Any] | None = None
    outputs: dict[str, Any] | None = None
    # What capture keeps of the personal features' values (aimass.privacy); the model saw them raw.
    masker: Masker = NO_MASK

    @classmethod
    def of(cls, version: ModelVersion, instances: int, findings: Screening | None, **answer: Any) -> Answered:
        if findings is None:
            return cls(version, instances, **answer)
        return cls(version, instances, findings.anomalies, findings.flagged, **answer)


@dataclass(frozen=True)
class Served:
    """What request observers (metrics) hear of each request the pipeline took, answered or not: one
    per request, after its answer or its error, whatever version answered."""

    model: str
    protocol: Literal["v1", "v2"]
    seconds: float
    outcome: Outcome  # answered, rejected (by a rule), invalid (a 4xx), error (a 5xx or a fault)
    # The error's code (aimass.errors) when it was not answered; `internal_error` for a fault
    code: str | None = None
    # The `fallback` alias answered: the version meant could not (its backend was down or throttled)
    fell_back: bool = False


# Capture: given an answered request, the prediction ids of its instances, or None when it was not
# captured (sampled out, or too far behind). It never raises (aimass.capture.CaptureWriter).
Capture = Callable[[Answered], list[str] | None]


# The note an answer carries when another version answered (contracts.v1.Fallback): `from`, the
# version that could not, `reason`, its error code, and `message`. Its backend was down or throttled
# (the `fallback` alias answers), or its artifact is refused (artifact_integrity: the last version
# that served the request answers).
FallbackNote = TypedDict("FallbackNote", {"from": VersionRef, "reason": str, "message": str})


class V1Answer(TypedDict):
    """A V1 answer (contracts.v1.PredictResponse, which documents it)."""

    predictions: list[Any]
    model: VersionRef
    prediction_ids: NotRequired[list[str]]
    fallback: NotRequired[FallbackNote]
    variant: NotRequired[Variant]
    steps: NotRequired[list[StepDetail]]


class StepDetail(TypedDict):
    """One step of a graph version as the answer shows it with `detail=steps` (docs/composition.md):
    its name, the member version, its predictions as V1 answers them (one per instance it took), and,
    for a switch, the indexes of the instances it took."""

    step: str
    model: VersionRef
    predictions: list[Any]
    instances: NotRequired[list[int]]


# What `detail` may ask for: each step's outputs (a graph version's; a version of one model has none).
DETAIL_STEPS = "steps"


def wants_steps(detail: Any, field: list[str]) -> bool:
    """Whether a request's `detail` (at `field`: V1's query, V2's parameters) asks for a graph
    version's steps; any other detail is a 422."""
    if detail is None:
        return False
    if detail != DETAIL_STEPS:
        raise ValidationFailed(
            f"{'.'.join(field[1:])} is {detail!r}; the one detail there is is {DETAIL_STEPS!r}",
            [field_error(list(field), f"only {DETAIL_STEPS!r}", "enum")],
        )
    return True


def step_details(steps: list[StepRun], count: int) -> list[StepDetail]:
    details = []
    for run in steps:
        member = run.member
        rows = count if run.rows is None else len(run.rows)
        detail: StepDetail = {
            "step": run.name,
            "model": {"name": member.name, "version": member.version, "backend": member.backend},
            "predictions": codecs.v1_predictions(member.signature, run.outputs, rows),
        }
        if run.rows is not None:
            detail["instances"] = run.rows
        details.append(detail)
    return details


@dataclass(frozen=True)
class Decoded:
    """A request decoded against the version it goes to."""

    feeds: dict[str, np.ndarray]
    count: int
    # The instances as given (less unknown features), which rules read; None: the protocol names no
    # instances (V2 tensors: the view makes them from the feeds when the model's features name them).
    instances: list[Any] | None = None
    # Keys of the instances that are not features of the model: reported, not fed.
    unknown: list[tuple[int, str]] = field(default_factory=list)


class View(Protocol):
    """A protocol over the pipeline: how its requests decode and its answers read."""

    @property
    def count_loc(self) -> str:
        """Where the request's instances are, for the error when there are too many."""
        ...

    @property
    def protocol(self) -> Literal["v1", "v2"]: ...

    @property
    def detail(self) -> bool:
        """Whether the answer shows each step of a graph version (`detail=steps`)."""
        ...

    def stepped(self, answer: Any, steps: list[StepDetail]) -> Any:
        """The answer with each step's predictions."""
        ...

    def decode(
        self, signature: Signature, checks: RequestChecks | None, policy: QualityPolicy
    ) -> Decoded: ...

    def shape(self, signature: Signature, outputs: dict[str, Any], count: int) -> Any: ...

    def rule_inputs(self, signature: Signature, decoded: Decoded) -> list[Any] | None:
        """The instances the rules read (None: the request names none, so no rule runs)."""
        ...

    def rule_outputs(self, signature: Signature, answer: Any, count: int) -> list[Any]:
        """The predictions post rules read, one per instance, as V1 answers them."""
        ...

    def ruled(self, answer: Any, applied: list[Any]) -> Any:
        """The answer with what the rules did to each prediction (rules.apply's items)."""
        ...

    def annotate(self, answer: Any, findings: Screening) -> Any: ...

    def answered(
        self,
        record: ModelVersion,
        decoded: Decoded,
        findings: Screening | None,
        answer: Any,
        outputs: dict[str, Any],
    ) -> Answered: ...

    def encode(
        self, model: LoadedModel, answer: Any, findings: Screening | None, ids: list[str] | None
    ) -> Any: ...

    def fell_back(self, answer: Any, note: FallbackNote) -> Any: ...

    def routed(self, answer: Any, variant: Variant) -> Any:
        """The answer saying which variant of the traffic policy served it."""
        ...

    def routing_instances(self) -> list[Any] | None:
        """What a `feature:` routing key is read from (None: the view has no instances)."""
        ...


@dataclass(frozen=True)
class V1:
    """`{"instances": [...]}` → `{"predictions": [...], "model": {...}}`, one prediction per instance."""

    instances: list[Any]
    count_loc: str = "instances"
    protocol: Literal["v1", "v2"] = "v1"
    detail: bool = False

    def decode(self, signature: Signature, checks: RequestChecks | None, policy: QualityPolicy) -> Decoded:
        instances, unknown = self.instances, list[tuple[int, str]]()
        if checks is not None and policy.violations != "reject":
            instances, unknown = without_unknown(checks, instances)
        return Decoded(codecs.v1_feeds(signature, instances), len(instances), instances, unknown)

    def shape(self, signature: Signature, outputs: dict[str, Any], count: int) -> list[Any]:
        return codecs.v1_predictions(signature, outputs, count)

    def rule_inputs(self, signature: Signature, decoded: Decoded) -> list[Any] | None:
        return decoded.instances

    def rule_outputs(self, signature: Signature, answer: list[Any], count: int) -> list[Any]:
        return answer

    def ruled(self, answer: list[Any], applied: list[Any]) -> list[Any]:
        return applied

    def annotate(self, answer: list[Any], findings: Screening) -> list[Any]:
        return findings.annotate(answer)

    def answered(
        self,
        record: ModelVersion,
        decoded: Decoded,
        findings: Screening | None,
        answer: list[Any],
        outputs: dict[str, Any],
    ) -> Answered:
        return Answered.of(
            record,
            decoded.count,
            findings,
            feeds=decoded.feeds,
            given=decoded.instances,
            predictions=answer,
            outputs=outputs,
        )

    def encode(
        self, model: LoadedModel, answer: list[Any], findings: Screening | None, ids: list[str] | None
    ) -> V1Answer:
        body: V1Answer = {"predictions": answer, "model": model.ref()}
        if ids is not None:
            body["prediction_ids"] = ids
        return body

    def fell_back(self, answer: V1Answer, note: FallbackNote) -> V1Answer:
        answer["fallback"] = note
        return answer

    def stepped(self, answer: V1Answer, steps: list[StepDetail]) -> V1Answer:
        answer["steps"] = steps
        return answer

    def routed(self, answer: V1Answer, variant: Variant) -> V1Answer:
        answer["variant"] = variant
        return answer

    def routing_instances(self) -> list[Any] | None:
        return self.instances


@dataclass(frozen=True)
class V2:
    """An Open Inference Protocol request → its response: the outputs asked for, findings and
    prediction ids in `parameters`."""

    request: v2.Request
    name: str
    count_loc: str = "inputs"
    protocol: Literal["v1", "v2"] = "v2"

    def decode(self, signature: Signature, checks: RequestChecks | None, policy: QualityPolicy) -> Decoded:
        v2.check_outputs(self.request.outputs, codecs.output_names(signature))
        feeds = codecs.v2_feeds(signature, self.request.inputs)
        return Decoded(feeds, max(len(t) for t in feeds.values()))

    def shape(self, signature: Signature, outputs: dict[str, Any], count: int) -> V2Outputs:
        return V2Outputs(outputs)

    def rule_inputs(self, signature: Signature, decoded: Decoded) -> list[Any] | None:
        # Rules read features by name: a model whose one input holds named features gets its rows
        # as V1 instances; tensors without feature names give the rules nothing to read.
        if not signature.features or len(signature.inputs) != 1:
            return None
        names = [f.name for f in signature.features]
        rows = decoded.feeds[signature.inputs[0].name]
        if rows.ndim != 2 or rows.shape[1] != len(names):
            return None
        return [dict(zip(names, row, strict=True)) for row in rows.tolist()]

    def rule_outputs(self, signature: Signature, answer: V2Outputs, count: int) -> list[Any]:
        return codecs.v1_predictions(signature, answer.outputs, count)

    def ruled(self, answer: V2Outputs, applied: list[Any]) -> V2Outputs:
        return V2Outputs(answer.outputs, [_rule_results(item) for item in applied])

    def annotate(self, answer: V2Outputs, findings: Screening) -> V2Outputs:
        return answer  # findings travel in the response's parameters (encode)

    def answered(
        self,
        record: ModelVersion,
        decoded: Decoded,
        findings: Screening | None,
        answer: V2Outputs,
        outputs: dict[str, Any],
    ) -> Answered:
        return Answered.of(
            record, decoded.count, findings, protocol="v2", feeds=decoded.feeds, outputs=outputs
        )

    def encode(
        self, model: LoadedModel, answer: V2Outputs, findings: Screening | None, ids: list[str] | None
    ) -> v2.Response:
        parameters = None if findings is None else findings.parameters()
        if answer.rules is not None and any(answer.rules):
            parameters = {**(parameters or {}), "rules": answer.rules}
        if ids is not None:
            parameters = {**(parameters or {}), "prediction_ids": ids}
        return v2.response(
            self.name,
            codecs.v2_outputs(model.version.signature, answer.outputs, self.request.outputs),
            model_version=str(model.version.version),
            request_id=self.request.id,
            parameters=parameters,
        )

    def fell_back(self, answer: v2.Response, note: FallbackNote) -> v2.Response:
        answer["parameters"] = {**answer.get("parameters", {}), "fallback": note}
        return answer

    @property
    def detail(self) -> bool:
        return self.request.parameters.get("detail") == DETAIL_STEPS

    def stepped(self, answer: v2.Response, steps: list[StepDetail]) -> v2.Response:
        answer["parameters"] = {**answer.get("parameters", {}), "steps": steps}
        return answer

    def routed(self, answer: v2.Response, variant: Variant) -> v2.Response:
        answer["parameters"] = {**answer.get("parameters", {}), "variant": variant}
        return answer

    def routing_instances(self) -> list[Any] | None:
        return None  # a V2 request is routed by the header alone


@dataclass(frozen=True)
class V2Outputs:
    """A V2 answer before encoding: the model's outputs, and per instance what the rules did (None:
    the model has no rules, or they could not read the request)."""

    outputs: dict[str, Any]
    rules: list[dict[str, Any]] | None = None


def _rule_results(item: Any) -> dict[str, Any]:
    """What the rules did to one prediction, for V2's `parameters.rules`: the rules that fired,
    the flags and the fields they set; empty when none fired."""
    if not isinstance(item, dict) or not item.get("rules"):
        return {}
    results: dict[str, Any] = {"rules": item["rules"]}
    if "flags" in item:
        results["flags"] = item["flags"]
    fields = {k: v for rule in item["rules"] if rule.get("set") for k, v in rule["set"].items()}
    if fields:
        results["set"] = fields
    return results


def _labels(answered: Answered) -> list[str]:
    """The class each instance was given, for a classifier's live class distribution (V1: its
    predictions' labels; V2: the label output as the graph gives it); none for other models."""
    if answered.predictions is not None:
        return [str(p["label"]) for p in answered.predictions if isinstance(p, dict) and "label" in p]
    label_output = answered.version.signature.label_output
    if label_output is None or not answered.outputs or label_output not in answered.outputs:
        return []
    return [str(v) for v in np.asarray(answered.outputs[label_output]).reshape(-1).tolist()]


def reject_if_any(fired: list[list[FiredRule]]) -> None:
    rejected = [(i, rule) for i, rules in enumerate(fired) for rule in rules if rule.action == "reject"]
    if rejected:
        raise RuleRejected(
            "rejected by the model's rules: " + ", ".join(sorted({rule.id for _, rule in rejected})),
            [
                field_error(["instances", i], f"rule {rule.id}: {rule.reject}", "rule_rejected")
                for i, rule in rejected[:MAX_DETAILS]
            ],
        )


class RequestPipeline:
    def __init__(
        self,
        store: ModelStore,
        max_instances: int = 10_000,
        observers: Sequence[Callable[[Answered], None]] = (),
        capture: Capture | None = None,
        live: LiveCounts | None = None,
        shadow_capture: ShadowCapture | None = None,
        shadow_observers: Sequence[Callable[[ShadowResult], None]] = (),
        shadow_queue: int = 256,
        request_observers: Sequence[Callable[[Served], None]] = (),
    ) -> None:
        self.store = store
        self.max_instances = max_instances
        # Called after each answered request: metrics.
        self.observers = observers
        # Called once per request, answered or not, with its outcome and time: metrics.
        self.request_observers = request_observers
        # Records each answered request (or a sample) and names its predictions; None: no capture.
        self.capture = capture
        # Counts each version's traffic while a rollout is under way; None: nothing is counted.
        self.live = live
        # Runs the sampled share of the stable version's requests on a shadow version, off their path.
        self.shadows = Shadows(
            self._run_shadow, live, shadow_capture, shadow_observers, shadow_queue, labels=_labels
        )

    # --- views ------------------------------------------------------------------------------------

    def predict(
        self,
        name: str,
        instances: list[Any],
        version: int | None = None,
        alias: str | None = None,
        captured: bool = False,
        routing_key: str | None = None,
        detail: bool = False,
    ) -> V1Answer:
        """V1 predictions; `captured` (online traffic, not batch files) records the request with
        capture and gives the predictions ids; `routing_key`: the x-aimass-routing-key header;
        `detail`: a graph version's answer shows each step's predictions."""
        self._check_count(len(instances), "instances")
        answer: V1Answer = self.serve(
            V1(instances, detail=detail), name, version, alias, captured, routing_key
        )
        return answer

    def infer(
        self,
        name: str,
        request: v2.Request,
        version: int | None = None,
        captured: bool = False,
        routing_key: str | None = None,
    ) -> v2.Response:
        """An Open Inference Protocol V2 response; `parameters.detail: "steps"` shows a graph version's
        steps in the response's parameters."""
        wants_steps(request.parameters.get("detail"), ["body", "parameters", "detail"])
        answer: v2.Response = self.serve(V2(request, name), name, version, None, captured, routing_key)
        return answer

    def load_for_file(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> tuple[LoadedModel, Variant]:
        """The version a whole dropped file is predicted by, and why: the one it names, else the
        traffic policy's choice, drawn once for the file (never per row)."""
        chosen, variant, _ = self._choice(name, version, alias)
        return self.store.load(name, chosen, None if chosen else alias), variant

    def route(
        self, name: str, header: str | None = None, instances: list[Any] | None = None
    ) -> tuple[int, Variant]:
        """The version a request that names none gets under the model's traffic policy, and why."""
        summary = self.store.summary(name)
        stable = version_meant(summary, None)
        policy = summary.traffic
        if policy.canary is None:
            return stable, "stable"
        return traffic.choose(policy, stable, self._routing_key(name, stable, header, instances))

    def _routing_key(
        self, name: str, stable: int, header: str | None, instances: list[Any] | None
    ) -> str | None:
        policy = self.store.summary(name).traffic
        features: list[str] = []
        if policy.sticky_by is not None and policy.sticky_by.startswith("feature:"):
            features = [f.name for f in self.store.resolve(name, stable).signature.features or []]
        return traffic.key_of(policy, header, instances, features)

    def _choice(
        self,
        name: str,
        version: int | None,
        alias: str | None,
        header: str | None = None,
        instances: list[Any] | None = None,
    ) -> tuple[int | None, Variant, int | None]:
        """The version to ask the model store for, why, and the version the traffic policy routed the
        request to (None: it named its version or alias). The stable version is asked for as no
        version at all, so that the store resolves it as a request naming none (and keeps its last
        good version)."""
        if version is not None or alias is not None:
            return version, "pinned", None
        routed, variant = self.route(name, header, instances)
        return (None if variant == "stable" else routed), variant, routed

    def check_quality(self, name: str, instances: list[Any]) -> dict[str, Any]:
        """The data-quality report of a batch against the serving version's baseline."""
        self._check_count(len(instances), "instances")
        model = self.store.load(name)
        record = model.version
        checks = self.store.checks_for(record)
        if checks is None:
            raise ValidationFailed(
                f"model {name!r} has an input without columns to check (several inputs, or dynamic cells)",
                [field_error(["path", "name"], "no columns to check", "no_columns")],
            )
        statistics, constraints = self.store.statistics_for(record), self.store.constraints_for(record)
        return {"model": model.ref(), **quality_report(checks, statistics, constraints, instances)}

    def evaluate_rules(self, name: str, request: RulesEvaluationRequest) -> dict[str, Any]:
        """Which rules fire on the instances, with the rules saved or the ones given; the model runs
        (once, without rules) only when no predictions are given."""
        self._check_count(len(request.instances), "instances")
        model = self.store.load(name)
        signature = model.version.signature
        feeds = codecs.v1_feeds(signature, request.instances)
        rules = (
            compile_ruleset(request.ruleset, signature)
            if request.ruleset
            else self.store.rules_for(model.version)
        )
        if rules is None:
            raise NotFound(f"model {name!r} has no rules; send a `ruleset` to try one")
        predictions = request.predictions
        if predictions is None:
            predictions = codecs.v1_predictions(signature, model.run(feeds), len(request.instances))
        elif len(predictions) != len(request.instances):
            raise ValidationFailed(
                f"{len(predictions)} predictions for {len(request.instances)} instances",
                [field_error(["body", "predictions"], "one per instance", "length_mismatch")],
            )
        contexts = rules.contexts(request.instances, model.ref())
        fired = [
            a + b
            for a, b in zip(
                rules.evaluate("pre", contexts), rules.evaluate("post", contexts, predictions), strict=True
            )
        ]
        return {
            "results": [
                {
                    "rules": [f.model_dump(exclude_none=True) for f in matched],
                    "rejected": any(f.action == "reject" for f in matched),
                    "prediction": prediction,
                }
                for matched, prediction in zip(fired, rules.apply(predictions, fired), strict=True)
            ],
            "rules_version": None if request.ruleset else self.store.summary(name).rules_version,
            "model": model.ref(),
        }

    # --- the stages --------------------------------------------------------------------------------

    def serve(
        self,
        view: View,
        name: str,
        version: int | None,
        alias: str | None,
        captured: bool,
        routing_key: str | None = None,
    ) -> Any:
        """The view's answer from the version meant (a request naming none: the traffic policy's
        choice), or from the fallback when that version's backend could not answer."""
        started, fell_back, counted = time.perf_counter(), False, None
        try:
            # In the try: a request for a model or version that is not there is heard by the observers too
            chosen, variant, routed = self._choice(
                name, version, alias, routing_key, view.routing_instances()
            )
            counted = self._counted(name, routed)
            shadow = self._shadow_of(name, variant, routed, routing_key, view)
            if _priming.get() is not None:  # chosen as for any request (their path primed), then dropped
                counted = shadow = None
            try:
                answer = self._through(view, name, chosen, alias, captured, counted, variant, shadow)
            except BackendError as error:
                fallback, note = self._fallback(name, version, alias, error, chosen)
                fell_back = True
                answer = view.fell_back(self._through(view, name, fallback, None, captured), note)
        except RuleRejected as error:
            self._finished(view, name, counted, started, "rejected", fell_back, error.code)
            raise
        except AimassError as error:
            outcome: Outcome = "error" if error.status >= 500 else "invalid"
            self._finished(view, name, counted, started, outcome, fell_back, error.code)
            raise
        except Exception:
            self._finished(view, name, counted, started, "error", fell_back, "internal_error")
            raise
        self._finished(view, name, counted, started, "answered", fell_back)
        return view.routed(answer, variant)

    def _counted(self, name: str, routed: int | None) -> Key | None:
        """What a routed request's counts go under while the model has a rollout under way (its
        model, traffic policy version and version); None: nothing to count."""
        if self.live is None or routed is None:
            return None
        policy = self.store.summary(name).traffic
        return (name, policy.live_key, routed) if policy.under_way else None

    def _shadow_of(
        self, name: str, variant: Variant, routed: int | None, header: str | None, view: View
    ) -> Key | None:
        """The shadow run a request the stable version is to answer is sampled for: the shadow
        version's live key (model, policy's live key, shadow version); None: not sampled. Only the
        sampling is paid for on the request's path."""
        if variant != "stable" or routed is None:
            return None
        policy = self.store.summary(name).traffic
        if policy.shadow is None:
            return None
        key = None
        if policy.sticky_by is not None:
            key = self._routing_key(name, routed, header, view.routing_instances())
        if not sampled(policy.shadow, key):
            return None
        return (name, policy.live_key, policy.shadow.version)

    def _run_shadow(self, job: ShadowJob) -> Answered:
        """A shadowed request's answer from the shadow version, through the same stages as the
        request (on the shadow worker's thread): no observers, no fallback, nothing returned."""
        if job.version in self.store.summary(job.name).archived_versions:
            raise Conflict(f"{job.name} v{job.version} is archived: it runs no shadow")
        model = self.store.load(job.name, job.version)
        _, _, answered, _ = self._stages(job.view, model)
        return replace(answered, variant="shadow")

    def _finished(
        self,
        view: View,
        name: str,
        counted: Key | None,
        started: float,
        outcome: Outcome,
        fell_back: bool,
        code: str | None = None,
    ) -> None:
        heard_by = _priming.get()  # a priming request was given no live count (`counted`)
        seconds = time.perf_counter() - started
        if counted is not None and self.live is not None:
            self.live.request(counted, seconds, outcome, fell_back)
        if self.request_observers:
            served = Served(name, view.protocol, seconds, outcome, code, fell_back)
            for observer in self.request_observers:
                if heard_by is None or observer in heard_by:
                    observer(served)

    def _through(
        self,
        view: View,
        name: str,
        version: int | None,
        alias: str | None,
        captured: bool,
        counted: Key | None = None,
        variant: Variant | None = None,
        shadow: Key | None = None,
    ) -> Any:
        model = self.store.load(name, version, alias)
        record = model.version
        answer, findings, answered, steps = self._stages(view, model)
        if self.store.stale(name):
            answered = replace(answered, stale=True)
        if counted is not None and self.live is not None:
            answered = replace(answered, variant=variant)
            model_name, policy_version, _ = counted
            self.live.answered(
                (model_name, policy_version, record.version),
                answered.instances,
                answered.anomalies,
                answered.flagged,
                _labels(answered),
            )
        ids = self._observe(answered, captured)
        if shadow is not None and model.substituted is None:
            self.shadows.submit(ShadowJob(name, shadow[2], shadow, view, answered, ids))
        encoded = view.encode(model, answer, findings, ids)
        if view.detail:
            encoded = view.stepped(encoded, step_details(steps, answered.instances))
        if model.substituted is None:
            return encoded
        error = model.substituted["error"]
        note: FallbackNote = {
            "from": model.substituted["resolved"],
            "reason": error.code,
            "message": error.message,
        }
        return view.fell_back(encoded, note)

    def _stages(
        self, view: View, model: LoadedModel
    ) -> tuple[Any, Screening | None, Answered, list[StepRun]]:
        """decode → screen → pre-rules → run → post-rules → annotate: the answer before encoding,
        the findings, what observers and capture hear of it, and (`view.detail`) the steps that ran."""
        record = model.version
        name = record.name
        signature = record.signature
        checks = self.store.checks_for(record)
        policy = self.store.policy_for(name)
        decoded = view.decode(signature, checks, policy)
        self._check_count(decoded.count, view.count_loc)
        findings = (
            None
            if checks is None
            else screen(checks, policy, decoded.feeds[signature.inputs[0].name], decoded.unknown)
        )
        rules = self.store.rules_for(record)
        instances = None if rules is None else view.rule_inputs(signature, decoded)
        if rules is not None and instances is not None:
            contexts = rules.contexts(instances, model.ref())
            pre = rules.evaluate("pre", contexts)
            reject_if_any(pre)
        steps: list[StepRun] = []
        if view.detail:
            outputs, steps = run_with_steps(model.run, decoded.feeds)
        else:
            outputs = model.run(decoded.feeds)
        answer = view.shape(signature, outputs, decoded.count)
        if rules is not None and instances is not None:
            predictions = view.rule_outputs(signature, answer, decoded.count)
            post = rules.evaluate("post", contexts, predictions)
            answer = view.ruled(answer, rules.apply(predictions, pre, post))
        if findings is not None:
            answer = view.annotate(answer, findings)
        answered = view.answered(record, decoded, findings, answer, outputs)
        masker = self.store.masker_for(record)
        return answer, findings, answered if not masker.active else replace(answered, masker=masker), steps

    def _fallback(
        self, name: str, version: int | None, alias: str | None, error: BackendError, chosen: int | None
    ) -> tuple[int, FallbackNote]:
        """The version that answers instead, when the one asked for could not (its endpoint is
        throttled or down), and what the answer says of it; else the error, raised again. Only a
        request that named no version falls back, to the version of the `fallback` alias."""
        fallback = None if version is not None else self.store.summary(name).aliases.get(FALLBACK_ALIAS)
        failed = self.store.resolve(name, chosen, alias)
        if fallback is None or fallback == failed.version:
            raise error
        log.warning("%s v%s: %s; v%s answers instead", name, failed.version, error.message, fallback)
        note: FallbackNote = {
            "from": {"name": name, "version": failed.version, "backend": failed.backend},
            "reason": error.code,
            "message": error.message,
        }
        return fallback, note

    def _observe(self, answered: Answered, captured: bool) -> list[str] | None:
        """Tell the observers; with `captured`, the prediction ids capture gave the instances, if any."""
        heard_by = _priming.get()
        for observer in self.observers:
            if heard_by is None or observer in heard_by:
                observer(answered)
        if self.capture is None or not captured or heard_by is not None:
            return None
        try:
            return self.capture(answered)
        except Exception:  # capture never fails a prediction
            log.exception("capture of a %s answer failed; it has no prediction ids", answered.version.name)
            return None

    def _check_count(self, count: int, loc: str) -> None:
        if count > self.max_instances:
            raise ValidationFailed(
                f"{count} instances in one request; the limit is {self.max_instances}",
                [field_error(["body", loc], f"at most {self.max_instances}", "too_many")],
            )
