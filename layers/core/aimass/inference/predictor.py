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
from aimass.contracts import InferRequest, InferResponse, ModelVersion
from aimass.errors import IntegrityError, ValidationFailed, field_error
from aimass.inference import tensors
from aimass.inference.onnx import SessionCache, new_session, run
from aimass.registry import Registry

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.cache_dir = cache_dir
        self.threads = (intra_op_threads, inter_op_threads)
        self.registry_ttl_s = registry_ttl_s
        self.max_instances = max_instances
        self.clock = clock
        self.sessions = SessionCache()
        self._resolved: dict[Selector, tuple[ModelVersion, float]] = {}
        self._last_good: dict[Selector, LoadedModel] = {}
        self._refused: set[str] = set()

    def _resolve(self, selector: Selector) -> ModelVersion:
        now = self.clock()
        cached = self._resolved.get(selector)
        # A version number names an immutable record; aliases and "latest" move, so they expire.
        if cached and (selector[1] is not None or cached[1] > now):
            return cached[0]
        version = self.registry.resolve(*selector)
        self._resolved[selector] = (version, now + self.registry_ttl_s)
        return version

    def load(self, name: str, version: int | None = None, alias: str | None = None) -> LoadedModel:
        selector = (name, version, alias)
        record = self._resolve(selector)
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
        return InferResponse(
            model_name=name,
            model_version=str(model.version.version),
            id=request.id,
            outputs=tensors.v2_outputs(outputs, wanted),
        )
