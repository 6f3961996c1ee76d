"""The layering rule (docs/architecture.md), read from the imports in the code, lazy ones included:
the domain never imports the edges (the HTTP API, the CLI, the local stack); only the edges and the
wiring read the settings; only the gateways and adapters talk to AWS's SDK; the gateways import
nothing of the domain; the protocol package imports nothing but numpy and the standard library; the
inference server imports nothing of aimass but the protocol package."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGE = REPO / "layers" / "core" / "aimass"
# What serves requests or drives the service from outside: these may import the domain, never the
# other way round.
EDGES = ("aimass.api", "aimass.cli", "aimass.local", "aimass.deploy")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[str]:
    """Every module a file imports, at its top or inside a function (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import; the project imports by absolute name")
            assert node.module is not None
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def modules(root: Path, package: str) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


DOMAIN = {name: path for name, path in modules(PACKAGE.parent, "aimass").items() if not within(name, EDGES)}


@pytest.mark.parametrize("name", sorted(DOMAIN))
def test_domain_modules_never_import_the_api_the_cli_or_the_local_stack(name: str) -> None:
    wrong = sorted({found for found in imports(DOMAIN[name]) if within(found, EDGES)})
    assert not wrong, f"{name} imports {', '.join(wrong)}"


# Who reads the settings (aimass.config): the edges, the wiring that builds the process's parts and
# the settings values the domain takes, and the client factory. The domain gets values.
SETTINGS_READERS = ("aimass.config", "aimass.wiring", "aimass.aws", *EDGES)


@pytest.mark.parametrize("name", sorted(n for n in DOMAIN if not within(n, SETTINGS_READERS)))
def test_only_the_edges_and_the_wiring_read_the_settings(name: str) -> None:
    wrong = sorted({found for found in imports(DOMAIN[name]) if within(found, ("aimass.config",))})
    assert not wrong, f"{name} imports {', '.join(wrong)}: take the values as parameters (aimass.wiring)"


# Who talks to AWS's SDK: the client factory, the gateways, the registry (the DynamoDB adapter), the
# wiring (the SageMaker Runtime client it hands the backend), the SageMaker backend (its errors) and
# the edges. The domain calls a gateway.
AWS_ADAPTERS = (
    "aimass.aws",
    "aimass.gateways",
    "aimass.registry",
    "aimass.wiring",
    "aimass.serving.backends.sagemaker",
    *EDGES,
)
AWS_SDK = ("boto3", "botocore", "aimass.aws")


@pytest.mark.parametrize("name", sorted(n for n in DOMAIN if not within(n, AWS_ADAPTERS)))
def test_only_the_gateways_and_adapters_talk_to_aws(name: str) -> None:
    wrong = sorted({found for found in imports(DOMAIN[name]) if within(found, AWS_SDK)})
    assert not wrong, f"{name} imports {', '.join(wrong)}: go through aimass.gateways"


@pytest.mark.parametrize("name", sorted(n for n in DOMAIN if within(n, ("aimass.gateways",))))
def test_the_gateways_import_nothing_of_the_domain(name: str) -> None:
    allowed = ("aimass.gateways", "aimass.aws", "aimass.errors")
    wrong = sorted(
        found
        for found in imports(DOMAIN[name])
        if within(found, ("aimass",)) and found != "aimass" and not within(found, allowed)
    )
    assert not wrong, f"{name} imports {', '.join(wrong)}"


def third_party(found: str) -> bool:
    top = found.split(".")[0]
    return top not in sys.stdlib_module_names and top != "aimass"


@pytest.mark.parametrize("name", sorted(n for n in DOMAIN if within(n, ("aimass.protocol",))))
def test_the_protocol_package_imports_only_numpy_and_itself(name: str) -> None:
    found = set(imports(DOMAIN[name]))
    outside = sorted(f for f in found if third_party(f) and f.split(".")[0] != "numpy")
    of_aimass = sorted(f for f in found if f.startswith("aimass.") and not within(f, ("aimass.protocol",)))
    assert not outside and not of_aimass, f"{name} imports {', '.join(outside + of_aimass)}"


SERVER = modules(REPO, "gpu_endpoints")


@pytest.mark.parametrize("name", sorted(SERVER))
def test_the_inference_server_imports_nothing_of_aimass_but_the_protocol(name: str) -> None:
    wrong = sorted(
        found
        for found in imports(SERVER[name])
        if within(found, ("aimass",)) and not within(found, ("aimass.protocol",)) and found != "aimass"
    )
    assert not wrong, f"{name} imports {', '.join(wrong)}"
