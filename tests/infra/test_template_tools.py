"""The template passes the tools DevOps and CI run on it: sam validate --lint, cfn-lint, checkov.

Each tool is slow to start (10-20 s), so each runs once, the three at the same time. None of them
needs AWS credentials or the network here.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from .conftest import run

pytestmark = pytest.mark.infra


# --skip-download: checkov would otherwise fetch guideline links from Prisma Cloud.
CHECKOV = ["-f", "template.yaml", "--framework", "cloudformation", "--quiet", "--compact", "--skip-download"]
COMMANDS = {
    "sam": ["validate", "--lint", "--template", "template.yaml"],
    "cfn-lint": ["template.yaml"],
    "checkov": CHECKOV,
}


@pytest.fixture(scope="module")
def checked(tools: Path, tool_env: dict[str, str]) -> Iterator[dict[str, Future[CompletedProcess[str]]]]:
    """Each tool run on the template, all three started at once: each test waits for its own."""
    with ThreadPoolExecutor(max_workers=len(COMMANDS)) as pool:
        yield {tool: pool.submit(run, [tools / tool, *args], tool_env) for tool, args in COMMANDS.items()}


def test_sam_validate_lint_passes(checked: dict[str, Future[CompletedProcess[str]]]) -> None:
    result = checked["sam"].result()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_cfn_lint_passes(checked: dict[str, Future[CompletedProcess[str]]]) -> None:
    result = checked["cfn-lint"].result()

    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_with_only_the_skips_justified_in_the_template(
    checked: dict[str, Future[CompletedProcess[str]]],
) -> None:
    result = checked["checkov"].result()

    assert result.returncode == 0, result.stdout + result.stderr
