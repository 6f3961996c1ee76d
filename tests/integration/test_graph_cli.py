"""`aimass models compose` against the API in this process (on moto): an ensemble from the options, a
switch from a YAML file, and options that give no one graph refused before any call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from aimass import wiring
from aimass.cli.common import USAGE
from aimass.registration import register_version
from tests.integration.test_cli import api, cli
from tests.support import retrained

__all__ = ["api"]  # the fixture, shared with test_cli


def second_version(demos: dict[str, Any]) -> None:
    demo = demos["breast-cancer"]
    register_version(
        wiring.registry(), "aimass-test", "breast-cancer", retrained(demo.model), "t", demo.enrichment
    )


def test_compose_registers_a_weighted_ensemble_and_points_an_alias_at_it(
    api: TestClient, demos: dict[str, Any]
) -> None:
    second_version(demos)
    made = cli(
        "models", "compose", "breast-cancer", "--ensemble", "breast-cancer@champion,breast-cancer@2",
        "--weights", "2,1", "--combine", "vote", "--alias", "challenger", "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    record = json.loads(made.stdout)
    assert record["graph"]["spec"] == {
        "kind": "ensemble",
        "members": ["breast-cancer@champion", "breast-cancer@2"],
        "combine": "vote",
        "weights": [2.0, 1.0],
    }
    assert api.get("/v1/models/breast-cancer").json()["aliases"]["challenger"] == record["version"]


def test_compose_reads_a_switch_from_yaml(api: TestClient, demos: dict[str, Any], tmp_path: Path) -> None:
    second_version(demos)
    spec = tmp_path / "switch.yaml"
    spec.write_text(
        "branches:\n"
        "  - when: input.mean_radius > 15.0\n"
        "    model: breast-cancer@2\n"
        "default: breast-cancer@1\n"
    )
    made = cli("models", "compose", "breast-cancer", "--switch", str(spec), "--description", "by size")
    assert made.exit_code == 0, made.output
    assert "v3, a switch of breast-cancer@2 → v2, breast-cancer@1 → v1" in made.stdout
    assert api.get("/v1/models/breast-cancer/versions/3").json()["description"] == "by size"


def test_compose_refuses_options_that_give_no_one_graph(api: TestClient, tmp_path: Path) -> None:
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"kind": "switch", "branches": [], "default": "a@1"}))
    for args in (
        [],
        ["--ensemble", "a@1,b@1", "--sequence", str(spec)],
        ["--sequence", str(spec)],
        ["--switch", str(spec), "--weights", "1,2"],
    ):
        refused = cli("models", "compose", "breast-cancer", *args)
        assert refused.exit_code == USAGE, (args, refused.output)
