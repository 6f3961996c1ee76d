"""scikit-learn estimators to ONNX, checked against the estimator before anything is registered.

Needs the `train` extra (scikit-learn, skl2onnx, onnx); never imported on the Lambda prediction path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aimass.serving.backends.onnx import new_session, run

TARGET_OPSET = 17


def sklearn_to_onnx(estimator: Any, n_features: int, input_name: str = "input") -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    model = to_onnx(
        estimator,
        initial_types=[(input_name, FloatTensorType([None, n_features]))],
        target_opset=TARGET_OPSET,
        options=options,
    )
    return model.SerializeToString()


def with_image_input(model_bytes: bytes, height: int, width: int, input_name: str = "image") -> bytes:
    """Put a Reshape in front of a flat-input graph so it takes [N, height, width] images."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    flat = graph.input[0].name
    shape_name = f"{input_name}_flat_shape"
    graph.initializer.append(
        numpy_helper.from_array(np.array([-1, height * width], dtype=np.int64), shape_name)
    )
    graph.node.insert(0, helper.make_node("Reshape", [input_name, shape_name], [flat], name="flatten_image"))
    image = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, height, width])
    graph.input.remove(graph.input[0])
    graph.input.insert(0, image)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def check_parity(
    estimator: Any,
    model_bytes: bytes,
    x: np.ndarray,
    onnx_x: np.ndarray | None = None,
    tolerance: float = 1e-5,
) -> float:
    """The largest difference between the estimator and its ONNX export; raises above `tolerance`."""
    session = new_session(model_bytes)
    outputs = run(
        session, {session.get_inputs()[0].name: (x if onnx_x is None else onnx_x).astype(np.float32)}
    )
    if hasattr(estimator, "predict_proba"):
        expected, actual = estimator.predict_proba(x), outputs["probabilities"]
    else:
        expected, actual = estimator.predict(x), next(iter(outputs.values())).reshape(len(x), -1).squeeze()
    gap = float(np.max(np.abs(np.asarray(expected) - np.asarray(actual))))
    if gap > tolerance:
        raise ValueError(f"ONNX export differs from the estimator by {gap:.3g} (> {tolerance})")
    return gap
