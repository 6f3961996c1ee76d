"""The model store: which version a request means, and that version ready to run.

It resolves a name with a version number, an alias or neither (champion, else latest), keeps what it
read for as long as it stays true (version records and their baselines for the container's life, a
model's aliases, rules and policy for the registry TTL), runs a version through the backend kind its
record names, and keeps serving the last good version of a request that named none when a new one's
artifact fails its sha256 check."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from aimass import artifacts
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import ModelSummary, ModelVersion
from aimass.errors import BackendUnavailable, IntegrityError, ValidationFailed
from aimass.quality.checks import RequestChecks
from aimass.registry import Registry, version_meant
from aimass.rules import CompiledRuleset, compile_ruleset
from aimass.serving.backends import BackendKind, Runner, kind_of

log = logging.getLogger(__name__)


class VersionRef(TypedDict):
    """How an answer names the version that gave it (contracts.common.ModelRef)."""

    name: str
    version: int
    backend: str


@dataclass(frozen=True)
class LoadedModel:
    """A version ready to run: its record and how to run it."""

    version: ModelVersion
    run: Runner

    def ref(self) -> VersionRef:
        return {"name": self.version.name, "version": self.version.version, "backend": self.version.backend}


# What a request names: the model, and a version number or an alias (neither: champion, else latest).
Selector = tuple[str, int | None, str | None]


class ModelStore:
    def __init__(
        self,
        registry: Registry,
        backends: Mapping[str, BackendKind],
        registry_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.backends = backends
        self.registry_ttl_s = registry_ttl_s
        self.clock = clock
        self._summaries: dict[str, tuple[ModelSummary, float]] = {}
        self._versions: dict[tuple[str, int], ModelVersion] = {}
        self._rulesets: dict[tuple[str, int, int], CompiledRuleset | None] = {}
        self._checks: dict[tuple[str, int], RequestChecks | None] = {}
        # A version's baseline files (statistics.json, constraints.json, anomaly.json) by URI.
        self._baseline_files: dict[str, dict[str, Any]] = {}
        self._last_good: dict[Selector, LoadedModel] = {}
        self._refused: set[str] = set()

    def summary(self, name: str) -> ModelSummary:
        # Aliases, "latest" and the rules move: the model's summary is re-read once its TTL has passed.
        now = self.clock()
        cached = self._summaries.get(name)
        if cached is None or cached[1] <= now:
            cached = (self.registry.get_model(name), now + self.registry_ttl_s)
            self._summaries[name] = cached
        return cached[0]

    def resolve(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        if version is None:
            version = version_meant(self.summary(name), alias)
        # A version number names an immutable record: read once per container.
        record = self._versions.get((name, version))
        if record is None:
            record = self._versions[(name, version)] = self.registry.get_version(name, version)
        return record

    def forget(self, name: str) -> None:
        """Drop what is known of a model's aliases and latest version; the next request re-reads it."""
        self._summaries.pop(name, None)

    def load(self, name: str, version: int | None = None, alias: str | None = None) -> LoadedModel:
        selector = (name, version, alias)
        record = self.resolve(name, version, alias)
        kind = kind_of(record.backend)
        backend = self.backends.get(kind)
        if backend is None:
            raise BackendUnavailable(
                f"{name} v{record.version} runs on {record.backend}, which cannot be reached from here",
                headers={"Retry-After": "60"},
            )
        try:
            if record.sha256 in self._refused:
                raise IntegrityError(
                    f"version {record.version} of {name!r} failed its sha256 check; it is refused"
                )
            run = backend.runner(record)
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
        loaded = LoadedModel(record, run)
        self._last_good[selector] = loaded
        return loaded

    def rules_for(self, record: ModelVersion) -> CompiledRuleset | None:
        """The model's current rules, compiled for this version's signature (None: no rules)."""
        rules_version = self.summary(record.name).rules_version
        if rules_version is None:
            return None
        key = (record.name, rules_version, record.version)
        if key not in self._rulesets:
            # A saved ruleset replaces the one before it: only the current one stays compiled per
            # version, so a container's compiled rules are bounded by the versions it serves.
            for stale in [k for k in self._rulesets if k[0] == record.name and k[2] == record.version]:
                del self._rulesets[stale]
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
        return self.summary(name).quality_policy

    def _baseline_file(self, record: ModelVersion, uri: str | None) -> dict[str, Any] | None:
        """One of the version's baseline files, read (and its sha256 checked) once per container."""
        if record.baseline is None or uri is None:
            return None
        if uri not in self._baseline_files:
            data = artifacts.verified(uri, record.baseline.sha256[uri.rsplit("/", 1)[1]])
            self._baseline_files[uri] = json.loads(data)
        return self._baseline_files[uri]

    def constraints_for(self, record: ModelVersion) -> dict[str, Any] | None:
        return self._baseline_file(record, record.baseline.constraints_uri if record.baseline else None)

    def statistics_for(self, record: ModelVersion) -> dict[str, Any] | None:
        return self._baseline_file(record, record.baseline.statistics_uri if record.baseline else None)

    def checks_for(self, record: ModelVersion) -> RequestChecks | None:
        """The version's request-time checks: its signature's constraints, and its baseline's."""
        key = (record.name, record.version)
        if key not in self._checks:
            anomaly = self._baseline_file(record, record.baseline.anomaly_uri if record.baseline else None)
            self._checks[key] = RequestChecks.build(record.signature, self.constraints_for(record), anomaly)
        return self._checks[key]
