"""Online predictions: resolve the version a request means, load it once, run it, shape the answer."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort

from aimass import artifacts
from aimass.contracts import (
    FALLBACK_ALIAS,
    Backend,
    FiredRule,
    InferRequest,
    InferResponse,
    ModelSummary,
    ModelVersion,
    QualityPolicy,
    RulesEvaluationRequest,
)
from aimass.errors import (
    MAX_DETAILS,
    BackendError,
    BackendUnavailable,
    IntegrityError,
    NotFound,
    RuleRejected,
    ValidationFailed,
    field_error,
)
from aimass.inference import onnx, tensors
from aimass.inference.onnx import SessionCache, new_session
from aimass.quality.checks import RequestChecks
from aimass.quality.report import quality_report
from aimass.quality.screening import Screening, screen, without_unknown
from aimass.registry import Registry, version_meant
from aimass.rules import CompiledRuleset, compile_ruleset

log = logging.getLogger(__name__)


# Runs a version's model: the ONNX feeds in, its outputs by name out.
Runner = Callable[[dict[str, Any]], dict[str, Any]]
# Runs a model on an endpoint; given the version's sha256, refuses an answer from another model file.
EndpointRunner = Callable[[dict[str, Any], str], dict[str, Any]]
# The runner of each SageMaker endpoint (aimass.inference.sagemaker.EndpointRunner).
EndpointRunners = Callable[[Backend], EndpointRunner]


@dataclass(frozen=True)
class LoadedModel:
    version: ModelVersion
    run: Runner
    # The Lambda's own ONNX Runtime session; None for a version served by an endpoint.
    session: ort.InferenceSession | None = None

    @classmethod
    def local(cls, version: ModelVersion, session: ort.InferenceSession) -> LoadedModel:
        return cls(version, lambda feeds: onnx.run(session, feeds), session)

    def ref(self) -> dict[str, Any]:
        return {"name": self.version.name, "version": self.version.version, "backend": self.version.backend}


Selector = tuple[str, int | None, str | None]


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
    # The inputs as the model saw them (the ONNX feeds, and V1's instances as sent, less unknown
    # features); V1: the predictions as answered; V2: the graph's raw outputs.
    feeds: dict[str, Any] = field(default_factory=dict)
    given: list[Any] | None = None
    predictions: list[Any] | None = None
    outputs: dict[str, Any] | None = None

    @classmethod
    def of(cls, version: ModelVersion, instances: int, findings: Screening | None, **answer: Any) -> Answered:
        if findings is None:
            return cls(version, instances, **answer)
        return cls(version, instances, findings.anomalies, findings.flagged, **answer)


# Capture: given an answered request, the prediction ids of its instances, or None when it was not
# captured (sampled out, or too far behind). It never raises (aimass.capture.CaptureWriter).
Capture = Callable[[Answered], list[str] | None]


def _reject_if_any(fired: list[list[FiredRule]]) -> None:
    rejected = [(i, rule) for i, rules in enumerate(fired) for rule in rules if rule.action == "reject"]
    if rejected:
        raise RuleRejected(
            "rejected by the model's rules: " + ", ".join(sorted({rule.id for _, rule in rejected})),
            [
                field_error(["instances", i], f"rule {rule.id}: {rule.reject}", "rule_rejected")
                for i, rule in rejected[:MAX_DETAILS]
            ],
        )


class Predictor:
    def __init__(
        self,
        registry: Registry,
        cache_dir: Path,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        registry_ttl_s: float = 5.0,
        max_instances: int = 10_000,
        observers: list[Callable[[Answered], None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        capture: Capture | None = None,
        endpoint_runners: EndpointRunners | None = None,
    ) -> None:
        self.registry = registry
        self.cache_dir = cache_dir
        self.threads = (intra_op_threads, inter_op_threads)
        self.registry_ttl_s = registry_ttl_s
        self.max_instances = max_instances
        self.clock = clock
        self.sessions = SessionCache()
        self._summaries: dict[str, tuple[ModelSummary, float]] = {}
        self._versions: dict[tuple[str, int], ModelVersion] = {}
        self._rulesets: dict[tuple[str, int, int], CompiledRuleset | None] = {}
        self._checks: dict[tuple[str, int], RequestChecks | None] = {}
        # A version's baseline files (statistics.json, constraints.json, anomaly.json) by URI.
        self._baseline_files: dict[str, dict[str, Any]] = {}
        self._last_good: dict[Selector, LoadedModel] = {}
        self._refused: set[str] = set()
        # Called after each answered request: metrics.
        self.observers = observers if observers is not None else []
        # Records each answered request (or a sample) and names its predictions; None: no capture.
        self.capture = capture
        # None: versions served by an endpoint cannot be reached from here (503).
        self.endpoint_runners = endpoint_runners
        # By the version's backend string, as written: parsed once per endpoint.
        self._endpoints: dict[str, EndpointRunner] = {}

    def _summary(self, name: str) -> ModelSummary:
        # Aliases, "latest" and the rules move: the model's summary is re-read once its TTL has passed.
        now = self.clock()
        cached = self._summaries.get(name)
        if cached is None or cached[1] <= now:
            cached = (self.registry.get_model(name), now + self.registry_ttl_s)
            self._summaries[name] = cached
        return cached[0]

    def _resolve(self, name: str, version: int | None, alias: str | None) -> ModelVersion:
        if version is None:
            version = version_meant(self._summary(name), alias)
        # A version number names an immutable record: read once per container.
        record = self._versions.get((name, version))
        if record is None:
            record = self._versions[(name, version)] = self.registry.get_version(name, version)
        return record

    def rules_for(self, record: ModelVersion) -> CompiledRuleset | None:
        """The model's current rules, compiled for this version's signature (None: no rules)."""
        rules_version = self._summary(record.name).rules_version
        if rules_version is None:
            return None
        key = (record.name, rules_version, record.version)
        if key not in self._rulesets:
            ruleset = self.registry.get_ruleset(record.name, rules_version).ruleset
            try:
                self._rulesets[key] = compile_ruleset(ruleset, record.signature)
            except ValidationFailed as error:
                # Saving rules and moving aliases check the fit; only a version asked for by number
                # (or a newer latest) can get here. It is served, without rules, rather than refused.
                log.error(
                    "rules v%s do not fit %s v%s; served without rules: %s",
                    rules_version,
                    record.name,
                    record.version,
                    error.details,
                )
                self._rulesets[key] = None
        return self._rulesets[key]

    def policy_for(self, name: str) -> QualityPolicy:
        """What the model's data-quality findings do (reject, flag, ignore), as of its registry TTL."""
        return self._summary(name).quality_policy

    def _baseline_file(self, record: ModelVersion, uri: str | None) -> dict[str, Any] | None:
        """One of the version's baseline files, read (and its sha256 checked) once per container."""
        if record.baseline is None or uri is None:
            return None
        if uri not in self._baseline_files:
            data = artifacts.verified(uri, record.baseline.sha256[uri.rsplit("/", 1)[1]])
            self._baseline_files[uri] = json.loads(data)
        return self._baseline_files[uri]

    def constraints_for(self, record: ModelVersion) -> dict[str, Any] | None:
        return self._baseline_file(record, record.baseline and record.baseline.constraints_uri)

    def statistics_for(self, record: ModelVersion) -> dict[str, Any] | None:
        return self._baseline_file(record, record.baseline and record.baseline.statistics_uri)

    def checks_for(self, record: ModelVersion) -> RequestChecks | None:
        """The version's request-time checks: its signature's constraints, and its baseline's."""
        key = (record.name, record.version)
        if key not in self._checks:
            anomaly = self._baseline_file(record, record.baseline and record.baseline.anomaly_uri)
            self._checks[key] = RequestChecks.build(record.signature, self.constraints_for(record), anomaly)
        return self._checks[key]

    def forget(self, name: str) -> None:
        """Drop what is known of a model's aliases and latest version; the next request re-reads it."""
        self._summaries.pop(name, None)

    def load(self, name: str, version: int | None = None, alias: str | None = None) -> LoadedModel:
        selector = (name, version, alias)
        record = self._resolve(name, version, alias)
        # A string comparison on every request: parsing the backend is for endpoint versions only.
        if record.backend != "lambda":
            # The endpoint holds the model: nothing is downloaded here; each answer names the model
            # file it came from, and one that is not this version's is refused.
            endpoint = self._endpoint(record)
            return LoadedModel(record, lambda feeds: endpoint(feeds, record.sha256))
        session = self.sessions.get(record.sha256)
        if session is None:
            try:
                if record.sha256 in self._refused:
                    raise IntegrityError(
                        f"version {record.version} of {name!r} failed its sha256 check; it is refused"
                    )
                path = artifacts.cached_path(record.artifact_uri, record.sha256, self.cache_dir)
                session = new_session(path, *self.threads)
            except IntegrityError:
                self._refused.add(record.sha256)
                previous = self._last_good.get(selector)
                if version is not None or previous is None:
                    raise
                log.error(
                    "refusing %s v%s (sha256 mismatch); v%s keeps serving",
                    name,
                    record.version,
                    previous.version.version,
                )
                return previous
            self.sessions.put(record.sha256, session)
        loaded = LoadedModel.local(record, session)
        self._last_good[selector] = loaded
        return loaded

    def _endpoint(self, record: ModelVersion) -> EndpointRunner:
        runner = self._endpoints.get(record.backend)
        if runner is None:
            backend = record.runs_on
            if self.endpoint_runners is None:
                raise BackendUnavailable(
                    f"endpoint {backend.endpoint} cannot be reached from here (no SageMaker runtime)",
                    headers={"Retry-After": "60"},
                )
            runner = self._endpoints[record.backend] = self.endpoint_runners(backend)
        return runner

    def _fallback(
        self, name: str, version: int | None, alias: str | None, error: BackendError
    ) -> tuple[int, dict[str, Any]]:
        """The version that answers instead, when the one asked for could not (its endpoint is
        throttled or down), and what the answer says of it; else the error, raised again. Only a
        request that named no version falls back, to the version of the `fallback` alias."""
        fallback = None if version is not None else self._summary(name).aliases.get(FALLBACK_ALIAS)
        failed = self._resolve(name, version, alias)
        if fallback is None or fallback == failed.version:
            raise error
        log.warning("%s v%s: %s; v%s answers instead", name, failed.version, error.message, fallback)
        note = {
            "from": {"name": name, "version": failed.version, "backend": failed.backend},
            "reason": error.code,
            "message": error.message,
        }
        return fallback, note

    def _observe(self, answered: Answered, captured: bool) -> list[str] | None:
        """Tell the observers; with `captured`, the prediction ids capture gave the instances, if any."""
        for observer in self.observers:
            observer(answered)
        if self.capture is None or not captured:
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

    @staticmethod
    def _answer(model: LoadedModel, feeds: dict[str, Any], count: int) -> list[Any]:
        """The model's own V1 predictions, one per instance, before any rule."""
        return tensors.v1_predictions(model.version.signature, model.run(feeds), count)

    def predict(
        self,
        name: str,
        instances: list[Any],
        version: int | None = None,
        alias: str | None = None,
        captured: bool = False,
    ) -> dict[str, Any]:
        """V1 predictions; `captured` (online traffic, not batch files) records the request with
        capture and gives the predictions ids."""
        try:
            return self._predict(name, instances, version, alias, captured)
        except BackendError as error:
            fallback, note = self._fallback(name, version, alias, error)
            return {**self._predict(name, instances, fallback, None, captured), "fallback": note}

    def _predict(
        self, name: str, instances: list[Any], version: int | None, alias: str | None, captured: bool
    ) -> dict[str, Any]:
        self._check_count(len(instances), "instances")
        model = self.load(name, version, alias)
        signature = model.version.signature
        checks = self.checks_for(model.version)
        policy = self.policy_for(name)
        unknown: list[tuple[int, str]] = []
        if checks is not None and policy.violations != "reject":
            instances, unknown = without_unknown(checks, instances)
        feeds = tensors.v1_feeds(signature, instances)
        findings = (
            None if checks is None else screen(checks, policy, feeds[signature.inputs[0].name], unknown)
        )
        rules = self.rules_for(model.version)
        if rules is None:
            predictions = self._answer(model, feeds, len(instances))
        else:
            contexts = rules.contexts(instances, model.ref())
            pre = rules.evaluate("pre", contexts)
            _reject_if_any(pre)
            predictions = self._answer(model, feeds, len(instances))
            predictions = rules.apply(predictions, pre, rules.evaluate("post", contexts, predictions))
        if findings is not None:
            predictions = findings.annotate(predictions)
        ids = self._observe(
            Answered.of(
                model.version, len(instances), findings, feeds=feeds, given=instances, predictions=predictions
            ),
            captured,
        )
        answer: dict[str, Any] = {"predictions": predictions, "model": model.ref()}
        if ids is not None:
            answer["prediction_ids"] = ids
        return answer

    def check_quality(self, name: str, instances: list[Any]) -> dict[str, Any]:
        """The data-quality report of a batch against the serving version's baseline."""
        self._check_count(len(instances), "instances")
        model = self.load(name)
        checks = self.checks_for(model.version)
        if checks is None:
            raise ValidationFailed(
                f"model {name!r} has an input without columns to check (several inputs, or dynamic cells)",
                [field_error(["path", "name"], "no columns to check", "no_columns")],
            )
        record = model.version
        report = quality_report(checks, self.statistics_for(record), self.constraints_for(record), instances)
        return {"model": model.ref(), **report}

    def evaluate_rules(self, name: str, request: RulesEvaluationRequest) -> dict[str, Any]:
        """Which rules fire on the instances, with the rules saved or the ones given; the model runs
        (once, without rules) only when no predictions are given."""
        self._check_count(len(request.instances), "instances")
        model = self.load(name)
        signature = model.version.signature
        feeds = tensors.v1_feeds(signature, request.instances)
        rules = (
            compile_ruleset(request.ruleset, signature) if request.ruleset else self.rules_for(model.version)
        )
        if rules is None:
            raise NotFound(f"model {name!r} has no rules; send a `ruleset` to try one")
        predictions = request.predictions
        if predictions is None:
            predictions = self._answer(model, feeds, len(request.instances))
        elif len(predictions) != len(request.instances):
            raise ValidationFailed(
                f"{len(predictions)} predictions for {len(request.instances)} instances",
                [field_error(["body", "predictions"], "one per instance", "length_mismatch")],
            )
        contexts = rules.contexts(request.instances, model.ref())
        pre = rules.evaluate("pre", contexts)
        post = rules.evaluate("post", contexts, predictions)
        fired = [a + b for a, b in zip(pre, post, strict=True)]
        return {
            "results": [
                {
                    "rules": [f.model_dump(exclude_none=True) for f in matched],
                    "rejected": any(f.action == "reject" for f in matched),
                    "prediction": prediction,
                }
                for matched, prediction in zip(fired, rules.apply(predictions, fired), strict=True)
            ],
            "rules_version": None if request.ruleset else self._summary(name).rules_version,
            "model": model.ref(),
        }

    def infer(
        self, name: str, request: InferRequest, version: int | None = None, captured: bool = False
    ) -> InferResponse:
        try:
            return self._infer(name, request, version, captured)
        except BackendError as error:
            fallback, note = self._fallback(name, version, None, error)
            answer = self._infer(name, request, fallback, captured)
            answer.parameters = {**(answer.parameters or {}), "fallback": note}
            return answer

    def _infer(self, name: str, request: InferRequest, version: int | None, captured: bool) -> InferResponse:
        model = self.load(name, version)
        signature = model.version.signature
        feeds = tensors.v2_feeds(signature, request.inputs)
        count = max(len(t) for t in feeds.values())
        self._check_count(count, "inputs")
        checks = self.checks_for(model.version)
        findings = (
            None
            if checks is None
            else screen(checks, self.policy_for(name), feeds[signature.inputs[0].name], [])
        )
        wanted = [o.name for o in request.outputs] if request.outputs else None
        outputs = model.run(feeds)
        ids = self._observe(
            Answered.of(model.version, count, findings, protocol="v2", feeds=feeds, outputs=outputs),
            captured,
        )
        parameters = None if findings is None else findings.parameters()
        if ids is not None:
            parameters = {**(parameters or {}), "prediction_ids": ids}
        return InferResponse(
            model_name=name,
            model_version=str(model.version.version),
            id=request.id,
            parameters=parameters,
            outputs=tensors.v2_outputs(outputs, wanted),
        )
