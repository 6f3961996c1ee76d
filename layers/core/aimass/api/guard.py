"""Request limits and the local API keys, as plain ASGI so the hot path pays no extra task per request.

The local server has two optional keys, both sent in x-api-key: the API key (predict scope) and the
admin key (admin scope, aimass.api.scopes). With an admin key set, the registry's writes need it and
every other route takes either key; the API key on a write is a 403 that names the scope.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aimass.api.deps import LOCAL_CALLER
from aimass.api.responses import error_response, is_v2
from aimass.api.scopes import ADMIN, needs_admin
from aimass.errors import PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health"})
# The audit trail's actor for a request the local keys opened.
ADMIN_CALLER = "local:admin-key"
API_CALLER = "local:api-key"


class RequestGuard:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, api_key: str | None = None, admin_key: str | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key.encode() if api_key else None
        self.admin_key = admin_key.encode() if admin_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        caller = self._caller(headers.get(b"x-api-key", b""))
        refusal = None if scope["path"] in OPEN_PATHS else self._refusal(scope, caller)
        if caller is not None:
            scope[LOCAL_CALLER] = caller  # who opened the route, for the audit trail (api.deps.actor)
        if refusal is not None:
            status, code, message = refusal
            await error_response(
                status, code, message, headers={"WWW-Authenticate": "ApiKey"}, v2_route=is_v2(scope["path"])
            )(scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            error = self._too_large(int(declared))
            await error_response(
                error.status, error.code, error.message, error.details, v2_route=is_v2(scope["path"])
            )(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _refusal(self, scope: Scope, caller: str | None) -> tuple[int, str, str] | None:
        """(status, code, message) when the caller's key does not open this route; None when it does."""
        if self.api_key is None and self.admin_key is None:  # the deployed API: API Gateway authorises
            return None
        if self.admin_key and needs_admin(scope["method"], scope["path"]):
            route = f"{scope['method']} {scope['path']}"
            if caller == ADMIN_CALLER:
                return None
            if caller == API_CALLER:
                return 403, "forbidden", f"{route} needs the {ADMIN} scope: send the admin key in x-api-key"
            return 401, "unauthorized", f"missing or wrong x-api-key header: {route} needs the admin key"
        if self.api_key is None or caller is not None:
            return None
        return 401, "unauthorized", "missing or wrong x-api-key header"

    def _caller(self, key: bytes) -> str | None:
        """The name of the local key sent (None: no key matched, or none is set)."""
        if not key:
            return None
        if self.admin_key is not None and hmac.compare_digest(key, self.admin_key):
            return ADMIN_CALLER
        if self.api_key is not None and hmac.compare_digest(key, self.api_key):
            return API_CALLER
        return None

    def _too_large(self, size: int | None = None) -> PayloadTooLarge:
        what = f"request body of {size} bytes" if size else "request body"
        return PayloadTooLarge(
            f"{what} exceeds the limit of {self.max_body_bytes} bytes",
            [{"loc": ["body"], "message": f"at most {self.max_body_bytes} bytes", "type": "too_large"}],
        )

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                # Raised inside the app's call, so the app's error handlers turn it into a 413.
                raise self._too_large()
            return message

        return counted
