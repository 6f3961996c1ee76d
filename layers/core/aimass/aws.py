"""The one place AWS clients are made: lazily, once per container, with the local endpoint override."""

from __future__ import annotations

from functools import cache
from typing import Any

from aimass.config import settings


@cache
def client(service: str) -> Any:
    # boto3 costs ~330 ms to import; paths that never touch AWS never pay it.
    import boto3
    from botocore.config import Config

    s = settings()
    return boto3.session.Session().client(
        service,
        region_name=s.region,
        endpoint_url=s.aws_endpoint_url,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=10),
    )


def reset() -> None:
    """Forget cached clients (after the settings changed, e.g. the local stack moved its endpoint)."""
    client.cache_clear()
