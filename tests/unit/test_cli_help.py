"""Every command of the `aimass` CLI explains itself: `--help` works for each group and command."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from aimass.cli import app


def command_paths(group: typer.Typer) -> Iterator[list[str]]:
    root = get_command(group)

    def walk(command: object, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in (getattr(command, "commands", None) or {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(root, [])


@pytest.mark.parametrize("path", list(command_paths(app)), ids=lambda p: " ".join(p) or "aimass")
def test_every_command_has_a_help_page(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])

    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
