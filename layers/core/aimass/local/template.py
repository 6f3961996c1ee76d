"""Reading template.yaml, so the local stack builds its AWS resources from the template's own properties."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[4]


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, ...) read as their long forms."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def template_path() -> Path:
    return Path(os.environ.get("AIMASS_TEMPLATE", REPO_ROOT / "template.yaml"))


@cache
def load(path: Path | None = None) -> dict[str, Any]:
    with open(path or template_path()) as handle:
        return yaml.load(handle, Loader=_CfnLoader)


def resource_properties(logical_id: str, path: Path | None = None) -> dict[str, Any]:
    return dict(load(path)["Resources"][logical_id].get("Properties", {}))
