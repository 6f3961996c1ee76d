"""Demo networks for the inference server's tests and benchmarks, built here: nothing is downloaded.

`digits_cnn` is a convolutional network on scikit-learn's 8x8 digits: two 3x3 convolutions (32 and
64 channels), two 2,048-wide dense layers and a 10-class readout, about 12 million weights (48 MB of
ONNX). The convolutions and dense layers keep their seeded random weights (random features); only the
readout is fitted, by ridge regression on the training split's features, so it builds in a second or
two on a CPU and still classifies the held-out digits well (about 99 % accuracy).

Its shape is chosen so that batching visibly matters: one row costs a full read of the dense weights
(memory-bound matrix-vector products), while a batch of 32 shares that read (matrix-matrix products).
On a 2-core CPU one row takes several milliseconds, a row inside a batch of 32 well under one.

`digits_linear` is the light one: the same inputs and outputs, a readout on the raw pixels alone.

Needs the `train` extra (onnx, scikit-learn); the server itself never imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 0
OPSET = 17
CONV_CHANNELS = (32, 64)
DENSE_WIDTHS = (2048, 2048)
CLASSES = 10
RIDGE_ALPHA = 1.0
# Softmax temperature over the ridge scores (which sit near 0 and 1): gives usable probabilities.
SCORE_SCALE = 10.0


@dataclass(frozen=True)
class DemoNetwork:
    name: str
    model: bytes
    # Held-out images [N, 8, 8] float32 in [0, 1] and their true digits.
    holdout: np.ndarray
    holdout_labels: np.ndarray
    # The exported model's accuracy on the held-out images.
    accuracy: float

    def write(self, folder: Path, config: dict[str, object] | None = None) -> Path:
        """The model as the server reads it: `folder/model.onnx`, and `config.json` when given."""
        import json

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes(self.model)
        if config is not None:
            (folder / "config.json").write_text(json.dumps(config, indent=2))
        return folder


def _trunk(rng: np.random.Generator) -> tuple[list[object], list[object], str, int]:
    """Conv → ReLU → Conv → ReLU → Flatten → (Gemm → ReLU) x 2 with He-scaled random weights."""
    from onnx import helper, numpy_helper

    nodes: list[object] = [helper.make_node("Unsqueeze", ["image", "channel_axis"], ["x0"], name="to_nchw")]
    initializers: list[object] = [numpy_helper.from_array(np.array([1], dtype=np.int64), "channel_axis")]
    current, channels = "x0", 1
    for i, out in enumerate(CONV_CHANNELS):
        weight = rng.standard_normal((out, channels, 3, 3)) * np.sqrt(2.0 / (channels * 9))
        initializers += [
            numpy_helper.from_array(weight.astype(np.float32), f"conv{i}_w"),
            numpy_helper.from_array(np.zeros(out, dtype=np.float32), f"conv{i}_b"),
        ]
        nodes += [
            helper.make_node(
                "Conv",
                [current, f"conv{i}_w", f"conv{i}_b"],
                [f"conv{i}"],
                pads=[1, 1, 1, 1],
                name=f"conv{i}",
            ),
            helper.make_node("Relu", [f"conv{i}"], [f"conv{i}_relu"], name=f"conv{i}_relu"),
        ]
        current, channels = f"conv{i}_relu", out
    nodes.append(helper.make_node("Flatten", [current], ["flat"], axis=1, name="flatten"))
    current, width = "flat", channels * 64
    for i, out in enumerate(DENSE_WIDTHS):
        weight = rng.standard_normal((width, out)) * np.sqrt(2.0 / width)
        initializers += [
            numpy_helper.from_array(weight.astype(np.float32), f"dense{i}_w"),
            numpy_helper.from_array(np.zeros(out, dtype=np.float32), f"dense{i}_b"),
        ]
        nodes += [
            helper.make_node(
                "Gemm", [current, f"dense{i}_w", f"dense{i}_b"], [f"dense{i}"], name=f"dense{i}"
            ),
            helper.make_node("Relu", [f"dense{i}"], [f"dense{i}_relu"], name=f"dense{i}_relu"),
        ]
        current, width = f"dense{i}_relu", out
    return nodes, initializers, current, width


def _model(nodes: list[object], initializers: list[object], outputs: list[object]) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 8, 8])
    graph = helper.make_graph(nodes, "digits_cnn", [image], outputs, initializers)  # type: ignore[arg-type]
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="aimass")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _session(model: bytes) -> object:
    import onnxruntime as ort

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits images scaled to [0, 1], split 3:1 into training and test, stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, data.target, test_size=0.25, random_state=seed, stratify=data.target
    )
    return x_train, x_test, y_train, y_test


def _readout(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression onto one-hot targets, in closed form (with an unpenalised bias column): the
    readout's weights and bias, scaled into scores."""
    design = np.hstack([features.astype(np.float64), np.ones((len(features), 1))])
    penalty = RIDGE_ALPHA * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    solution = np.linalg.solve(design.T @ design + penalty, design.T @ np.eye(CLASSES)[labels])
    return solution[:-1] * SCORE_SCALE, solution[-1] * SCORE_SCALE


