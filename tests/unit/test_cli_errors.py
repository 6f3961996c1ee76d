"""What a script sees from the `aimass` CLI when things go wrong: one line on stderr and an exit code
it can tell apart (docs/cli.md), never a traceback; error text shown as written, brackets included."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aimass import __version__
from aimass.cli import app
from aimass.cli.common import UNREACHABLE, USAGE


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (just bound and let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_api_that_does_not_answer_is_one_line_and_exit_3(closed_port: int) -> None:
    # Given no API on the endpoint
    endpoint = f"http://127.0.0.1:{closed_port}"

    # When a command calls it
    result = CliRunner().invoke(app, ["models", "list", "--endpoint", endpoint])

    # Then it says so in one line, with what it called, and exits 3
    assert result.exit_code == UNREACHABLE
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.strip().splitlines() == [
        f"cannot reach GET {endpoint}/v1/models?detail=true: [Errno 111] Connection refused"
    ]


def test_an_aws_that_does_not_answer_is_one_line_and_exit_3(
    closed_port: int, aws_settings_restored: pytest.MonkeyPatch
) -> None:
    # Given no embedded AWS on the endpoint
    aws_endpoint = f"http://127.0.0.1:{closed_port}"

    # When a command that talks to the AWS runs
    result = CliRunner().invoke(app, ["pipeline", "schedules", "--aws-endpoint", aws_endpoint])

    # Then it says so in one line and exits 3
    assert result.exit_code == UNREACHABLE
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("cannot reach the AWS: ") and aws_endpoint in line


@pytest.fixture
def aws_settings_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The variables a command that works on the AWS sets in this process, and the settings and
    clients it makes from them, put back after the test; one attempt per AWS call (botocore's
    retries of a refused connection only take time here)."""
    from aimass import aws
    from aimass.config import settings

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for variable in ("AIMASS_AWS_ENDPOINT_URL", "AIMASS_STAGE", "AIMASS_AWS_PORT"):
        monkeypatch.setenv(variable, "")
        monkeypatch.delenv(variable)
    yield monkeypatch
    monkeypatch.undo()
    settings.cache_clear()
    aws.reset()


def test_the_aws_port_of_aimass_serve_is_where_commands_look_by_default(
    closed_port: int, aws_settings_restored: pytest.MonkeyPatch
) -> None:
    # Given the embedded AWS moved with AIMASS_AWS_PORT, as `aimass serve` takes it
    aws_settings_restored.setenv("AIMASS_AWS_PORT", str(closed_port))

    # When a command that works on the AWS runs without --aws-endpoint
    result = CliRunner().invoke(app, ["pipeline", "schedules"])

    # Then it called that port (nothing listens on it here)
    assert result.exit_code == UNREACHABLE
    assert f"http://127.0.0.1:{closed_port}/" in result.stderr


def test_batch_takes_its_older_option_name_for_the_aws_endpoint(
    closed_port: int, aws_settings_restored: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("a\n1\n")

    result = CliRunner().invoke(
        app, ["batch", str(rows), "--model", "m", "--s3-endpoint", f"http://127.0.0.1:{closed_port}"]
    )

    assert result.exit_code == UNREACHABLE
    assert f"http://127.0.0.1:{closed_port}/" in result.stderr


def test_error_text_keeps_its_brackets() -> None:
    # When an error message quotes something rich would read as markup
    result = CliRunner().invoke(app, ["pipeline", "run", "m", "--param", "[a-z]+[/b]"])

    # Then it is printed as written, as a usage error
    assert result.exit_code == USAGE
    assert result.stderr.strip() == "--param takes KEY=VALUE, not '[a-z]+[/b]'"


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout == f"aimass {__version__}\n"
