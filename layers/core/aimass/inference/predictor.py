"""Online predictions: resolve the version a request means, load it once, run it, shape the answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from aimass import artifacts
from aimass.contracts import InferRequest, InferResponse, ModelSummary, ModelVersion
from aimass.errors import IntegrityError, ValidationFailed, field_error
from aimass.inference import tensors
from aimass.inference.onnx import SessionCache, new_session, run
from aimass.registry import Registry, version_meant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    version: ModelVersion
    session: ort.InferenceSession

    def ref(self) -> dict[str, Any]:
        return {"name": self.version.name, "version": self.version.version, "backend": self.version.backend}


Selector = tuple[str, int | None, str | None]


class Predictor:
    def __init__(
        self,
        registry: Registry,
        cache_dir: Path,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        registry_ttl_s: float = 5.0,
        max_instances: int = 10_000,
        observers: list[Callable[[ModelVersion, int], None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
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
        self._last_good: dict[Selector, LoadedModel] = {}
        self._refused: set[str] = set()
        # Called with (version, instance count) after each answered request: metrics, capture.
        self.observers = observers if observers is not None else []

    def _resolve(self, name: str, version: int | None, alias: str | None) -> ModelVersion:
        if version is None:
            # Aliases and "latest" move: the model's summary is re-read once its TTL has passed.
            now = self.clock()
            cached = self._summaries.get(name)
            if cached is None or cached[1] <= now:
                cached = (self.registry.get_model(name), now + self.registry_ttl_s)
                self._summaries[name] = cached
            version = version_meant(cached[0], alias)
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
        record = self._resolve(name, version, alias)
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
        loaded = LoadedModel(record, session)
        self._last_good[selector] = loaded
        return loaded

    def _observe(self, version: ModelVersion, count: int) -> None:
        for observer in self.observers:
            observer(version, count)

    def _check_count(self, count: int, loc: str) -> None:
        if count > self.max_instances:
            raise ValidationFailed(
                f"{count} instances in one request; the limit is {self.max_instances}",
                [field_error(["body", loc], f"at most {self.max_instances}", "too_many")],
            )

    def predict(
        self, name: str, instances: list[Any], version: int | None = None, alias: str | None = None
    ) -> dict[str, Any]:
        self._check_count(len(instances), "instances")
        model = self.load(name, version, alias)
        signature = model.version.signature
        outputs = run(model.session, tensors.v1_feeds(signature, instances))
        self._observe(model.version, len(instances))
        return {
            "predictions": tensors.v1_predictions(signature, outputs, len(instances)),
            "model": model.ref(),
        }

    def infer(self, name: str, request: InferRequest, version: int | None = None) -> InferResponse:
        model = self.load(name, version)
        feeds = tensors.v2_feeds(model.version.signature, request.inputs)
        self._check_count(max(len(t) for t in feeds.values()), "inputs")
        wanted = [o.name for o in request.outputs] if request.outputs else None
        outputs = run(model.session, feeds)
        self._observe(model.version, len(next(iter(feeds.values()))))
        return InferResponse(
            model_name=name,
            model_version=str(model.version.version),
            id=request.id,
            outputs=tensors.v2_outputs(outputs, wanted),
        )
