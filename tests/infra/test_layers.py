"""The layers: what goes into them and that their Makefiles build what sam build expects."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO

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


def test_layers_are_built_by_their_own_makefile_targets(template: dict[str, Any]) -> None:
    layers = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::LayerVersion"}

    assert set(layers) == {"CoreLayer", "RuntimeLayer", "ArrowLayer"}
    for logical_id, layer in layers.items():
        assert layer["Metadata"]["BuildMethod"] == "makefile"
        makefile = (REPO / layer["Properties"]["ContentUri"] / "Makefile").read_text()
        assert f"\nbuild-{logical_id}:" in makefile, f"{logical_id}: no build-{logical_id} target"
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]


def test_core_layer_build_ships_the_package_without_the_local_stack(tmp_path: Path) -> None:
    # When sam build runs the CoreLayer target into its artifacts folder
    result = subprocess.run(
        ["make", "-C", "layers/core", "build-CoreLayer", f"ARTIFACTS_DIR={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then python/aimass is importable from the layer, without the local stack or bytecode
    assert result.returncode == 0, result.stdout + result.stderr
    package = tmp_path / "python" / "aimass"
    assert (package / "__init__.py").is_file()
    assert not (package / "local").exists()
    assert not list(package.rglob("__pycache__"))
    assert {p.name for p in (tmp_path / "python").iterdir()} == {"aimass"}
