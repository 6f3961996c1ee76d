"""The local stack as a user starts it (`aimass serve`), once per test module that drives it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimass.local.stack import FAKE_CREDENTIALS
from gpu_endpoints.process import free_port
from tests.support import REPO

AIMASS = Path(sys.executable).parent / "aimass"


@dataclass
class Stack:
    url: str
    aws_url: str
    state_dir: Path
    env: dict[str, str]

    def s3(self) -> Any:
        """A boto3 client of the embedded S3, as a user points one at it (any credentials)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AIMASS), *args, "--endpoint", self.url],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="session")
def trained_demos(state_dir: Path, demos: dict[str, Any]) -> Path:
    """The demo models the session trained (tests/conftest.py), the heavy network too, as `aimass
    serve` keeps them in its state dir: a server started with them finds them there, as a user's
    second start does, instead of training them again (about 3 s a start)."""
    from aimass.local import demo

    demo.gpu_network(state_dir)
    return state_dir / "demo"


@contextmanager
def serving(
    state_dir: Path, settings: dict[str, str] | None = None, demos: Path | None = None
) -> Iterator[tuple[Stack, subprocess.Popen[bytes]]]:
    """`aimass serve` as a user starts it, on free ports, with its own state dir and these settings
    on top of the environment (less any AIMASS_/AWS_ one of the test's own): the stack and its process
    once /health answers; stopped with SIGTERM afterwards, unless the test stopped it. With `demos`
    (`trained_demos`), the state dir starts with those trained demo models; without, it trains them."""
    if demos is not None:
        shutil.copytree(demos, state_dir / "demo")
    port, aws_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMASS_", "AWS_"))} | {"COLUMNS": "200"}
    command = [str(AIMASS), "serve", "--port", str(port), "--aws-port", str(aws_port)]
    with (state_dir / "serve.log").open("w") as log:
        server = subprocess.Popen(
            [*command, "--state-dir", str(state_dir)],
            cwd=REPO,
            env=env | (settings or {}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while not _healthy(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("aimass serve did not come up:\n" + (state_dir / "serve.log").read_text())
                time.sleep(0.2)
            yield Stack(url, f"http://127.0.0.1:{aws_port}", state_dir, env), server
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, trained_demos: Path) -> Iterator[Stack]:
    state_dir = tmp_path_factory.mktemp("e2e-state")
    # Files over 50 kB go through the batch state machine, in parts of 50 rows
    in_parts = {"AIMASS_BATCH_MAP_THRESHOLD_BYTES": "50000", "AIMASS_BATCH_PART_ROWS": "50"}
    with serving(state_dir, in_parts, trained_demos) as (started, _):
        yield started
    # Stopping `aimass serve` (SIGTERM) stops the emulated SageMaker endpoint it started.
    assert not running_with(state_dir / "endpoint"), "the emulated endpoint outlived aimass serve"
    # ...and saves what the session did, for the next start (aimass.local.persistence).
    assert (state_dir / "state" / "state.zip").stat().st_size > 0, "aimass serve kept no state"


def running_with(argument: Path) -> list[str]:
    """The processes whose command line mentions `argument` (Linux's /proc; none elsewhere)."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if str(argument).encode() in (process / "cmdline").read_bytes():
                found.append(process.name)
        except OSError:  # ended meanwhile
            pass
    return found
