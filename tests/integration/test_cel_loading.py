"""The seam aimass.rules uses to load CEL without its command-line tool."""

from __future__ import annotations

import subprocess
import sys


def test_rules_load_the_cel_extension_without_its_cli_dependencies() -> None:
    code = (
        "import sys, aimass.rules as r; "
        "print(r.cel.compile('1 < 2').execute(r.cel.Context({})), 'prompt_toolkit' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "False"]


def test_the_cel_package_can_still_be_imported_after_the_rules() -> None:
    code = "import aimass.rules as r, cel; print(cel.Context is r.cel.Context, cel.evaluate('1 + 1', {}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.split() == ["True", "2"]
