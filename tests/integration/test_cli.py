"""The `aimass` CLI for scripts, against the API in this process (on moto): --json prints what the
API answered, and `quality check` exits 1 when it found problems (docs/cli.md)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aimass.api.app import create_app
from aimass.cli import app
from aimass.cli.common import FAILED, USAGE


@pytest.fixture
def api(registered: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The aimass API in this process, with the demos registered: the CLI's HTTP calls go to it."""
    import httpx

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        monkeypatch.setattr(
            httpx, "request", lambda method, url, timeout=None, **kw: client.request(method, url, **kw)
        )
        yield client


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--endpoint", "http://aimass.test"], catch_exceptions=False)


def training_rows(tmp_path: Path, demos: dict[str, Any]) -> Path:
    """breast-cancer's training rows, its baseline's reference: a CSV with a header."""
    path = tmp_path / "training.csv"
    path.write_bytes(demos["breast-cancer"].reference_csv)
    return path


def far_rows(tmp_path: Path, demos: dict[str, Any]) -> Path:
    """Held-out breast-cancer rows with every value tripled, far from the training data."""
    bc = demos["breast-cancer"]
    names = [f.name for f in bc.enrichment.features]
    path = tmp_path / "far.csv"
    lines = [",".join(names)] + [",".join(str(float(v) * 3) for v in row) for row in bc.holdout[:40]]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_models_list_json_is_the_api_answer(api: TestClient) -> None:
    listed = cli("models", "list", "--json")

    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == api.get("/v1/models?detail=true").json()


def test_quality_policy_json_is_the_api_answer(api: TestClient) -> None:
    shown = cli("quality", "policy", "breast-cancer", "--json")

    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == api.get("/v1/models/breast-cancer/quality").json()


def test_quality_check_of_rows_like_the_baseline_exits_0(
    api: TestClient, demos: dict[str, Any], tmp_path: Path
) -> None:
    checked = cli("quality", "check", "breast-cancer", str(training_rows(tmp_path, demos)), "--json")

    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["violations"] == [] and not any(d["drifted"] for d in report["drift"])


def test_quality_check_that_finds_problems_exits_1_and_still_reports_them(
    api: TestClient, demos: dict[str, Any], tmp_path: Path
) -> None:
    # Given rows far from the training data
    rows = far_rows(tmp_path, demos)

    # When they are checked, for people and for scripts
    shown = cli("quality", "check", "breast-cancer", str(rows))
    as_json = cli("quality", "check", "breast-cancer", str(rows), "--json")

    # Then both exit 1, with the violations in the JSON and in the table, their ranges' brackets kept
    assert shown.exit_code == FAILED and as_json.exit_code == FAILED
    report = json.loads(as_json.stdout)
    description = report["violations"][0]["description"]
    assert "[" in description  # e.g. "36 of 40 values are outside [5.6491, 30.1519]"
    table_text = re.sub(r"[\s│┃]", "", shown.stdout)  # the table wraps cells at the test's width
    assert re.sub(r"\s", "", description) in table_text


def test_quality_check_html_writes_a_page_naming_the_drifted_feature(
    api: TestClient, demos: dict[str, Any], tmp_path: Path
) -> None:
    # Given breast-cancer's training rows with one feature, mean_texture, moved well up
    bc = demos["breast-cancer"]
    names = [f.name for f in bc.enrichment.features]
    shift = names.index("mean_texture")
    rows = tmp_path / "shifted.csv"
    lines = [",".join(names)] + [
        ",".join(str(float(v) * (1.5 if j == shift else 1.0)) for j, v in enumerate(row))
        for row in bc.holdout
    ]
    rows.write_text("\n".join(lines) + "\n")
    page = tmp_path / "quality.html"

    # When the rows are checked with --html
    checked = cli("quality", "check", "breast-cancer", str(rows), "--html", str(page), "--json")

    # Then the check still exits 1 with its JSON, and the page names the drifted feature, with the
    # figures inline and nothing fetched from elsewhere
    assert checked.exit_code == FAILED, checked.output
    drifted = [d["feature"] for d in json.loads(checked.stdout)["drift"] if d["drifted"]]
    assert drifted == ["mean_texture"]
    text = page.read_text()
    assert "drifted features</dt><dd>1 of 30: <code>mean_texture</code>" in text
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) == 1
    assert not re.search(r'(src|href)="(https?:)?//', text)


