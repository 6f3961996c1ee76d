"""Every route the apps serve reaches, through API Gateway, the function that serves it."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from aimass.api.app import create_app
from tests.support import REPO

from .conftest import Route

pytestmark = pytest.mark.infra
FUNCTIONS = {"online": "OnlineFunction", "registry": "RegistryFunction"}


def gateway_pattern(path: str) -> re.Pattern[str]:
    """An API Gateway route path as a regex: {x} is one segment, {x+} the rest of the path."""
    pattern = re.sub(r"\{[^}/]+\+\}", ".+", path)
    pattern = re.sub(r"\{[^}/]+\}", "[^/]+", pattern)
    return re.compile(f"^{pattern}$")


def sample(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def gateway_route(routes: list[Route], method: str, path: str) -> Route | None:
    """The route API Gateway picks: an exact path first, then the most specific pattern."""
    matching = [r for r in routes if r.method in (method, "ANY") and gateway_pattern(r.path).match(path)]
    return min(matching, key=lambda r: ("+" in r.path, -len(r.path)), default=None)


@pytest.mark.parametrize("part", sorted(FUNCTIONS))
def test_every_app_route_is_routed_to_its_function(part: str, routes: list[Route]) -> None:
    served = create_app([part]).openapi()["paths"]
    assert served
    for app_path, operations in served.items():
        for method in operations:
            picked = gateway_route(routes, method.upper(), sample(app_path))
            assert picked is not None, f"{method} {app_path} has no route in template.yaml"
            assert picked.function == FUNCTIONS[part], f"{method} {app_path} goes to {picked}"


def test_any_other_method_on_a_custom_method_reaches_a_function_that_says_post(routes: list[Route]) -> None:
    """A GET on `x:predict` lands (through API Gateway) on a function whose app answers 405 with
    `Allow: POST`, not API Gateway's 404 nor the registry's "model 'x:predict' is not registered"."""
    part_of = {function: part for part, function in FUNCTIONS.items()}
    verbs = [p for p in create_app().openapi()["paths"] if ":" in p.rsplit("/", 1)[-1]]
    assert {"/v1/models/{name}:predict", "/v1/models/{name}/pipeline:run"} <= set(verbs)
    for app_path in verbs:
        for method in ("GET", "PUT", "DELETE"):
            picked = gateway_route(routes, method, sample(app_path))
            assert picked is not None, f"{method} {app_path} has no route in template.yaml"
            answered = TestClient(create_app([part_of[picked.function]])).request(method, sample(app_path))
            assert (answered.status_code, answered.headers["allow"]) == (405, "POST"), (method, app_path)
            assert answered.json()["error"]["code"] == "method_not_allowed"


def test_the_route_table_in_deploy_md_is_the_templates(routes: list[Route]) -> None:
    section = (REPO / "docs" / "deploy.md").read_text().split("## Routes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+) (\S+)` \| (\w+) \|", section, re.MULTILINE))
    names = {function: part for part, function in FUNCTIONS.items()}
    assert documented == {(r.method, r.path, names[r.function]) for r in routes}
