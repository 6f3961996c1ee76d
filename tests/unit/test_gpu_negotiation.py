"""The media type the inference server answers in: the request's own kind unless `Accept` says
otherwise, the first acceptable type by q, and a 406 that says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from aimass.protocol.errors import NotAcceptable
from gpu_endpoints.models import Model, ModelConfig
from gpu_endpoints.payloads import Decoded, Protocol, negotiate
from gpu_endpoints.settings import BatchingConfig

JSON, NPY, NPZ = "application/json", "application/x-npy", "application/x-npz"


def identity_model(folder: Path, outputs: list[str]) -> Model:
    """A real ONNX model taking x [N, 3] and giving each of `outputs` as a copy of it."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], [name], name=name) for name in outputs],
        "copies",
        [x],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 3]) for name in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / f"{'-'.join(outputs)}.onnx"
    path.write_bytes(model.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return Model(path.stem, path, session, ["CPUExecutionProvider"], ModelConfig(BatchingConfig()), 1.0)


@pytest.fixture(scope="module")
def one_output(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return identity_model(tmp_path_factory.mktemp("one"), ["y"])


@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return identity_model(tmp_path_factory.mktemp("two"), ["y", "z"])


def decoded(protocol: Protocol, outputs: tuple[str, ...] | None = None) -> Decoded:
    return Decoded({"x": np.zeros((1, 3), dtype=np.float32)}, protocol, outputs)


@pytest.mark.parametrize(("protocol", "answered"), [("v1", JSON), ("v2", JSON), ("npy", NPY), ("npz", NPZ)])
@pytest.mark.parametrize("accept", [None, "", "*/*", "application/*"])
def test_without_a_preference_a_request_is_answered_in_its_own_kind(
    one_output: Model, protocol: Protocol, answered: str, accept: str | None
) -> None:
    assert negotiate(accept, decoded(protocol), one_output) == answered


def test_an_npy_request_to_a_model_of_several_outputs_is_answered_in_npz(two_outputs: Model) -> None:
    assert negotiate(None, decoded("npy"), two_outputs) == NPZ
    assert negotiate("*/*", decoded("npy"), two_outputs) == NPZ


def test_an_npy_request_naming_one_output_is_answered_in_npy(two_outputs: Model) -> None:
    assert negotiate(None, decoded("npy", ("z",)), two_outputs) == NPY


@pytest.mark.parametrize(
    ("accept", "answered"),
    [
        (JSON, JSON),
        ("application/vnd.aimass+json", JSON),
        ("APPLICATION/X-NPY", NPY),
        (NPZ, NPZ),
        ("text/csv, application/json", JSON),
        ("text/*, application/x-npz", NPZ),
        # By q, then in the order written
        ("application/json;q=0.5, application/x-npz", NPZ),
        ("application/json; q=0.9, application/x-npz; q=0.2", JSON),
        ("application/x-npz, application/json", NPZ),
        ("application/x-npz;q=0.5, application/json;q=0.5", NPZ),
        # q=0 and an unreadable q mean: not this one
        ("application/json;q=0, application/x-npz", NPZ),
        ("application/json;q=high, application/x-npz;q=0.1", NPZ),
        # Other parameters are not q
        ("application/json;charset=utf-8;level=1", JSON),
    ],
)
def test_accept_picks_the_first_acceptable_type_by_q(one_output: Model, accept: str, answered: str) -> None:
    assert negotiate(accept, decoded("v1"), one_output) == answered


def test_a_wildcard_ranked_first_answers_in_the_requests_kind(one_output: Model) -> None:
    assert negotiate("*/*, application/json", decoded("npz"), one_output) == NPZ


def test_npy_for_several_outputs_is_not_acceptable_and_says_what_would_be(two_outputs: Model) -> None:
    with pytest.raises(NotAcceptable) as refused:
        negotiate(NPY, decoded("v2"), two_outputs)
    assert refused.value.status == 406
    assert str(refused.value) == (
        "application/x-npy carries one array and the model gives 2 outputs (y, z): name one with "
        "X-Amzn-SageMaker-Custom-Attributes: outputs=NAME, or accept application/x-npz"
    )


def test_npy_is_not_acceptable_even_when_a_later_type_would_be(two_outputs: Model) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(f"{NPY}, {JSON};q=0.5", decoded("v1"), two_outputs)


@pytest.mark.parametrize("accept", ["text/csv", "application/json;q=0", "image/*, text/html;q=0.3"])
def test_nothing_acceptable_is_a_406_naming_what_the_server_answers_in(
    one_output: Model, accept: str
) -> None:
    with pytest.raises(NotAcceptable) as refused:
        negotiate(accept, decoded("v1"), one_output)
    assert str(refused.value) == (
        f"cannot answer in {accept!r}; the server answers in application/json, application/x-npy, "
        "application/x-npz"
    )
