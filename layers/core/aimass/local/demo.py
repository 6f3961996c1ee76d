"""Demo models trained from scikit-learn's bundled datasets; nothing is downloaded.

Trained once, then kept under the local state directory so later starts only register them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aimass.contracts.registry import Feature, ModelVersion, SignatureEnrichment
from aimass.registry import Registry

SEED = 0
# Bumped whenever what a demo is made of changes: a cached demo of another format is trained again.
FORMAT = 2


@dataclass
class Demo:
    name: str
    model: bytes
    enrichment: SignatureEnrichment
    # Held-out rows (as the API takes them) and the estimator's probabilities for them.
    holdout: np.ndarray
    holdout_probabilities: np.ndarray
    description: str
    # The training rows as CSV over the model's columns: the reference dataset of its baseline.
    reference_csv: bytes


def reference_csv(model: bytes, enrichment: SignatureEnrichment, rows: np.ndarray) -> bytes:
    from aimass.quality.columns import columns_of
    from aimass.serving.backends.onnx import inspect
    from aimass.signature import enrich, from_session

    columns = columns_of(enrich(from_session(inspect(model)), enrichment))
    assert columns is not None
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.name for c in columns])
    writer.writerows(rows.reshape(len(rows), -1).tolist())
    return out.getvalue().encode()


def snake(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)


def breast_cancer() -> Demo:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from aimass.export import check_parity, sklearn_to_onnx

    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    x_train, x_test, y_train, _ = _split(x, data.target)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=SEED))
    estimator.fit(x_train, y_train)
    model = sklearn_to_onnx(estimator, x.shape[1])
    check_parity(estimator, model, x_test)
    # Ranges come from the baseline of the training data (registered with it), not the signature.
    features = [Feature(name=snake(n), dtype="float") for n in data.feature_names]
    enrichment = SignatureEnrichment(
        features=list(features),
        class_labels=[str(n) for n in data.target_names],
        description="Logistic regression on scikit-learn's breast_cancer dataset (30 named features).",
    )
    return Demo(
        "breast-cancer",
        model,
        enrichment,
        x_test,
        estimator.predict_proba(x_test),
        "tabular classifier, 30 named features",
        reference_csv(model, enrichment, x_train),
    )


def digits() -> Demo:
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    from aimass.export import check_parity, sklearn_to_onnx, with_image_input

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, _ = _split(x, data.target)
    estimator = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=SEED)
    estimator.fit(x_train, y_train)
    model = with_image_input(sklearn_to_onnx(estimator, 64), 8, 8)
    images = x_test.reshape(-1, 8, 8)
    check_parity(estimator, model, x_test, onnx_x=images)
    enrichment = SignatureEnrichment(
        class_labels=[str(d) for d in data.target_names],
        description="MLP on scikit-learn's digits dataset: 8x8 grey images scaled to [0, 1].",
    )
    return Demo(
        "digits",
        model,
        enrichment,
        images,
        estimator.predict_proba(x_test),
        "image classifier, 8x8 inputs",
        reference_csv(model, enrichment, x_train),
    )


BUILDERS = {"breast-cancer": breast_cancer, "digits": digits}


# Where the local stack puts training_csv(), for `aimass pipeline run breast-cancer`.
TRAINING_DATA_KEY = "datasets/breast-cancer/breast_cancer.csv"


def training_csv() -> bytes:
    """scikit-learn's whole breast_cancer dataset as the pipeline reads training data: the demo's
    feature columns and a `label` column of class names (docs/pipeline.md)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*(snake(n) for n in data.feature_names), "label"])
    names = [str(n) for n in data.target_names]
    for row, target in zip(data.data.astype(np.float32).tolist(), data.target, strict=True):
        writer.writerow([*row, names[target]])
    return out.getvalue().encode()


def load_or_train(name: str, state_dir: Path) -> Demo:
    """The demo from the state directory, training it (seconds) the first time."""
    folder = state_dir / "demo" / name
    files = {
        k: folder / k for k in ("model.onnx", "enrichment.json", "holdout.npz", "meta.json", "reference.csv")
    }
    meta: dict[str, Any] = json.loads(files["meta.json"].read_text()) if files["meta.json"].exists() else {}
    if meta.get("format") == FORMAT and all(f.exists() for f in files.values()):
        arrays = np.load(files["holdout.npz"])
        return Demo(
            name,
            files["model.onnx"].read_bytes(),
            SignatureEnrichment.model_validate_json(files["enrichment.json"].read_text()),
            arrays["x"],
            arrays["p"],
            meta["description"],
            files["reference.csv"].read_bytes(),
        )
    demo = BUILDERS[name]()
    folder.mkdir(parents=True, exist_ok=True)
    files["model.onnx"].write_bytes(demo.model)
    files["enrichment.json"].write_text(demo.enrichment.model_dump_json(indent=2))
    np.savez(files["holdout.npz"], x=demo.holdout, p=demo.holdout_probabilities)
    files["meta.json"].write_text(json.dumps({"description": demo.description, "format": FORMAT}))
    files["reference.csv"].write_bytes(demo.reference_csv)
    return demo


# The heavy demo, served through the SageMaker path (docs/gpu.md): v1 is the `digits` demo's light
# network inside the Lambda, v2 a convolutional network on the emulated endpoint. v2 is the champion,
# and v1 the fallback while the endpoint is throttled or down.
GPU_DEMO = "digits-cnn"


def gpu_network(state_dir: Path) -> bytes:
    """The heavy demo network's ONNX file, built (seconds) the first time."""
    path = state_dir / "demo" / GPU_DEMO / "model.onnx"
    if not path.exists():
        from gpu_endpoints.demo_networks import digits_cnn

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(digits_cnn().model)
    return path.read_bytes()


def register_gpu_demo(
    registry: Registry, bucket: str, light: Demo, network: bytes, endpoint: str, actor: str
) -> ModelVersion:
    """`digits-cnn`: the light network in the Lambda as v1 (`fallback`), the heavy one on `endpoint`
    as v2 (`champion`); both with the digits training images as their baseline's reference."""
    from aimass.registration import Reference, register_version, set_alias

    reference = Reference(light.reference_csv, "reference.csv", "digits demo training data")
    enrichment = light.enrichment.model_copy(
        update={
            "description": "convolutional network on scikit-learn's digits, served by a SageMaker endpoint"
        }
    )
    fallback = register_version(
        registry, bucket, GPU_DEMO, light.model, actor, light.enrichment, reference=reference
    )
    heavy = register_version(
        registry,
        bucket,
        GPU_DEMO,
        network,
        actor,
        enrichment,
        reference=reference,
        backend=f"sagemaker:{endpoint}",
    )
    set_alias(registry, GPU_DEMO, "fallback", fallback.version, actor)
    set_alias(registry, GPU_DEMO, "champion", heavy.version, actor)
    return heavy


def register(registry: Registry, bucket: str, demo: Demo, actor: str) -> ModelVersion:
    """Register a demo with its training data as the baseline's reference, as `champion`."""
    from aimass.registration import Reference, register_version, set_alias

    record = register_version(
        registry,
        bucket,
        demo.name,
        demo.model,
        actor,
        demo.enrichment,
        reference=Reference(demo.reference_csv, "reference.csv", f"{demo.name} demo training data"),
    )
    set_alias(registry, demo.name, "champion", record.version, actor)
    return record
