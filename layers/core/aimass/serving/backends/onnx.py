"""Backend kind `lambda`: the version's ONNX file runs in this process on ONNX Runtime (the CPU).

Sessions are made once per container and kept by the artifact's sha256 in a bounded LRU; the file is
downloaded to a local cache and its sha256 checked before every load (aimass.artifacts)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from aimass.errors import ValidationFailed, field_error
from aimass.protocol.errors import model_rejected

if TYPE_CHECKING:
    from aimass.contracts.registry import ModelVersion
    from aimass.serving.backends import Runner


def new_session(
    model: bytes | Path, intra_op_threads: int = 1, inter_op_threads: int = 1
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def inspect(model: bytes) -> ort.InferenceSession:
    """A session over uploaded bytes, or a 422 saying the bytes are not a model ONNX Runtime can run."""
    try:
        return new_session(model)
    except Exception as error:  # ORT raises its own exception types for every kind of bad file
        raise ValidationFailed(
            "the uploaded file is not an ONNX model that ONNX Runtime can load",
            [field_error(["body", "model"], str(error).splitlines()[0][:300], "invalid_onnx")],
        ) from error


def run(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, feeds)
    except (
        ort.capi.onnxruntime_pybind11_state.InvalidArgument,
        ort.capi.onnxruntime_pybind11_state.Fail,
    ) as error:
        # Shapes the graph rejects at run time (e.g. a fixed batch size) are the caller's error.
        raise model_rejected(str(error)) from error
    return dict(zip(names, values, strict=True))


class SessionCache:
    """A bounded LRU of sessions keyed by the artifact's sha256: a hash names exactly one model."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self._sessions: OrderedDict[str, ort.InferenceSession] = OrderedDict()
        self._lock = Lock()

    def get(self, sha256: str) -> ort.InferenceSession | None:
        with self._lock:
            session = self._sessions.get(sha256)
            if session is not None:
                self._sessions.move_to_end(sha256)
            return session

    def put(self, sha256: str, session: ort.InferenceSession) -> None:
        with self._lock:
            self._sessions[sha256] = session
            self._sessions.move_to_end(sha256)
            while len(self._sessions) > self.capacity:
                self._sessions.popitem(last=False)


class OnnxBackend:
    """Runs versions whose backend is `lambda`: in this process, on ONNX Runtime."""

    def __init__(self, cache_dir: Path, intra_op_threads: int = 1, inter_op_threads: int = 1) -> None:
        self.cache_dir = cache_dir
        self.threads = (intra_op_threads, inter_op_threads)
        self.sessions = SessionCache()

    def session(self, record: ModelVersion) -> ort.InferenceSession:
        """The version's session: from the cache, else from its artifact (IntegrityError when the
        bytes are not the ones registered)."""
        session = self.sessions.get(record.sha256)
        if session is None:
            # Imported here: the session helpers above serve tools and benchmarks that never reach S3.
            from aimass import artifacts

            path = artifacts.cached_path(record.artifact_uri, record.sha256, self.cache_dir)
            session = new_session(path, *self.threads)
            self.sessions.put(record.sha256, session)
        return session

    def local(self, record: ModelVersion) -> bool:
        return self.sessions.get(record.sha256) is not None

    def runner(self, record: ModelVersion) -> Runner:
        session = self.session(record)
        return lambda feeds: run(session, feeds)
