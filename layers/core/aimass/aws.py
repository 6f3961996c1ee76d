"""The one place AWS clients are made: lazily, once per container, with the local endpoint override;
and what their calls said of AWS's reachability (Reachability), which the server's readiness reads."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from aimass.config import settings

# A failed call keeps the server unready this long unless a call answers since (on Lambda nothing
# probes: a recovery is seen by the next real call).
DOWN_FOR_S = 60.0
# With nothing heard from AWS for this long, the local server's readiness asks it (one cheap call).
PROBE_AFTER_S = 10.0


@dataclass
class Reachability:
    """What the last real calls said of AWS: when one last answered, when one last could not (a
    refused or timed-out connection, a 5xx, throttling) and why. Kept from the calls the process
    makes anyway: readiness costs no AWS call on Lambda."""

    answered_at: float | None = None
    failed_at: float | None = None
    reason: str = ""

    def forget(self) -> None:
        self.answered_at = self.failed_at = None
        self.reason = ""

    def answered(self, now: float) -> None:
        self.answered_at = now

    def failed(self, now: float, reason: str) -> None:
        self.failed_at, self.reason = now, reason

    def down(self, now: float) -> str | None:
        """Why AWS is taken as unreachable now (its last call failed, recently); None: reachable or
        not known to be otherwise."""
        if self.failed_at is None or now - self.failed_at > DOWN_FOR_S:
            return None
        if self.answered_at is not None and self.answered_at >= self.failed_at:
            return None
        return self.reason

    def heard_since(self, since: float) -> bool:
        return max(self.answered_at or -1e18, self.failed_at or -1e18) >= since


reachability = Reachability()


def _after_call(http_response: Any = None, **_: Any) -> None:
    # A 4xx (a missing key, a failed condition) is AWS answering; a 5xx is AWS not able to.
    status = getattr(http_response, "status_code", 200)
    if status >= 500:
        reachability.failed(time.monotonic(), f"AWS answered {status}")
    else:
        reachability.answered(time.monotonic())


def _after_call_error(exception: BaseException | None = None, **_: Any) -> None:
    from aimass.gateways.transient import transient

    if exception is not None and transient(exception):
        reachability.failed(time.monotonic(), f"{type(exception).__name__}: {exception}"[:300])


@cache
def _loader() -> Any:
    """botocore's loader of the service models (JSON files, parsed once): kept by every session this
    process makes, so that a new session (after a SnapStart restore, aimass.api.snapstart) makes its
    clients without parsing them again."""
    import botocore.loaders

    return botocore.loaders.create_loader()


@cache
def _session() -> Any:
    # boto3 costs ~330 ms to import; paths that never touch AWS never pay it. One session for all
    # clients: each session loads the endpoint and credential machinery again (~150 ms a client).
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    core.register_component("data_loader", _loader())
    return boto3.session.Session(botocore_session=core)


# The clients made so far, by service: one each per container.
_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    made = _clients.get(service)
    if made is None:
        made = _clients[service] = _client(service)
    return made


def _client(service: str) -> Any:
    from botocore.config import Config

    s = settings()
    endpoint_url = s.aws_endpoint_url
    # The registry and artifact reads are on the request path: a down AWS must fail a request in
    # about a second or two (aws_max_attempts, aws_connect_timeout_s; docs/design.md), not in the
    # ~15 s of the SDK's defaults.
    config = Config(
        retries={"total_max_attempts": s.aws_max_attempts, "mode": "standard"},
        connect_timeout=s.aws_connect_timeout_s,
        read_timeout=s.aws_read_timeout_s,
    )
    if service == "sagemaker-runtime":
        # A prediction waits on these calls: their retries and timeouts are the API's to bound.
        endpoint_url = s.sagemaker_runtime_url or endpoint_url
        config = Config(
            retries={"total_max_attempts": s.sagemaker_max_attempts, "mode": "standard"},
            connect_timeout=s.sagemaker_connect_timeout_s,
            read_timeout=s.sagemaker_read_timeout_s,
            max_pool_connections=32,
        )
    made = _session().client(service, region_name=s.region, endpoint_url=endpoint_url, config=config)
    if service != "sagemaker-runtime":  # an endpoint's health is its own (the SageMaker backend's)
        made.meta.events.register("after-call", _after_call)
        made.meta.events.register("after-call-error", _after_call_error)
    return made


def on_lambda() -> bool:
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


def unreachable() -> str | None:
    """Why the server cannot use AWS now, from its recent calls; None when it can. Off Lambda (the
    local server), with nothing heard for PROBE_AFTER_S, one DescribeTable of the registry asks."""
    now = time.monotonic()
    if not on_lambda() and not reachability.heard_since(now - PROBE_AFTER_S):
        # Whatever it meets, the hooks above record what it says of AWS.
        with contextlib.suppress(Exception):
            client("dynamodb").describe_table(TableName=settings().registry_table)
    return reachability.down(time.monotonic())


def reset() -> None:
    """Forget cached clients (after the settings changed, e.g. the local stack moved its endpoint)."""
    _clients.clear()
    _session.cache_clear()
    reachability.forget()


def reconnect() -> None:
    """After a SnapStart restore: the clients made before the snapshot are kept, their pooled connections
    closed (their sockets did not survive the restore: a request on one would wait for its timeout, then
    retry) and the session's credentials read now, so that no request after the restore does either.

    Under SnapStart, Lambda gives the runtime its role's credentials through the container endpoint
    (AWS_CONTAINER_CREDENTIALS_FULL_URI), not as keys in the environment: botocore's credentials from it
    refresh themselves when they near their expiry, which a snapshot's have often passed. Reading them
    here makes that refresh (a local call) in the hook rather than in the first request. Making a new
    session and new clients instead would read the same credentials, for ~20 ms more of the hook
    (bench/RESULTS.md, issue 19)."""
    for made in _clients.values():
        made.close()
    if _clients:
        credentials = _session().get_credentials()
        if credentials is not None:
            credentials.get_frozen_credentials()
    reachability.forget()
