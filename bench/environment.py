"""The machine and software a run measured, recorded next to every result."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "onnxruntime",
    "numpy",
    "fastapi",
    "starlette",
    "pydantic",
    "mangum",
    "aws-lambda-powertools",
    "moto",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def git_revision() -> str:
    """The commit measured, with `-dirty` when the working tree had changes."""
    return _git("describe", "--always", "--dirty") or "unknown"


def uncommitted_service_files() -> list[str]:
    """Service code measured that no commit holds: figures from a dirty tree say so."""
    status = _git("status", "--porcelain", "--", "layers", "functions")
    return [line.split(maxsplit=1)[-1] for line in status.splitlines()]


def describe(command: str) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "git": git_revision(),
        "uncommitted_service_files": uncommitted_service_files(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: metadata.version(name) for name in PACKAGES},
        # Other work on the machine shows up in the figures; the load average says how much there was.
        "loadavg_at_start": os.getloadavg(),
    }
