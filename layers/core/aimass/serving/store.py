"""The model store: which version a request means, and that version ready to run.

It resolves a name with a version number, an alias or neither (champion, else latest), keeps what it
read for as long as it stays true (version records and their baselines for the container's life, a
model's aliases, rules and policy for the registry TTL), runs a version through the backend kind its
record names, and keeps serving the last good version of a request that named none when a new one's
artifact fails its sha256 check (saying so: LoadedModel.substituted), checking that artifact again
after a back-off.

While AWS cannot be reached, a model already read keeps serving from what was read, for at most
`max_stale_s` past its TTL; what was never read, or is staler, is AwsUnavailable (503)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypedDict, TypeVar

from aimass import artifacts
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import ModelSummary, ModelVersion
from aimass.errors import (
    AimassError,
    AwsUnavailable,
    BackendUnavailable,
    IntegrityError,
    NotFound,
    ValidationFailed,
)
from aimass.privacy import Masker, masker
from aimass.quality.checks import RequestChecks
from aimass.registry import Registry, version_meant
from aimass.rules import CompiledRuleset, compile_ruleset
from aimass.serving.backends import BackendKind, Runner, kind_of

log = logging.getLogger(__name__)

T = TypeVar("T")


class VersionRef(TypedDict):
    """How an answer names the version that gave it (contracts.common.ModelRef)."""

    name: str
    version: int
    backend: str


class Substitution(TypedDict):
    """Why another version than the one resolved answers: the one resolved, and its error."""

    resolved: VersionRef
    error: AimassError


@dataclass(frozen=True)
class LoadedModel:
    """A version ready to run: its record and how to run it; `substituted` when it answers in place of
    the version the request resolved to (whose artifact is refused)."""

    version: ModelVersion
    run: Runner
    substituted: Substitution | None = None

    def ref(self) -> VersionRef:
        return {"name": self.version.name, "version": self.version.version, "backend": self.version.backend}


# What a request names: the model, and a version number or an alias (neither: champion, else latest).
Selector = tuple[str, int | None, str | None]

# An artifact refused for its sha256 is checked again after this long, doubling at each refusal up
# to the most: restored bytes serve again without a restart, a corrupt file costs one read a while.
RECHECK_FIRST_S = 30.0
RECHECK_MOST_S = 600.0


@dataclass(frozen=True)
class Recheck:
    """The back-off of a refused artifact's next sha256 check: the first, and the most it doubles to."""

    first_s: float = RECHECK_FIRST_S
    most_s: float = RECHECK_MOST_S


@dataclass(frozen=True)
class Summary:
    """A model's summary as read at `read_at`; asked again from `check_at` (its TTL, or while AWS
    cannot be reached, the next try)."""

    summary: ModelSummary
    read_at: float
    check_at: float


@dataclass(frozen=True)
class Refusal:
    """An artifact that failed its sha256 check: why, when it is checked again, the back-off so far."""

    error: IntegrityError
    recheck_at: float
    backoff_s: float


