"""Custom methods (`:predict`, `:evaluate`, `:check`, `:run`) are POST only, on every app.

Without this route, a GET on `/v1/models/x:predict` matches the registry's `GET /v1/models/{name}`
and answers "model 'x:predict' is not registered", and on the registry function alone (where API
Gateway sends a GET) no route knows the verb at all. Model names, aliases, versions and run ids
cannot hold a `:`, so a last path segment with one is always a verb.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, NoMatchFound, get_route_path
from starlette.types import Receive, Scope, Send

VERB_PATH = re.compile(r"^/v1/models/(?:[^/:]+/)*[^/:]+:(?P<verb>[A-Za-z]+)$")


class CustomMethodTakesPost(BaseRoute):
    """Any method but POST on a `:verb` path: 405 with `Allow: POST`. POST never matches here, so
    the verb's own route (or the 404 of an unknown one) answers it."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["method"] != "POST" and VERB_PATH.match(get_route_path(scope)):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = VERB_PATH.match(get_route_path(scope))
        verb = found["verb"] if found else ""
        raise HTTPException(
            405, f"`:{verb}` is called with POST, not {scope['method']}", headers={"Allow": "POST"}
        )
