"""Benchmark 16: int8 (dynamic, static) and float16 copies of the digits demos made by
`aimass models quantize` (aimass.compression.measure), judged against the originals on the digits
test split with its true labels: agreement, largest probability difference, accuracy, size, and
speed (ONNX Runtime in this process, one thread, the two models timed in turns), and the wall time
of the whole judgement (what the quantize route spends, under API Gateway's 30 s).

Without a GPU the float16 copy runs on the CPU, where ONNX Runtime casts back to float32: its speed
here says nothing about a GPU's."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.report import Table, ratio

METHODS = ("dynamic", "static", "float16")


def _models() -> dict[str, tuple[bytes, np.ndarray, np.ndarray]]:
    from bench.harness import demo
    from gpu_endpoints.demo_networks import digits_cnn

    network = digits_cnn()
    return {
        "digits (MLP)": (demo("digits").model, network.holdout, network.holdout_labels),
        "digits-cnn": (network.model, network.holdout, network.holdout_labels),
    }


def run(scale: float = 1.0) -> dict[str, Any]:
    from aimass.compression import Rows, measure
    from aimass.contracts.compression import QuantizeRequest
    from aimass.contracts.registry import ModelVersion, SignatureEnrichment
    from aimass.serving.backends.onnx import inspect
    from aimass.signature import read

    results: dict[str, Any] = {}
    for name, (model, images, labels) in _models().items():
        signature = read(inspect(model), SignatureEnrichment(class_labels=[str(d) for d in range(10)]))
        record = ModelVersion(
            name="digits",
            version=1,
            artifact_uri="s3://b/k",
            sha256="0",
            size_bytes=len(model),
            signature=signature,
        )
        rows = Rows(
            images.reshape(len(images), -1).astype(np.float64), [str(y) for y in labels], "digits test split"
        )
        for method in METHODS:
            began = time.perf_counter()
            _, figures = measure(record, model, QuantizeRequest(method=method, min_agreement=0), rows)
            results[f"{name}, {method}"] = {**figures.model_dump(), "wall_s": time.perf_counter() - began}
    return {"cases": results}


def tables(result: dict[str, Any]) -> list[Table]:
    table = Table(
        "Compressed copies of the digits demos vs the originals, digits test split (450 images)",
        [
            "model, method",
            "agreement",
            "max prob. diff",
            "accuracy (orig → copy)",
            "size (orig → copy)",
            "one row p50 ms (orig → copy)",
            "batch rows/s (orig → copy)",
            "batch speedup",
            "wall s",
        ],
        note="aimass.compression.measure in-process; the two models timed in turns (101 one-row runs, "
        "7 runs of all 450 rows), one ONNX Runtime thread each. float16 on the CPU: no GPU figure.",
    )
    for label, f in result["cases"].items():
        table.add(
            label,
            f"{f['agreement']:.4f}",
            f"{f['max_probability_difference']:.2g}",
            f"{f['metric_original']:.4f} → {f['metric_compressed']:.4f}",
            f"{f['size_bytes_original']:,} → {f['size_bytes_compressed']:,}",
            f"{f['speed_original']['single_row_ms']:.3f} → {f['speed_compressed']['single_row_ms']:.3f}",
            f"{f['speed_original']['batch_rows_per_s']:,.0f} → "
            f"{f['speed_compressed']['batch_rows_per_s']:,.0f}",
            ratio(f["batch_speedup"]),
            f"{f['wall_s']:.1f}",
        )
    return [table]
