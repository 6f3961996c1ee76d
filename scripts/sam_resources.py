"""The logical ids `sam build` builds, read from template.yaml: zip functions and layers, or image functions.

    python scripts/sam_resources.py zip      # functions packaged as zips, and layers: no Docker needed
    python scripts/sam_resources.py image    # functions packaged as images: sam build needs Docker

The Makefile's `build` excludes the image functions (`sam build --exclude ...`), so a function added
to the template is built, or left to `build-images`, without editing the Makefile.
Runs on any Python with PyYAML (the tools' venv has it); it does not import aimass.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, ...), whose values are not needed here."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _resources(template: Path) -> dict[str, Any]:
    resources: dict[str, Any] = yaml.load(template.read_text(), Loader=_CfnLoader)["Resources"]
    return resources


def _package_type(resource: dict[str, Any]) -> str:
    return str((resource.get("Properties") or {}).get("PackageType", "Zip"))


def image_functions(template: Path = TEMPLATE) -> list[str]:
    """Functions with `PackageType: Image`: SAM builds them with Docker."""
    return [
        logical_id
        for logical_id, resource in _resources(template).items()
        if resource["Type"] in FUNCTION_TYPES and _package_type(resource) == "Image"
    ]


def zip_resources(template: Path = TEMPLATE) -> list[str]:
    """Zip functions and layers: SAM builds them without Docker (layers with their Makefiles)."""
    return [
        logical_id
        for logical_id, resource in _resources(template).items()
        if resource["Type"] in LAYER_TYPES
        or (resource["Type"] in FUNCTION_TYPES and _package_type(resource) != "Image")
    ]


def main(argv: list[str]) -> int:
    kinds = {"zip": zip_resources, "image": image_functions}
    if len(argv) != 1 or argv[0] not in kinds:
        print(f"usage: {Path(__file__).name} zip|image", file=sys.stderr)
        return 2
    print(" ".join(kinds[argv[0]]()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
