"""Backend kind `sagemaker` (`sagemaker:<endpoint>[/<target model>]`): versions served by a SageMaker
endpoint. The model's ONNX feeds go to the endpoint as `.npz`, its
outputs come back as `.npz`, so everything around the model (quality checks, rules, capture,
monitoring) runs on the same tensors as for a version inside the Lambda.

The endpoint's failures become the API's: throttling (and a container whose queue is full) is a
429, an endpoint down, missing or timing out a 503, both with Retry-After; any other failure of the
endpoint's model a 502. Retries and timeouts are the sagemaker-runtime client's (aimass.aws), bounded
in all by the settings' deadline; an endpoint that keeps not answering opens its circuit breaker
(aimass.serving.breaker), and until a probe gets through its requests fail at once, without a call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass.contracts.registry import ModelVersion
from aimass.errors import BackendError, BackendThrottled, BackendUnavailable, BadRequest
from aimass.protocol.arrays import NPZ, from_npz, to_npz
from aimass.serving.backends import Runner
from aimass.serving.breaker import Breaker, Breakers

log = logging.getLogger(__name__)

# SageMaker Runtime's own throttling, and a multi-model endpoint still loading the target model.
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "ModelNotReadyException"}
)
UNAVAILABLE_CODES = frozenset(
    {"ServiceUnavailable", "InternalFailure", "InternalDependencyException", "InternalServerError"}
)
# The custom attribute in which gpu_endpoints names the model file that answered.
MODEL_SHA256 = "model-sha256"
# What the container answers when it is saturated (queue full) or cannot fit the model right now.
CONTAINER_BUSY = frozenset({429, 503})
CONTAINER_UNAVAILABLE = frozenset({507})


def classify(endpoint: str, code: str, message: str, status: int | None, retry_after_s: int) -> BackendError:
    """The API's error for an InvokeEndpoint failure (`status`: the container's own, for a ModelError)."""
    retry = {"Retry-After": str(retry_after_s)}
    if code in THROTTLING_CODES or (code == "ModelError" and status in CONTAINER_BUSY):
        return BackendThrottled(f"endpoint {endpoint} is throttling requests: {message}", headers=retry)
    missing = code == "ValidationError" and "not found" in message.lower()
    if code in UNAVAILABLE_CODES or missing or (code == "ModelError" and status in CONTAINER_UNAVAILABLE):
        return BackendUnavailable(f"endpoint {endpoint} is unavailable: {message}", headers=retry)
    return BackendError(f"endpoint {endpoint} failed: {code}: {message}")


def answered_by(custom_attributes: str | None) -> str | None:
    """The sha256 of the model file that answered, as the container names it; None if it does not."""
    for pair in (custom_attributes or "").split(";"):
        key, _, value = pair.strip().partition("=")
        if key == MODEL_SHA256:
            return value.strip()
    return None


@dataclass(frozen=True)
class EndpointRunner:
    """Runs a version's model on its endpoint (and, on a multi-model endpoint, its target model)."""

    client: Any
    endpoint: str
    target_model: str | None = None
    retry_after_s: int = 2
    breaker: Breaker | None = None

    def __call__(self, feeds: dict[str, np.ndarray], sha256: str | None = None) -> dict[str, Any]:
        """The outputs for `feeds`. With `sha256` (the version's), an answer from another model file
        (the endpoint was deployed with another version since) is an error, not an answer."""
        if self.breaker is None:
            return self._invoke(feeds, sha256)
        if not self.breaker.allow():
            retry = max(1, round(self.breaker.retry_in_s()))
            raise BackendUnavailable(
                f"endpoint {self.endpoint} is not called: its circuit is open after it failed to answer",
                headers={"Retry-After": str(retry)},
            )
        try:
            outputs = self._invoke(feeds, sha256)
        except BackendUnavailable as error:
            self.breaker.failed(error.message)
            raise
        except BackendError:
            self.breaker.succeeded()  # it answered (a throttle, a model error): the endpoint is there
            raise
        except BaseException:
            self.breaker.abandoned()  # this process failed: nothing was learnt of the endpoint
            raise
        self.breaker.succeeded()
        return outputs

    def _invoke(self, feeds: dict[str, np.ndarray], sha256: str | None) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        call: dict[str, Any] = {
            "EndpointName": self.endpoint,
            "Body": to_npz(feeds),
            "ContentType": NPZ,
            "Accept": NPZ,
        }
        if self.target_model:
            call["TargetModel"] = self.target_model
        try:
            answer = self.client.invoke_endpoint(**call)
            body = answer["Body"].read()
        except ClientError as error:
            response = error.response
            failed = classify(
                self.endpoint,
                str(response.get("Error", {}).get("Code", "")),
                str(response.get("Error", {}).get("Message", "")),
                response.get("OriginalStatusCode"),
                self.retry_after_s,
            )
            log.warning("endpoint %s: %s", self.endpoint, failed.message)
            raise failed from error
        except BotoCoreError as error:
            # Connection refused or dropped, timeouts: nothing answered.
            log.warning("endpoint %s did not answer: %s", self.endpoint, error)
            raise BackendUnavailable(
                f"endpoint {self.endpoint} did not answer: {type(error).__name__}",
                headers={"Retry-After": str(self.retry_after_s)},
            ) from error
        served = answered_by(answer.get("CustomAttributes"))
        if sha256 is not None and served is not None and served != sha256:
            raise BackendError(
                f"endpoint {self.endpoint} now serves another model (sha256 {served[:12]}…) than this "
                f"version's ({sha256[:12]}…): deploy this version to it, or move the alias to the "
                "version it serves"
            )
        try:
            return from_npz(body)
        except BadRequest as error:
            raise BackendError(f"endpoint {self.endpoint} answered something other than .npz") from error


class SageMakerBackend:
    """Runs versions whose backend is `sagemaker:...` on their endpoint; one EndpointRunner per
    backend string, so a version's backend is parsed once per container."""

    def __init__(
        self, client: Callable[[], Any], retry_after_s: int = 2, breakers: Breakers | None = None
    ) -> None:
        # The sagemaker-runtime client, made on first use: versions in the Lambda never pay for it.
        self.client = client
        self.retry_after_s = retry_after_s
        # One breaker per endpoint, whatever its target models: what opens it (no answer) is the
        # endpoint's. None: every request calls the endpoint.
        self.breakers = breakers
        self._endpoints: dict[str, EndpointRunner] = {}

    def local(self, record: ModelVersion) -> bool:
        return False  # every run waits on the endpoint

    def runner(self, record: ModelVersion) -> Runner:
        endpoint = self._endpoints.get(record.backend)
        if endpoint is None:
            backend = record.runs_on
            assert backend.endpoint is not None
            breaker = None if self.breakers is None else self.breakers.of(backend.endpoint)
            endpoint = EndpointRunner(
                self.client(), backend.endpoint, backend.target_model, self.retry_after_s, breaker
            )
            self._endpoints[record.backend] = endpoint
        # The endpoint holds the model: nothing is downloaded here; each answer names the model file
        # it came from, and one that is not this version's is refused.
        sha256 = record.sha256
        return lambda feeds: endpoint(feeds, sha256)
