"""Fixtures for the template checks: template.yaml as data, the template tools and how to run them."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aimass.local.template import load

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
TOOLS_BIN = REPO / ".venv-tools" / "bin"
TOOL_NAMES = ("sam", "cfn-lint", "checkov", "python")


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yaml as plain dicts and lists, intrinsics in their long form ({"Ref": ...})."""
    return load(path)


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def core_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CoreLayer as `sam build` builds it: its artifacts folder, with python/aimass in it."""
    built = tmp_path_factory.mktemp("core-layer")
    result = subprocess.run(
        ["make", "-C", "layers/core", "build-CoreLayer", f"ARTIFACTS_DIR={built}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return built


def layer_functions(template: dict[str, Any], layer: str) -> list[str]:
    """The logical ids of the template's functions that have the layer."""
    return [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        and {"Ref": layer} in resource["Properties"].get("Layers", [])
    ]


@pytest.fixture(scope="session")
def tools() -> Path:
    """The template tools' bin folder (.venv-tools, made by `make infra` / `make test`)."""
    missing = [name for name in TOOL_NAMES if not os.access(TOOLS_BIN / name, os.X_OK)]
    if missing:
        pytest.fail(
            f"template tools missing from {TOOLS_BIN}: {', '.join(missing)}. "
            "Create them with `make infra` (or `make .venv-tools/.installed`), "
            "from tests/infra/requirements-tools.txt.",
            pytrace=False,
        )
    return TOOLS_BIN


@pytest.fixture(scope="session")
def tool_env() -> dict[str, str]:
    """Environment for the tools: offline, no telemetry, and no way to find real credentials."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        SAM_CLI_TELEMETRY="0",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
    )
    return env


def run(
    command: list[str | Path], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def walk(value: Any) -> Iterator[Any]:
    """Every dict and list inside value, value included."""
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        yield from walk(child)


def resource_references(value: Any) -> set[str]:
    """Logical ids named by Ref, Fn::GetAtt and Fn::Sub's ${Id} / ${Id.Attr} anywhere in value."""
    found = set()
    for node in walk(value):
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("Ref"), str):
            found.add(node["Ref"])
        if "Fn::GetAtt" in node:
            target = node["Fn::GetAtt"]
            found.add(target.split(".", 1)[0] if isinstance(target, str) else target[0])
        if "Fn::Sub" in node:
            sub = node["Fn::Sub"]
            text, local = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
            names = {m.split(".", 1)[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
            found |= {n for n in names if n not in local}
    return {name for name in found if not name.startswith("AWS::")}


def sub_strings(value: Any) -> list[str]:
    """The template strings of every Fn::Sub in value."""
    subs = (node["Fn::Sub"] for node in walk(value) if isinstance(node, dict) and "Fn::Sub" in node)
    return [sub if isinstance(sub, str) else sub[0] for sub in subs]


@dataclass(frozen=True)
class Route:
    function: str  # logical id of the function behind the route
    event: str
    method: str  # as in the template: GET, POST, ANY, ...
    path: str

    @property
    def openapi_method(self) -> str:
        return "x-amazon-apigateway-any-method" if self.method.upper() == "ANY" else self.method.lower()

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.function}.{self.event})"


@pytest.fixture(scope="session")
def routes(template: dict[str, Any]) -> list[Route]:
    """Every HttpApi event of every function in the template."""
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event_id, event in resource["Properties"].get("Events", {}).items():
            if event["Type"] == "HttpApi":
                props = event["Properties"]
                found.append(Route(logical_id, event_id, props["Method"], props["Path"]))
    return found


def sam_translate(tools: Path, tool_env: dict[str, str], cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The template after the SAM transform, once per case (`parameters`, optional `artifact`)."""
    result = run(
        [tools / "python", REPO / "tests" / "infra" / "sam_translate.py", TEMPLATE],
        tool_env,
        stdin=json.dumps(cases),
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


@pytest.fixture(scope="session")
def translated(tools: Path, tool_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The template as CloudFormation sees it after the SAM transform, per named case."""
    cases = {
        "iam": {"parameters": {"AuthMode": "iam"}},
        "jwt": {
            "parameters": {
                "AuthMode": "jwt",
                "JwtIssuer": "https://issuer.example.com",
                "JwtAudience": "aimass-clients",
            }
        },
        # the same template, built twice with different code: as after a change in layers/core
        "rebuilt": {"parameters": {"AuthMode": "iam"}, "artifact": "rebuilt"},
    }
    return dict(zip(cases, sam_translate(tools, tool_env, list(cases.values())), strict=True))