def _classifier(
    name: str,
    nodes: list[object],
    initializers: list[object],
    features: str,
    readout: tuple[np.ndarray, np.ndarray],
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> DemoNetwork:
    """The network whose `features` output feeds the readout: scores, probabilities and the label,
    with its accuracy on the test split."""
    from onnx import TensorProto, helper, numpy_helper

    initializers = [
        *initializers,
        numpy_helper.from_array(readout[0].astype(np.float32), "readout_w"),
        numpy_helper.from_array(readout[1].astype(np.float32), "readout_b"),
    ]
    nodes = [
        *nodes,
        helper.make_node("Gemm", [features, "readout_w", "readout_b"], ["scores"], name="readout"),
        helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1, name="softmax"),
        helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0, name="argmax"),
    ]
    model = _model(
        nodes,
        initializers,
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES]),
        ],
    )
    predicted = _session(model).run(["label"], {"image": x_test})[0]  # type: ignore[attr-defined]
    accuracy = float(np.mean(predicted == y_test))
    return DemoNetwork(name, model, x_test, y_test.astype(np.int64), accuracy)


def digits_cnn(seed: int = SEED) -> DemoNetwork:
    """The heavy demo network, its readout fitted on the digits training split (seconds on a CPU)."""
    from onnx import TensorProto, helper

    x_train, x_test, y_train, y_test = _digits(seed)
    rng = np.random.default_rng(seed)
    nodes, initializers, features, width = _trunk(rng)

    # Random features of the training images, from the trunk itself (so training and serving agree).
    trunk = _model(
        nodes, initializers, [helper.make_tensor_value_info(features, TensorProto.FLOAT, ["batch", width])]
    )
    session = _session(trunk)
    train_features = np.concatenate(
        [session.run(None, {"image": x_train[i : i + 256]})[0] for i in range(0, len(x_train), 256)]  # type: ignore[attr-defined]
    )
    return _classifier(
        "digits-cnn", nodes, initializers, features, _readout(train_features, y_train), x_test, y_test
    )


def digits_linear(seed: int = SEED) -> DemoNetwork:
    """A light network with the heavy one's inputs and outputs: a ridge readout on the raw pixels (64 x
    10 weights, microseconds a batch). It stands for a device that costs next to nothing, as a GPU
    does for digits-cnn: what is left to measure is the server around the model."""
    from onnx import helper

    x_train, x_test, y_train, y_test = _digits(seed)
    flatten = helper.make_node("Flatten", ["image"], ["flat"], axis=1, name="flatten")
    readout = _readout(x_train.reshape(len(x_train), -1), y_train)
    return _classifier("digits-linear", [flatten], [], "flat", readout, x_test, y_test)
