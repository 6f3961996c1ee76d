"""The template passes the tools DevOps and CI run on it: sam validate --lint, cfn-lint, checkov.

Each tool is slow to start (10-20 s), so each runs once. None of them needs AWS credentials or
the network here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run

pytestmark = pytest.mark.infra


def test_sam_validate_lint_passes(tools: Path, tool_env: dict[str, str]) -> None:
    result = run([tools / "sam", "validate", "--lint", "--template", "template.yaml"], tool_env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_cfn_lint_passes(tools: Path, tool_env: dict[str, str]) -> None:
    result = run([tools / "cfn-lint", "template.yaml"], tool_env)

    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_with_only_the_skips_justified_in_the_template(
    tools: Path, tool_env: dict[str, str]
) -> None:
    # --skip-download: checkov would otherwise fetch guideline links from Prisma Cloud.
    command = ["--framework", "cloudformation", "--quiet", "--compact", "--skip-download"]
    result = run([tools / "checkov", "-f", "template.yaml", *command], tool_env)

    assert result.returncode == 0, result.stdout + result.stderr
