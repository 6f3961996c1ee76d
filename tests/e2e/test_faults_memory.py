"""`aimass serve` stopped with SIGTERM after registry writes, with a client that never finishes its
request: it stops within seconds, saves what the writes did and leaves no endpoint running."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimass.registry import CATALOG
from tests.e2e.conftest import running_with, serving

pytestmark = pytest.mark.e2e

WRITES = 100
# A stop takes a few seconds here (the grace for requests still running, the last save, the endpoint's
# stop); this is far past that, and far short of the minutes a stop took while moto kept every copy.
STOP_DEADLINE_S = 20


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """A running `aimass serve` (demos registered), its URL and its state dir. Its state dir starts
    empty: this module's server trains the demos, as a first `make serve` does."""
    state_dir = tmp_path_factory.mktemp("faults-memory")
    with serving(state_dir) as (stack, server):
        yield server, stack.url, state_dir


def _saved_summary(state_dir: Path, name: str) -> tuple[dict[str, Any], int]:
    """The model's summary item in the saved state, and how many audit records it has."""
    with zipfile.ZipFile(state_dir / "state" / "state.zip") as archive:
        items = json.loads(archive.read("manifest.json"))["tables"]["aimass-registry"]
    summary = next(i for i in items if i["pk"]["S"] == CATALOG and i["sk"]["S"] == name)
    audits = sum(i["pk"]["S"] == f"MODEL#{name}" and i["sk"]["S"].startswith("AUDIT#") for i in items)
    return summary, audits


def test_sigterm_after_registry_writes_stops_within_seconds_and_saves_them(
    served: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    server, url, state_dir = served
    policies = [{"violations": "reject", "anomalies": "flag"}, {"violations": "flag", "anomalies": "ignore"}]
    # One keep-alive client, still connected when the signal comes.
    with httpx.Client(base_url=url, timeout=60) as client:
        for write in range(WRITES):
            if write % 2:
                answer = client.put("/v1/models/breast-cancer/quality", json=policies[write // 2 % 2])
            else:
                answer = client.put("/v1/models/breast-cancer/aliases/staging", json={"version": 1})
            assert answer.status_code == 200, answer.text
        # A client that sent half a request and went silent: the stop does not wait for it.
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as stuck:
            stuck.sendall(
                b"PUT /v1/models/breast-cancer/quality HTTP/1.1\r\nHost: aimass\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            time.sleep(0.5)  # the request is in the server's hands
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"aimass serve still ran {STOP_DEADLINE_S} s after SIGTERM")
    assert code == 128 + signal.SIGTERM, (state_dir / "serve.log").read_text()
    summary, audits = _saved_summary(state_dir, "breast-cancer")
    assert summary["aliases"]["M"]["staging"] == {"N": "1"}
    saved, last = json.loads(summary["quality_policy"]["S"]), policies[(WRITES - 1) // 2 % 2]
    assert {key: saved[key] for key in last} == last  # the policy's other settings keep their defaults
    assert audits >= WRITES
    assert not running_with(state_dir / "endpoint"), "the emulated endpoint outlived aimass serve"
