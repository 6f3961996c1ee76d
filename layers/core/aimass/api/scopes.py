"""Which routes need the admin scope: the registry's writes (push, archive, card fields, aliases,
rules, quality policy, pipeline runs, monitor runs, releases and their approvals) and the webhook
subscriptions (all of their routes). Everything else (predictions, dry runs, feedback, reads) is the
predict scope, which an admin caller has too.

One list for the three ways a caller is authorised: the local server's admin key (aimass.api.guard),
the JWT scopes of template.yaml's routes and the IAM route ARNs of docs/deploy.md (tests/infra
checks both against this list). A path here is an app path or a template path (`{name}` matches
a segment either way).
"""

from __future__ import annotations

import re

PREDICT = "aimass/predict"
ADMIN = "aimass/admin"

_SEGMENT = r"[^/]+"


def _route(method: str, path: str) -> tuple[str, re.Pattern[str]]:
    return method, re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", _SEGMENT, re.escape(path)) + "$")


ADMIN_ROUTES = (
    _route("POST", "/v1/models/{name}/versions"),
    _route("POST", "/v1/models/{name}/versions:compose"),
    _route("PATCH", "/v1/models/{name}/versions/{version}"),
    _route("POST", "/v1/models/{name}/versions/{version}/quantize"),
    _route("PATCH", "/v1/models/{name}/versions/{version}/card"),
    _route("PUT", "/v1/models/{name}/aliases/{alias}"),
    _route("DELETE", "/v1/models/{name}/aliases/{alias}"),
    _route("PUT", "/v1/models/{name}/rules"),
    _route("PUT", "/v1/models/{name}/quality"),
    _route("PUT", "/v1/models/{name}/traffic"),
    _route("PUT", "/v1/models/{name}/rollout"),
    _route("POST", "/v1/models/{name}/rollout/promote"),
    _route("POST", "/v1/models/{name}/rollout/abort"),
    _route("PUT", "/v1/models/{name}/release-policy"),
    _route("POST", "/v1/models/{name}/versions/{version}/release"),
    _route("POST", "/v1/models/{name}/versions/{version}/approve"),
    _route("POST", "/v1/models/{name}/versions/{version}/reject"),
    _route("POST", "/v1/models/{name}/rollout/tick"),
    _route("POST", "/v1/models/{name}/pipeline:run"),
    # A monitor run writes its files and may notify and ask for retraining
    _route("POST", "/v1/models/{name}/monitor:run"),
    # Subscriptions name where events go: reading them is an admin's business too
    _route("POST", "/v1/subscriptions"),
    _route("GET", "/v1/subscriptions"),
    _route("DELETE", "/v1/subscriptions/{subscription_id}"),
)

# The writes a predict caller may make: they change no model, alias, rule or policy.
PREDICT_WRITES = (
    _route("POST", "/v1/models/{name}:predict"),
    _route("POST", "/v1/models/{name}/versions/{version}:predict"),
    _route("POST", "/v1/models/{name}/labels/{alias}:predict"),
    _route("POST", "/v1/models/{name}:explain"),
    _route("POST", "/v1/models/{name}/versions/{version}:explain"),
    _route("POST", "/v1/models/{name}/labels/{alias}:explain"),
    _route("POST", "/v1/models/{name}/rules:evaluate"),
    _route("POST", "/v1/models/{name}/quality:check"),
    _route("POST", "/v1/models/{name}/feedback"),
    _route("POST", "/v2/models/{name}/infer"),
    _route("POST", "/v2/models/{name}/versions/{version}/infer"),
)


def needs_admin(method: str, path: str) -> bool:
    """Whether `method path` is one of the registry's writes."""
    return any(m == method.upper() and pattern.match(path) for m, pattern in ADMIN_ROUTES)


def scopes(method: str, path: str) -> list[str]:
    """The JWT scopes any one of which lets a caller through `method path`."""
    return [ADMIN] if needs_admin(method, path) else [PREDICT, ADMIN]
