"""The layers: what goes into them and that their Makefiles build what sam build expects."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from aimass.local.notifications import template_function

from .conftest import REPO, layer_functions

pytestmark = pytest.mark.infra

# In the Lambda runtime already; shipping it would shadow the runtime's copy.
PROVIDED_BY_LAMBDA = {"boto3"}


def requirement_set(lines: list[str]) -> set[tuple[str, frozenset[str], str]]:
    """Requirements compared by meaning: canonical name, extras, specifiers (in any order)."""
    parsed = (Requirement(line) for line in lines)
    return {(canonicalize_name(r.name), frozenset(r.extras), str(r.specifier)) for r in parsed}


def test_runtime_layer_ships_the_package_dependencies_less_boto3() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = requirement_set(pyproject["project"]["dependencies"])
    lines = (REPO / "layers" / "runtime" / "requirements.txt").read_text().splitlines()
    layered = requirement_set([ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()])

    assert layered == {r for r in declared if r[0] not in PROVIDED_BY_LAMBDA}


def requirements_file(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_arrow_layer_ships_exactly_the_parquet_extra() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    layered = requirement_set(requirements_file(REPO / "layers" / "arrow" / "requirements.txt"))

    assert layered == requirement_set(extras["parquet"])
    # The local stack (the `local` extra) reads Parquet with the same pyarrow range as Lambda.
    (local_pyarrow,) = [r for r in requirement_set(extras["local"]) if r[0] == "pyarrow"]
    assert {local_pyarrow} == layered


def test_only_the_batch_functions_carry_the_arrow_layer(template: dict[str, Any]) -> None:
    functions = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    with_arrow = {
        k for k, v in functions.items() if {"Ref": "ArrowLayer"} in v["Properties"].get("Layers", [])
    }

    assert with_arrow == {"BatchFunction", "BatchStepsFunction"}


def test_onnx_layer_ships_the_compress_extra_and_onnx_s_own_ml_dtypes() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    layered = requirement_set(requirements_file(REPO / "layers" / "onnx" / "requirements.txt"))

    # installed --no-deps: onnx's numpy, protobuf and typing_extensions are RuntimeLayer's
    assert {r for r in layered if r[0] != "ml-dtypes"} == requirement_set(extras["compress"])
    assert {r[0] for r in layered} == {"onnx", "ml-dtypes"}
    # The training extra converts with the same onnx range
    (train_onnx,) = [r for r in requirement_set(extras["train"]) if r[0] == "onnx"]
    assert requirement_set(extras["compress"]) == {train_onnx}


def test_only_the_registry_function_carries_the_onnx_layer(template: dict[str, Any]) -> None:
    functions = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    with_onnx = {k for k, v in functions.items() if {"Ref": "OnnxLayer"} in v["Properties"].get("Layers", [])}

    assert with_onnx == {"RegistryFunction"}


def test_layers_are_built_by_their_own_makefile_targets(template: dict[str, Any]) -> None:
    layers = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::LayerVersion"}

    assert set(layers) == {"CoreLayer", "RuntimeLayer", "ArrowLayer", "OnnxLayer"}
    for logical_id, layer in layers.items():
        assert layer["Metadata"]["BuildMethod"] == "makefile"
        makefile = (REPO / layer["Properties"]["ContentUri"] / "Makefile").read_text()
        assert f"\nbuild-{logical_id}:" in makefile, f"{logical_id}: no build-{logical_id} target"
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]


def test_core_layer_build_ships_the_package_without_the_tooling(core_layer: Path) -> None:
    # When sam build runs the CoreLayer target into its artifacts folder (the fixture)
    package = core_layer / "python" / "aimass"

    # Then python/aimass is importable from the layer, without bytecode, the local stack, the CLI or
    # the deploy tool
    assert (package / "__init__.py").is_file()
    for tooling in ("local", "cli", "deploy"):
        assert not (package / tooling).exists(), f"aimass/{tooling} is in the layer"
    assert not list(package.rglob("__pycache__"))
    assert {p.name for p in (core_layer / "python").iterdir()} == {"aimass"}


def module_file(root: Path, module: str) -> Path | None:
    """The file of an aimass module (`aimass.batch.drop`) under root, or None."""
    path = root.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


class Imports(ast.NodeVisitor):
    """The modules an import statement may name, anywhere in a file: at the top, and inside functions
    (the lazy imports, which run long after init). Imports for type checkers only are left out."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.names: list[str] = []

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names += [alias.name for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        package = self.package.split(".")
        base = package[: len(package) - node.level + 1] if node.level else []
        module = ".".join([*base, node.module] if node.module else base)
        # `from aimass.api import deps` imports a module; `from aimass.errors import NotFound` does not
        self.names += [module, *(f"{module}.{alias.name}" for alias in node.names)]


def imported_modules(path: Path, root: Path) -> dict[str, Path]:
    """The aimass modules under root that the file imports, with their files."""
    # Relative imports start from the file's package: aimass.api for api/deps.py and api/__init__.py
    package = ".".join(path.relative_to(root).parts[:-1]) if path.is_relative_to(root) else ""
    found = Imports(package)
    found.visit(ast.parse(path.read_text(), str(path)))
    modules = set()
    for name in found.names:
        parts = name.split(".")
        # importing aimass.batch.drop runs aimass and aimass.batch first
        modules |= {".".join(parts[:n]) for n in range(1, len(parts) + 1) if parts[0] == "aimass"}
    files = {module: module_file(root, module) for module in modules}
    return {module: file for module, file in files.items() if file}


def reached_modules(entries: list[Path], root: Path) -> set[str]:
    """Every aimass module under root that the entry files reach, import by import."""
    reached: set[str] = set()
    todo = list(entries)
    while todo:
        for module, file in imported_modules(todo.pop(), root).items():
            if module not in reached:
                reached.add(module)
                todo.append(file)
    return reached


def test_the_core_layer_holds_every_module_the_zip_functions_import(
    template: dict[str, Any], core_layer: Path
) -> None:
    # Given the handlers of the functions that run on the CoreLayer
    handlers = []
    for logical_id in layer_functions(template, "CoreLayer"):
        found = template_function(logical_id, REPO / "template.yaml")
        handlers.append(found.code_uri / (found.handler.rpartition(".")[0].replace(".", "/") + ".py"))
    assert {"online", "registry", "batch"} <= {h.parent.name for h in handlers}

    # When their imports are followed through the package source, those inside functions too
    reached = reached_modules(handlers, REPO / "layers" / "core")

    # Then the layer holds every module they reach
    assert {"aimass.api.lambda_entry", "aimass.batch.drop", "aimass.batch.parts"} <= reached
    missing = sorted(module for module in reached if module_file(core_layer / "python", module) is None)
    assert not missing, f"imported by a zip function, left out of the layer (layers/core/Makefile): {missing}"
