"""The one place AWS clients are made: lazily, once per container, with the local endpoint override."""

from __future__ import annotations

from functools import cache
from typing import Any

from aimass.config import settings


@cache
def _session() -> Any:
    # boto3 costs ~330 ms to import; paths that never touch AWS never pay it. One session for all
    # clients: each session loads the endpoint and credential machinery again (~150 ms a client).
    import boto3

    return boto3.session.Session()


@cache
def client(service: str) -> Any:
    from botocore.config import Config

    s = settings()
    endpoint_url = s.aws_endpoint_url
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=10)
    if service == "sagemaker-runtime":
        # A prediction waits on these calls: their retries and timeouts are the API's to bound.
        endpoint_url = s.sagemaker_runtime_url or endpoint_url
        config = Config(
            retries={"total_max_attempts": s.sagemaker_max_attempts, "mode": "standard"},
            connect_timeout=s.sagemaker_connect_timeout_s,
            read_timeout=s.sagemaker_read_timeout_s,
            max_pool_connections=32,
        )
    return _session().client(service, region_name=s.region, endpoint_url=endpoint_url, config=config)


def reset() -> None:
    """Forget cached clients (after the settings changed, e.g. the local stack moved its endpoint)."""
    client.cache_clear()
    _session.cache_clear()
