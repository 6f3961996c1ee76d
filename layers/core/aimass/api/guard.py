"""Request limits and the local API keys (aimass.api.access) in front of the app, as plain ASGI so the
hot path pays no extra task per request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aimass.api.access import CHALLENGE, Access
from aimass.api.answers import is_v2
from aimass.api.deps import LOCAL_CALLER
from aimass.api.responses import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestGuard:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, api_key: str | None = None, admin_key: str | None = None
    ) -> None:
        self.app = app
        self.access = Access.of(max_body_bytes, api_key, admin_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        caller = self.access.caller(headers.get(b"x-api-key", b""))
        refusal = self.access.refusal(scope["method"], scope["path"], caller)
        if caller is not None:
            scope[LOCAL_CALLER] = caller  # who opened the route, for the audit trail (api.deps.actor)
        if refusal is not None:
            status, code, message = refusal
            await error_response(status, code, message, headers=CHALLENGE, v2_route=is_v2(scope["path"]))(
                scope, receive, send
            )
            return
        error = self.access.declared_too_large(headers.get(b"content-length"))
        if error is not None:
            await error_response(
                error.status, error.code, error.message, error.details, v2_route=is_v2(scope["path"])
            )(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.access.max_body_bytes:
                # Raised inside the app's call, so the app's error handlers turn it into a 413.
                raise self.access.too_large()
            return message

        return counted