def test_predict_reads_the_body_from_stdin_with_file_dash(api: TestClient, demos: dict[str, Any]) -> None:
    # Given a request body piped in
    body = json.dumps({"instances": demos["breast-cancer"].holdout[:2].tolist()})

    # When predict reads it from `--file -`
    answered = CliRunner().invoke(
        app,
        ["predict", "breast-cancer", "--file", "-", "--json", "--endpoint", "http://aimass.test"],
        input=body,
    )

    # Then the API's predictions come back, one per row
    assert answered.exit_code == 0, answered.output
    assert len(json.loads(answered.stdout)["predictions"]) == 2


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_body_file_that_is_not_there_is_a_usage_error_naming_it(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "body.json"

    answered = cli(command, "breast-cancer", "--file", str(missing))

    assert answered.exit_code == USAGE
    assert f"--file {missing}: no such file" in answered.stderr


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_body_that_is_not_json_is_a_usage_error_saying_where(command: str, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text("[1, 2")

    answered = cli(command, "breast-cancer", "--file", str(body))

    assert answered.exit_code == USAGE
    assert "the request body is not valid JSON: Expecting ',' delimiter: line 1" in answered.stderr


def test_models_unalias_and_archive_print_the_api_answer_as_json(api: TestClient) -> None:
    # Given the demo model's v1 is champion
    # When archiving it is asked first, it is refused (exit 1) naming the alias
    refused = cli("models", "archive", "breast-cancer", "1")
    assert refused.exit_code == FAILED and "champion" in refused.output
    # Then with the alias removed, archiving succeeds, and --undo brings it back
    removed = cli("models", "unalias", "breast-cancer", "champion", "--json")
    assert removed.exit_code == 0, removed.output
    assert json.loads(removed.stdout)["previous_version"] == 1
    archived = cli("models", "archive", "breast-cancer", "1", "--json")
    assert archived.exit_code == 0, archived.output
    assert json.loads(archived.stdout)["latest_active_version"] is None
    back = cli("models", "archive", "breast-cancer", "1", "--undo")
    assert back.exit_code == 0 and "latest not archived: v1" in back.stdout


def test_with_an_admin_key_the_cli_sends_it_on_registry_writes_and_the_api_key_elsewhere(
    registered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server with an API key and an admin key, and a CLI that has only the API key
    from tests.conftest import reset_caches

    monkeypatch.setenv("AIMASS_API_KEY", "caller-key")
    monkeypatch.setenv("AIMASS_ADMIN_KEY", "admin-key")
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        import httpx

        monkeypatch.setattr(
            httpx, "request", lambda method, url, timeout=None, **kw: client.request(method, url, **kw)
        )
        monkeypatch.delenv("AIMASS_ADMIN_KEY")
        # When it moves an alias, Then the server refuses it, naming the admin scope
        refused = cli("models", "unalias", "breast-cancer", "champion")
        assert refused.exit_code == FAILED
        assert "403 forbidden" in refused.output and "aimass/admin" in refused.output
        # When AIMASS_ADMIN_KEY is set for the CLI, Then the write goes through and reads still work
        monkeypatch.setenv("AIMASS_ADMIN_KEY", "admin-key")
        assert cli("models", "unalias", "breast-cancer", "champion").exit_code == 0
        assert cli("models", "list", "--json").exit_code == 0


def test_models_card_set_then_card_json_html_and_summary(api: TestClient, tmp_path: Path) -> None:
    # Given card fields set from the CLI
    set_ = cli(
        "models", "card-set", "breast-cancer", "1", "--owner", "ana", "--limits", "adults only", "--json"
    )
    assert set_.exit_code == 0, set_.output
    assert json.loads(set_.stdout)["revision"] == 1

    # When the card is read without a version (the champion), as JSON, as a page and as a summary
    as_json = cli("models", "card", "breast-cancer", "--json")
    page = tmp_path / "card.html"
    as_html = cli("models", "card", "breast-cancer", "--html", str(page))
    summary = cli("models", "card", "breast-cancer", "1")

    # Then each shows the card of v1 with those fields
    card = json.loads(as_json.stdout)
    assert card["model_overview"]["model_version"] == 1 and card["model_overview"]["model_owner"] == "ana"
    assert as_html.exit_code == 0 and '<section id="limits">' in page.read_text()
    assert "adults only" in page.read_text()
    assert summary.exit_code == 0 and "adults only" in summary.stdout and "ana" in summary.stdout


def test_models_card_set_refuses_a_bad_rating_with_its_field_and_nothing_to_set(api: TestClient) -> None:
    bad = cli("models", "card-set", "breast-cancer", "1", "--risk-rating", "Severe")
    empty = cli("models", "card-set", "breast-cancer", "1")

    assert bad.exit_code == FAILED and "risk_rating" in bad.output
    assert empty.exit_code == 2 and "at least one field" in empty.output
