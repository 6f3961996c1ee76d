"""`aimass explain`: a body file, the parameters as options, the answer as a table or as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass.cli.common import FAILED, USAGE
from tests.integration.test_cli import api, cli

__all__ = ["api"]  # the fixture, shared with test_cli


@pytest.fixture
def body(tmp_path: Path, demos: dict[str, Any]) -> Path:
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"instances": demos["breast-cancer"].holdout[:2].tolist()}))
    return path


def test_explain_sends_the_options_as_parameters_and_prints_the_json_answer(
    api: TestClient, body: Path
) -> None:
    answered = cli(
        "explain", "breast-cancer", "--file", str(body), "--label", "champion", "--class", "malignant",
        "--samples", "200", "--seed", "3", "--background", "25", "--json",
    )  # fmt: skip
    assert answered.exit_code == 0, answered.output
    answer = json.loads(answered.stdout)
    assert [item["class"] for item in answer["shap"]] == ["malignant", "malignant"]
    assert (answer["samples"], answer["seed"], answer["background"]["rows"]) == (200, 3, 25)


def test_explain_prints_the_largest_attributions_of_each_instance(api: TestClient, body: Path) -> None:
    answered = cli("explain", "breast-cancer", "--file", str(body), "--version", "1", "--samples", "100")
    assert answered.exit_code == 0, answered.output
    assert "instance 0:" in answered.stdout and "instance 1:" in answered.stdout
    assert "(20 more)" in answered.stdout and "breast-cancer v1: 100 coalitions" in answered.stdout


def test_explain_over_the_budget_exits_1_with_the_apis_reason(
    api: TestClient, body: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMASS_EXPLAIN_MAX_ROWS", "1000")
    from aimass.config import settings

    settings.cache_clear()
    answered = cli("explain", "breast-cancer", "--file", str(body))
    settings.cache_clear()
    assert answered.exit_code == FAILED
    assert "the budget is 1000 rows" in answered.stderr


def test_explain_with_both_a_version_and_a_label_is_a_usage_error(api: TestClient, body: Path) -> None:
    answered = cli("explain", "breast-cancer", "--file", str(body), "--version", "1", "--label", "champion")
    assert answered.exit_code == USAGE
