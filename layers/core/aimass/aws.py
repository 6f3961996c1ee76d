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
    return _session().client(
        service,
        region_name=s.region,
        endpoint_url=s.aws_endpoint_url,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=10),
    )


def reset() -> None:
    """Forget cached clients (after the settings changed, e.g. the local stack moved its endpoint)."""
    client.cache_clear()
    _session.cache_clear()