class ModelStore:
    def __init__(
        self,
        registry: Registry,
        backends: Mapping[str, BackendKind],
        registry_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_stale_s: float = 300.0,
        recheck: Recheck = Recheck(),
        pii_key: Callable[[], bytes] | None = None,
    ) -> None:
        self.registry = registry
        self.pii_key = pii_key
        self.backends = backends
        self.registry_ttl_s = registry_ttl_s
        self.max_stale_s = max_stale_s
        self.recheck = recheck
        self.clock = clock
        self._summaries: dict[str, Summary] = {}
        # Models served from a summary past its TTL because AWS cannot be reached: since when.
        self._stale_since: dict[str, float] = {}
        self._versions: dict[tuple[str, int], ModelVersion] = {}
        self._rulesets: dict[tuple[str, int, int], CompiledRuleset | None] = {}
        self._checks: dict[tuple[str, int], RequestChecks | None] = {}
        # A version's baseline files (statistics.json, constraints.json, anomaly.json, background.json)
        # by URI.
        self._baseline_files: dict[str, dict[str, Any]] = {}
        self._last_good: dict[Selector, LoadedModel] = {}
        # Artifacts refused for their sha256, by that sha256.
        self._refused: dict[str, Refusal] = {}
        # Each version's masker, with the policy it was made under.
        self._maskers: dict[tuple[str, int], tuple[QualityPolicy, Masker]] = {}

    def summary(self, name: str) -> ModelSummary:
        # Aliases, "latest" and the rules move: the model's summary is re-read once its TTL has passed.
        now = self.clock()
        cached = self._summaries.get(name)
        if cached is not None and now < cached.check_at:
            return cached.summary
        try:
            summary = _reading(lambda: self.registry.get_model(name))
        except AwsUnavailable as error:
            return self._stale(name, cached, now, error)
        if self._stale_since.pop(name, None) is not None:
            log.warning("AWS answers again: %s is served from a fresh registry read", name)
        self._remember(summary, now)
        return summary

    def _remember(self, summary: ModelSummary, now: float) -> None:
        self._summaries[summary.name] = Summary(summary, now, now + self.registry_ttl_s)

    def _stale(self, name: str, cached: Summary | None, now: float, error: AwsUnavailable) -> ModelSummary:
        """The summary read last, while AWS cannot be reached and it is at most max_stale_s past its
        TTL; else the error."""
        serve_until = None if cached is None else cached.read_at + self.registry_ttl_s + self.max_stale_s
        if cached is None or serve_until is None or now > serve_until:
            raise error
        if name not in self._stale_since:  # once per model per outage, not per request
            self._stale_since[name] = now
            log.warning(
                "%s keeps serving from the registry as read %.0f s ago, for at most %.0f s more: %s",
                name,
                now - cached.read_at,
                serve_until - now,
                error.message,
            )
        # Until the next TTL, requests take the stale summary without waiting on an AWS that is down.
        self._summaries[name] = replace(cached, check_at=min(now + self.registry_ttl_s, serve_until))
        return cached.summary

    def stale(self, name: str) -> bool:
        """Whether the model is served from a summary past its TTL (AWS could not be reached)."""
        return name in self._stale_since

    def resolve(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        if version is None:
            version = version_meant(self.summary(name), alias)
        # A version number names an immutable record: read once per container.
        record = self._versions.get((name, version))
        if record is None:
            number = version
            record = _reading(lambda: self.registry.get_version(name, number))
            self._versions[(name, version)] = record
        return record

    def local(self, name: str, version: int | None = None, alias: str | None = None) -> bool:
        """Whether a request for this selector can be answered from what this process holds now: the
        model's summary within its TTL, the version's record, its rules and checks made, its backend
        local (a loaded ONNX session; never an endpoint), its artifact not refused. Reads nothing."""
        cached = self._summaries.get(name)
        if cached is None or self.clock() >= cached.check_at:
            return False
        if version is None:
            canary = cached.summary.traffic.canary if alias is None else None
            if canary is not None and not self.local(name, canary.version):
                return False  # the request may go to the canary
            try:
                version = version_meant(cached.summary, alias)
            except NotFound:
                return False
        record = self._versions.get((name, version))
        if record is None or record.sha256 in self._refused or (name, version) not in self._checks:
            return False
        rules_version = cached.summary.rules_version
        if rules_version is not None and (name, rules_version, version) not in self._rulesets:
            return False
        backend = self.backends.get(kind_of(record.backend))
        return backend is not None and backend.local(record)

    def forget(self, name: str) -> None:
        """Drop what is known of a model's aliases and latest version; the next request re-reads it."""
        self._summaries.pop(name, None)
        self._stale_since.pop(name, None)

    def _backend(self, record: ModelVersion) -> BackendKind:
        backend = self.backends.get(kind_of(record.backend))
        if backend is None:
            raise BackendUnavailable(
                f"{record.name} v{record.version} runs on {record.backend}, which cannot be reached "
                "from here",
                headers={"Retry-After": "60"},
            )
        return backend

    def run_of(self, record: ModelVersion) -> Runner:
        """A version's runner through its backend kind, as `load` makes it (a graph's members run so)."""
        return self._runner(self._backend(record), record)

    def runs_locally(self, name: str, version: int) -> bool:
        """Whether the version's record is held and its backend needs nothing outside this process now
        (its artifact not refused). Reads nothing."""
        record = self._versions.get((name, version))
        if record is None or record.sha256 in self._refused:
            return False
        backend = self.backends.get(kind_of(record.backend))
        return backend is not None and backend.local(record)

    def load(self, name: str, version: int | None = None, alias: str | None = None) -> LoadedModel:
        selector = (name, version, alias)
        record = self.resolve(name, version, alias)
        try:
            run = self.run_of(record)
        except IntegrityError as error:
            previous = self._last_good.get(selector)
            if version is not None or previous is None:
                raise
            substituted: Substitution = {
                "resolved": {"name": name, "version": record.version, "backend": record.backend},
                "error": error,
            }
            return replace(previous, substituted=substituted)
        loaded = LoadedModel(record, run)
        self._last_good[selector] = loaded
        return loaded

    def prepare(self, name: str) -> list[LoadedModel]:
        """Everything a request naming no version needs, made now: the summary, the default version
        (champion, else latest) and a canary's, their runners, rules and checks; so that such a request
        is `local`. For a SnapStart snapshot (aimass.api.snapstart) and a warm-up."""
        loaded = [self.load(name)]
        canary = self.summary(name).traffic.canary
        if canary is not None:
            loaded.append(self.load(name, canary.version))
        for model in loaded:
            self.rules_for(model.version)
            self.checks_for(model.version)
        return loaded

    def refresh(self) -> list[str]:
        """Read every held model's summary again now and prepare what it names (the aliases may have
        moved since they were read); the models it could not, with why, are logged and left to the
        next request. After a SnapStart restore: the summaries' read times are the snapshot's, on the
        clock of another machine, so their TTLs say nothing. The summaries are read together
        (Registry.get_models): the restore's first caller waits for this."""
        names = list(self._summaries)
        for name in names:
            self.forget(name)
        try:
            summaries = _reading(lambda: self.registry.get_models(names))
        except AwsUnavailable as error:
            log.warning("could not read the models' summaries again, left to their next requests: %s", error)
            return names
        now = self.clock()
        for summary in summaries.values():
            self._remember(summary, now)
        for name in names:
            try:
                self.prepare(name)
            except Exception as error:  # a model it cannot prepare now is the next request's to read
                log.warning("could not prepare %s again: %s", name, error)
        return names

    def _runner(self, backend: BackendKind, record: ModelVersion) -> Runner:
        """The version's runner; IntegrityError while its artifact is refused, which it is again
        only once its back-off has passed (the bytes may have been put right since)."""
        now = self.clock()
        refusal = self._refused.get(record.sha256)
        if refusal is not None and now < refusal.recheck_at:
            raise refusal.error
        try:
            run = _reading(lambda: backend.runner(record))
        except IntegrityError as error:
            first, most = self.recheck.first_s, self.recheck.most_s
            backoff = first if refusal is None else min(refusal.backoff_s * 2, most)
            self._refused[record.sha256] = Refusal(error, now + backoff, backoff)
            log.error(
                "refusing %s v%s: %s; checked again in %.0f s",
                record.name,
                record.version,
                error.message,
                backoff,
            )
            raise
        if self._refused.pop(record.sha256, None) is not None:
            log.warning("%s v%s passes its sha256 check again; it serves", record.name, record.version)
        return run

    def rules_for(self, record: ModelVersion) -> CompiledRuleset | None:
        """The model's current rules, compiled for this version's signature (None: no rules)."""
        rules_version = self.summary(record.name).rules_version
        if rules_version is None:
            return None
        key = (record.name, rules_version, record.version)
        if key not in self._rulesets:
            ruleset = _reading(lambda: self.registry.get_ruleset(record.name, rules_version)).ruleset
            # A saved ruleset replaces the one before it: only the current one stays compiled per
            # version, so a container's compiled rules are bounded by the versions it serves.
            for stale in [k for k in self._rulesets if k[0] == record.name and k[2] == record.version]:
                del self._rulesets[stale]
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
        return self.summary(name).quality_policy

    def masker_for(self, record: ModelVersion) -> Masker:
        """What stored copies of this version's rows hold of its personal features, under the model's
        policy as of its registry TTL (aimass.privacy)."""
        policy = self.policy_for(record.name)
        key = (record.name, record.version)
        cached = self._maskers.get(key)
        # A summary read again (every TTL) brings an equal policy: its masker, and the key it read, stay
        if cached is None or (cached[0] is not policy and cached[0] != policy):
            cached = self._maskers[key] = (policy, masker(record.signature, policy, self.pii_key))
        return cached[1]

    def _baseline_file(self, record: ModelVersion, uri: str | None) -> dict[str, Any] | None:
        """One of the version's baseline files, read (and its sha256 checked) once per container."""
        if record.baseline is None or uri is None:
            return None
        if uri not in self._baseline_files:
            sha256 = record.baseline.sha256[uri.rsplit("/", 1)[1]]
            data = _reading(lambda: artifacts.verified(uri, sha256))
            self._baseline_files[uri] = json.loads(data)
        return self._baseline_files[uri]

    def constraints_for(self, record: ModelVersion) -> dict[str, Any] | None:
        return self._baseline_file(record, record.baseline.constraints_uri if record.baseline else None)

    def statistics_for(self, record: ModelVersion) -> dict[str, Any] | None:
        return self._baseline_file(record, record.baseline.statistics_uri if record.baseline else None)

    def background_for(self, record: ModelVersion) -> dict[str, Any] | None:
        """The version's background.json (quality.baseline.background), checked against its sha256;
        None when its baseline has none."""
        return self._baseline_file(record, record.baseline.background_uri if record.baseline else None)

    def checks_for(self, record: ModelVersion) -> RequestChecks | None:
        """The version's request-time checks: its signature's constraints, and its baseline's."""
        key = (record.name, record.version)
        if key not in self._checks:
            anomaly = self._baseline_file(record, record.baseline.anomaly_uri if record.baseline else None)
            self._checks[key] = RequestChecks.build(record.signature, self.constraints_for(record), anomaly)
        return self._checks[key]


def _reading(read: Callable[[], T]) -> T:
    """What `read` returns, an AWS that cannot be used now raised as AwsUnavailable (the one error
    the API answers for it: 503, Retry-After)."""
    try:
        return read()
    except AimassError:
        raise
    except Exception as error:
        from aimass.gateways.transient import unavailable

        down = unavailable(error)
        if down is None:
            raise
        raise down from error
