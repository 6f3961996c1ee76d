"""The minimal FastAPI + ONNX Runtime server a user would write for these models: a pydantic body, one
session per model (the service's session options: 1 intra-op and 1 inter-op thread), FastAPI's own
JSON response. No registry, checks, capture or metrics: the floor of a FastAPI server.

`python -m bench.peers.fastapi_onnx MODELS_JSON PORT`: MODELS_JSON maps a model name to its ONNX file
and its feature names (the order of the columns; empty for list instances).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class PredictRequest(BaseModel):
    instances: list[dict[str, float]] | list[list[float]] | list[list[list[float]]]


def session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def build(models: dict[str, dict[str, Any]]) -> FastAPI:
    app = FastAPI()
    sessions = {name: session(spec["file"]) for name, spec in models.items()}
    features = {name: spec["features"] for name, spec in models.items()}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/models/{name}:predict")
    def predict(name: str, body: PredictRequest) -> dict[str, Any]:
        if name not in sessions:
            raise HTTPException(404, f"no model {name}")
        rows = [[row[f] for f in features[name]] if isinstance(row, dict) else row for row in body.instances]
        run = sessions[name]
        feeds = {run.get_inputs()[0].name: np.asarray(rows, dtype=np.float32)}
        outputs = run.run(None, feeds)
        names = [o.name for o in run.get_outputs()]
        return {
            "predictions": [
                {n: np.asarray(out[i]).tolist() for n, out in zip(names, outputs, strict=True)}
                for i in range(len(rows))
            ]
        }

    return app


if __name__ == "__main__":
    models_file, port = sys.argv[1], int(sys.argv[2])
    with open(models_file) as file:
        uvicorn.run(build(json.load(file)), host="127.0.0.1", port=port, log_level="warning")
