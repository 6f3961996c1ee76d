"""Every route the apps serve reaches, through API Gateway, the function that serves it."""

from __future__ import annotations

import re

import pytest

from aimass.api.app import create_app

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
