"""docs/deploy.md's IAM policies split the routes as the scope list does: the predict policy allows
every predict route and no admin route, the admin policy every admin route and nothing else."""

from __future__ import annotations

import json
import re

import pytest

from aimass.api.scopes import needs_admin

from .conftest import REPO, Route
from .test_routes import sample

pytestmark = pytest.mark.infra

ARN_PREFIX = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/$default/"


def policy(sid: str) -> list[re.Pattern[str]]:
    """The Resource ARNs of the statement `sid` in docs/deploy.md, as regexes (IAM's `*` is any text)."""
    text = (REPO / "docs" / "deploy.md").read_text()
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        for statement in json.loads(block)["Statement"]:
            if statement["Sid"] == sid:
                assert statement["Action"] == "execute-api:Invoke"
                return [
                    re.compile("^" + re.escape(arn).replace(r"\*", ".*") + "$")
                    for arn in statement["Resource"]
                ]
    raise AssertionError(f"no {sid} policy in docs/deploy.md")


def allows(patterns: list[re.Pattern[str]], method: str, path: str) -> bool:
    return any(p.match(f"{ARN_PREFIX}{method}{path}") for p in patterns)


def app_routes(routes: list[Route]) -> list[tuple[str, str]]:
    """Each app route as (METHOD, path), from the app's OpenAPI document (the template's greedy
    routes hide the predict paths)."""
    from aimass.api.app import create_app

    found = [(m.upper(), path) for path, item in create_app().openapi()["paths"].items() for m in item]
    assert {path for _, path in found} >= {r.path for r in routes if "+" not in r.path}
    return found


def test_the_predict_policy_allows_each_predict_route_and_no_admin_route(routes: list[Route]) -> None:
    predict = policy("AimassPredict")
    for method, path in app_routes(routes):
        if path == "/health":
            continue
        assert allows(predict, method, sample(path)) is not needs_admin(method, path), f"{method} {path}"


def test_the_admin_policy_allows_exactly_the_admin_routes(routes: list[Route]) -> None:
    admin = policy("AimassAdmin")
    for method, path in app_routes(routes):
        assert allows(admin, method, sample(path)) is needs_admin(method, path), f"{method} {path}"
