"""Who may call which route with the local API keys, and how large a body may be: the rules the app's
RequestGuard (aimass.api.guard, ASGI) and the online function's direct path (aimass.api.direct) both
apply, framework-free.

The local server has two optional keys, both sent in x-api-key: the API key (predict scope) and the
admin key (admin scope, aimass.api.scopes). With an admin key set, the registry's writes need it and
every other route takes either key; the API key on a write is a 403 that names the scope. With
neither set (the deployed API, where API Gateway authorises), every route is open.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aimass.api.scopes import ADMIN, needs_admin
from aimass.errors import PayloadTooLarge

OPEN_PATHS = frozenset({"/health"})
# The audit trail's actor for a request the local keys opened.
ADMIN_CALLER = "local:admin-key"
API_CALLER = "local:api-key"
# How a refusal tells the caller what to send.
CHALLENGE = {"WWW-Authenticate": "ApiKey"}


@dataclass(frozen=True)
class Access:
    max_body_bytes: int
    api_key: bytes | None = None
    admin_key: bytes | None = None

    @classmethod
    def of(cls, max_body_bytes: int, api_key: str | None = None, admin_key: str | None = None) -> Access:
        return cls(
            max_body_bytes, api_key.encode() if api_key else None, admin_key.encode() if admin_key else None
        )

    def caller(self, key: bytes) -> str | None:
        """The name of the local key sent (None: no key matched, or none is set)."""
        if not key:
            return None
        if self.admin_key is not None and hmac.compare_digest(key, self.admin_key):
            return ADMIN_CALLER
        if self.api_key is not None and hmac.compare_digest(key, self.api_key):
            return API_CALLER
        return None

    def refusal(self, method: str, path: str, caller: str | None) -> tuple[int, str, str] | None:
        """(status, code, message) when the caller's key does not open this route; None when it does."""
        if path in OPEN_PATHS or (self.api_key is None and self.admin_key is None):
            return None
        if self.admin_key and needs_admin(method, path):
            route = f"{method} {path}"
            if caller == ADMIN_CALLER:
                return None
            if caller == API_CALLER:
                return 403, "forbidden", f"{route} needs the {ADMIN} scope: send the admin key in x-api-key"
            return 401, "unauthorized", f"missing or wrong x-api-key header: {route} needs the admin key"
        if self.api_key is None or caller is not None:
            return None
        return 401, "unauthorized", "missing or wrong x-api-key header"

    def declared_too_large(self, content_length: bytes | None) -> PayloadTooLarge | None:
        """The 413 for a body whose declared length (the content-length header) is over the limit."""
        if content_length and content_length.isdigit() and int(content_length) > self.max_body_bytes:
            return self.too_large(int(content_length))
        return None

    def too_large(self, size: int | None = None) -> PayloadTooLarge:
        what = f"request body of {size} bytes" if size else "request body"
        return PayloadTooLarge(
            f"{what} exceeds the limit of {self.max_body_bytes} bytes",
            [{"loc": ["body"], "message": f"at most {self.max_body_bytes} bytes", "type": "too_large"}],
        )
