"""shap's KernelExplainer against aimass.explain.kernel_shap on the breast-cancer demo: the same ONNX
model, background rows and instances (docs/explain.md, "Why not the shap package"). shap is never a
dependency of the project: the comparison runs in a throwaway venv.

    .venv/bin/python bench/peers/shap_kernel.py export /tmp/shapcmp          # the project's venv
    python -m venv /tmp/shapvenv && /tmp/shapvenv/bin/pip install shap onnxruntime
    /tmp/shapvenv/bin/python bench/peers/shap_kernel.py compare /tmp/shapcmp [--l1-reg num_features(10)]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
LAYER = REPO / "layers" / "core"


def export(folder: Path) -> None:
    """The demo's ONNX model, its 100 background rows as registration keeps them, 10 holdout rows."""
    sys.path.insert(0, str(LAYER))
    from aimass.local.demo import breast_cancer
    from aimass.quality.baseline import background
    from aimass.quality.columns import Column

    folder.mkdir(parents=True, exist_ok=True)
    made = breast_cancer()
    (folder / "model.onnx").write_bytes(made.model)
    records = list(csv.reader(io.StringIO(made.reference_csv.decode())))
    reference = np.array(records[1:], dtype=np.float64)
    kept = background([Column(name, "numeric") for name in records[0]], reference)
    assert kept is not None
    np.savez(folder / "rows.npz", background=np.array(kept["rows"]), instances=made.holdout[:10])


def compare(folder: Path, l1_reg: Any) -> None:
    started = time.perf_counter()
    import shap

    shap_import = time.perf_counter() - started
    import onnxruntime as ort

    sys.path.insert(0, str(LAYER))
    from aimass.explain import default_samples, kernel_shap

    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])

    def f(rows: np.ndarray) -> np.ndarray:
        feeds = {"input": np.asarray(rows, dtype=np.float32)}
        return np.asarray(session.run(["probabilities"], feeds)[0], dtype=np.float64)

    rows = np.load(folder / "rows.npz")
    background, instances = rows["background"], rows["instances"].astype(np.float64)
    samples, k = default_samples(instances.shape[1]), 1  # the benign class
    explainer = shap.KernelExplainer(f, background)
    explainer.shap_values(instances[:1], nsamples=samples, silent=True, l1_reg=l1_reg)
    started = time.perf_counter()
    values = np.asarray(explainer.shap_values(instances, nsamples=samples, silent=True, l1_reg=l1_reg))
    shap_s = (time.perf_counter() - started) / len(instances)
    theirs = values if values.shape[0] == len(instances) else np.moveaxis(values, 0, -1)
    kernel_shap(f, background, instances[:1])
    started = time.perf_counter()
    ours = kernel_shap(f, background, instances)
    ours_s = (time.perf_counter() - started) / len(instances)
    reference = kernel_shap(f, background, instances, samples=40_000, seed=1).attributions[:, :, k]
    a, b = theirs[:, :, k], ours.attributions[:, :, k]

    def relative(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.abs(x - y).max() / np.abs(y).max())

    def top(p: np.ndarray) -> set[int]:
        return set(np.argsort(-np.abs(p))[:5].tolist())

    base = explainer.expected_value[k]
    print(f"shap {shap.__version__} (l1_reg={l1_reg}): import {shap_import:.2f} s")
    print(f"per instance ({samples} coalitions, {len(background)} background rows): "
          f"shap {shap_s * 1e3:.0f} ms, aimass {ours_s * 1e3:.0f} ms")  # fmt: skip
    print(f"additivity: shap {np.abs(base + a.sum(axis=1) - ours.outputs[:, k]).max():.1e}, "
          f"aimass {np.abs(ours.base[k] + b.sum(axis=1) - ours.outputs[:, k]).max():.1e}")  # fmt: skip
    print(f"base values differ by {abs(base - ours.base[k]):.1e}")
    print(f"max |shap - aimass| / max |aimass|: {relative(a, b):.3f}; correlation "
          f"{np.corrcoef(a.ravel(), b.ravel())[0, 1]:.4f}")  # fmt: skip
    print(
        f"against 40,000 coalitions: shap {relative(a, reference):.3f}, aimass {relative(b, reference):.3f}"
    )
    print("top-5 features shared, per instance:", [len(top(x) & top(y)) for x, y in zip(a, b, strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=["export", "compare"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--l1-reg", default="false", help="shap's l1_reg (default false: plain Kernel SHAP)")
    args = parser.parse_args()
    if args.step == "export":
        export(args.folder)
    else:
        compare(args.folder, False if args.l1_reg == "false" else args.l1_reg)


if __name__ == "__main__":
    main()
