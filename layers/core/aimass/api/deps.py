"""What a request handler needs that only HTTP has: who is calling. The parts it works with (registry,
request pipeline, capture) are the process's, from aimass.wiring."""

from __future__ import annotations

from typing import Any

from fastapi import Request

# Where the local server's key check (aimass.api.guard) leaves the name of the key that opened a route.
LOCAL_CALLER = "aimass.caller"
NOTE_HEADER = "x-aimass-note"
NOTE_MAX_CHARS = 200


def actor(request: Request) -> str:
    """Who is calling, as authenticated: the IAM principal or JWT subject API Gateway's authorizer
    saw, else the local key that opened the route, else `anonymous`. Never a header: a caller must not
    be able to write someone else's name into the audit trail."""
    event: dict[str, Any] = request.scope.get("aws.event") or {}
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    iam = authorizer.get("iam") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    return str(iam.get("userArn") or claims.get("sub") or request.scope.get(LOCAL_CALLER) or "anonymous")


def note(request: Request) -> str | None:
    """What the caller says about a change (x-aimass-note: a ticket, a reason, on whose behalf),
    kept beside the actor in the audit trail; printable characters only, at most 200."""
    text = request.headers.get(NOTE_HEADER)
    if not text:
        return None
    printable = "".join(c for c in text if c.isprintable()).strip()
    return printable[:NOTE_MAX_CHARS] or None
