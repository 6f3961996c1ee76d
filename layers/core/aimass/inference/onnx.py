"""ONNX Runtime sessions, made once per container and kept by artifact hash."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from threading import Lock
from typing import Any

import numpy as np
import onnxruntime as ort

from aimass.errors import ValidationFailed, field_error


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
        raise ValidationFailed(
            "the model rejected the input", [field_error(["body"], str(error)[:300], "model_input_error")]
        ) from error
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
