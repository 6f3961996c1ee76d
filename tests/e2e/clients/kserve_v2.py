"""KServe's own V2 REST client (the `kserve` package), unchanged and on its defaults, against a
running aimass: run with the Python of a separate environment that has kserve (its dependencies
conflict with aimass's), as `python kserve_v2.py URL IMAGES.npy`. Prints what it got as JSON.

Not a test module: tests/e2e/test_kserve_client.py runs it and checks what it prints."""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(url: str, images: np.ndarray) -> dict[str, object]:
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    try:
        tensor = InferInput("image", list(images.shape), "FP32")
        tensor.set_data_from_numpy(images)  # binary_data=True: the client's default
        answer = await client.infer(
            url, InferRequest("digits", [tensor], request_id="k-1"), model_name="digits"
        )
        outputs = {o.name: o.as_numpy().tolist() for o in answer.outputs}
        try:
            await client.infer(url, InferRequest("no-such-model", [tensor]), model_name="no-such-model")
            unknown = "no error"
        except httpx.HTTPStatusError as error:
            unknown = str(error)
        return {
            "live": await client.is_server_live(url),
            "ready": await client.is_server_ready(url),
            "model_ready": await client.is_model_ready(url, "digits"),
            "id": answer.id,
            "outputs": outputs,
            "unknown_model": unknown,
        }
    finally:
        await client.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], np.load(sys.argv[2]).astype(np.float32)))))
