"""BentoML 1.4 serving the same models with the same request bodies, for the HTTP benchmark. Runs in
its own virtual environment (.venv-bento, `make .venv-bento/.installed`), never the app's:

    AIMASS_PEER_MODELS=models.json .venv-bento/bin/bentoml serve bench.peers.bento_service:Models --port P

AIMASS_PEER_MODELS maps a model name to its ONNX file and feature names, as for bench.peers.fastapi_onnx.
One worker, sessions with the service's options (1 intra-op and 1 inter-op thread).
"""

from __future__ import annotations

import json
import os
from typing import Any

import bentoml
import numpy as np
import onnxruntime as ort


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


@bentoml.service(workers=1, logging={"access": {"enabled": False}})  # as aimass serve: no access log
class Models:
    def __init__(self) -> None:
        with open(os.environ["AIMASS_PEER_MODELS"]) as file:
            models = json.load(file)
        self.sessions = {name: _session(spec["file"]) for name, spec in models.items()}
        self.features = {name: spec["features"] for name, spec in models.items()}

    def _predict(self, name: str, instances: list[Any]) -> dict[str, Any]:
        rows = [[row[f] for f in self.features[name]] if isinstance(row, dict) else row for row in instances]
        run = self.sessions[name]
        outputs = run.run(None, {run.get_inputs()[0].name: np.asarray(rows, dtype=np.float32)})
        names = [o.name for o in run.get_outputs()]
        return {
            "predictions": [
                {n: np.asarray(out[i]).tolist() for n, out in zip(names, outputs, strict=True)}
                for i in range(len(rows))
            ]
        }

    @bentoml.api(route="/v1/models/breast-cancer:predict")
    def breast_cancer(self, instances: list[dict[str, float]]) -> dict[str, Any]:
        return self._predict("breast-cancer", instances)

    @bentoml.api(route="/v1/models/digits:predict")
    def digits(self, instances: list[list[list[float]]]) -> dict[str, Any]:
        return self._predict("digits", instances)
