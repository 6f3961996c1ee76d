"""What a request handler needs that only HTTP has: who is calling. The parts it works with (registry,
request pipeline, capture) are the process's, from aimass.wiring."""

from __future__ import annotations

from typing import Any

from fastapi import Request


def actor(request: Request) -> str:
    """Who is calling, as API Gateway's authorizer saw them (IAM ARN or JWT subject)."""
    event: dict[str, Any] = request.scope.get("aws.event") or {}
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    iam = authorizer.get("iam") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    return str(
        iam.get("userArn") or claims.get("sub") or request.headers.get("x-aimass-actor") or "anonymous"
    )
