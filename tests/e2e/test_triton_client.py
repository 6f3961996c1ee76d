"""Triton's own HTTP client (tritonclient[http]), unchanged and on its defaults, against `aimass serve`:
health, model metadata and readiness, inference with binary tensors (set_data_from_numpy's
default) both sync and async, and the error of an unknown model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from aimass.local import demo
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e
httpclient = pytest.importorskip("tritonclient.http", reason="the dev extra installs tritonclient[http]")


def address(stack: Stack) -> str:
    return stack.url.removeprefix("http://")


def image_input(digits: demo.Demo) -> object:
    image = np.asarray(digits.holdout[:2], dtype=np.float32)
    tensor = httpclient.InferInput("image", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)  # binary_data=True: the client's default
    return tensor


def test_the_server_and_a_model_are_live_ready_and_described(stack: Stack) -> None:
    client = httpclient.InferenceServerClient(url=address(stack))

    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready("digits")
    metadata = client.get_model_metadata("digits")
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8]}]
    assert {o["name"] for o in metadata["outputs"]} == {"label", "probabilities"}


def test_binary_inference_on_the_defaults_equals_scikit_learn(stack: Stack) -> None:
    # Given the digits demo's held-out images as a binary tensor
    digits = demo.load_or_train("digits", stack.state_dir)
    client = httpclient.InferenceServerClient(url=address(stack))

    # When tritonclient infers on its defaults (every output in binary)
    result = client.infer("digits", [image_input(digits)])

    # Then the probabilities are scikit-learn's
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), digits.holdout_probabilities[:2], atol=1e-5, rtol=0
    )
    assert result.as_numpy("label").tolist() == np.argmax(digits.holdout_probabilities[:2], axis=1).tolist()


def test_one_output_asked_for_in_binary_and_one_in_json(stack: Stack) -> None:
    digits = demo.load_or_train("digits", stack.state_dir)
    client = httpclient.InferenceServerClient(url=address(stack))
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=True),
        httpclient.InferRequestedOutput("label", binary_data=False),
    ]

    result = client.infer("digits", [image_input(digits)], outputs=outputs, request_id="r-7")

    assert result.get_response()["id"] == "r-7"
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), digits.holdout_probabilities[:2], atol=1e-5, rtol=0
    )
    assert result.as_numpy("label").shape == (2,)


def test_async_inference_gives_the_same_answer(stack: Stack) -> None:
    import tritonclient.http.aio as aioclient

    digits = demo.load_or_train("digits", stack.state_dir)

    async def infer() -> np.ndarray:
        client = aioclient.InferenceServerClient(url=address(stack))
        try:
            image = np.asarray(digits.holdout[:2], dtype=np.float32)
            tensor = aioclient.InferInput("image", list(image.shape), "FP32")
            tensor.set_data_from_numpy(image)
            assert await client.is_model_ready("digits")
            result = await client.infer("digits", [tensor])
            return result.as_numpy("probabilities")  # type: ignore[no-any-return]
        finally:
            await client.close()

    np.testing.assert_allclose(asyncio.run(infer()), digits.holdout_probabilities[:2], atol=1e-5, rtol=0)


def test_an_unknown_model_is_a_readable_error(stack: Stack) -> None:
    from tritonclient.utils import InferenceServerException

    digits = demo.load_or_train("digits", stack.state_dir)
    client = httpclient.InferenceServerClient(url=address(stack))

    with pytest.raises(InferenceServerException) as refused:
        client.infer("no-such-model", [image_input(digits)])

    assert refused.value.status() == "404"
    assert "no-such-model" in refused.value.message()
    assert not client.is_model_ready("no-such-model")
