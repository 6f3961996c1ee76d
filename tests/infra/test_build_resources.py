"""What `make build` builds without Docker and what it leaves to `make build-images`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import REPO

pytestmark = pytest.mark.infra

SCRIPT = REPO / "scripts" / "sam_resources.py"
FUNCTION = "AWS::Serverless::Function"
LAYER = "AWS::Serverless::LayerVersion"


def sam_resources(kind: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), kind], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.split()


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sam_resources", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_image(resource: dict[str, Any]) -> bool:
    return resource["Properties"].get("PackageType") == "Image"


def test_build_covers_every_zip_function_and_layer_and_no_image_function(template: dict[str, Any]) -> None:
    # Given the template's functions and layers
    resources = template["Resources"]
    layers = {i for i, r in resources.items() if r["Type"] == LAYER}
    zip_functions = {i for i, r in resources.items() if r["Type"] == FUNCTION and not is_image(r)}
    images = {i for i, r in resources.items() if r["Type"] == FUNCTION and is_image(r)}

    # When the build script lists what make build builds and what it leaves to make build-images
    built, excluded = sam_resources("zip"), sam_resources("image")

    # Then make build builds each zip function and layer once, and only the image functions are left
    assert sorted(built) == sorted(layers | zip_functions)
    assert sorted(excluded) == sorted(images)
    assert {"CoreLayer", "RuntimeLayer", "ArrowLayer", "OnlineFunction"} <= set(built)
    assert "PipelineFunction" in excluded


def test_a_function_added_to_the_template_is_built_without_editing_the_makefile(tmp_path: Path) -> None:
    # Given a template with a new zip function and a new image function (short-form tags included)
    template = tmp_path / "template.yaml"
    new_resources = (
        "  NewZipFunction:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n      CodeUri: functions/new/\n      Role: !GetAtt NewRole.Arn\n"
        "  NewImageFunction:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n      PackageType: Image\n"
    )
    source = (REPO / "template.yaml").read_text()
    assert source.count("\nOutputs:\n") == 1
    template.write_text(source.replace("\nOutputs:\n", f"\n{new_resources}\nOutputs:\n"))

    # When the script reads it
    module = script()

    # Then the zip function is built by make build and the image function by make build-images
    assert "NewZipFunction" in module.zip_resources(template)
    assert "NewZipFunction" not in module.image_functions(template)
    assert "NewImageFunction" in module.image_functions(template)
    assert "NewImageFunction" not in module.zip_resources(template)
