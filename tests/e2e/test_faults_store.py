"""Faults injected into a running `aimass serve`: its embedded AWS stopped and started again (the
SIGUSR1 / SIGUSR2 debug aid of aimass.local.stack), and a model artifact corrupted in the bucket
through boto3, then restored."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimass.local import demo
from tests.e2e.conftest import Stack, serving
from tests.support import retrained

pytestmark = pytest.mark.e2e

# Short enough that a test waits little for a TTL or a back-off to pass.
SERVER_ENV = {"AIMASS_REGISTRY_TTL_S": "1", "AIMASS_INTEGRITY_RECHECK_S": "2"}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, trained_demos: Path
) -> Iterator[tuple[Stack, subprocess.Popen[bytes]]]:
    """`aimass serve` as tests/e2e/conftest.py starts it, with its process: the signals go to it."""
    with serving(tmp_path_factory.mktemp("e2e-faults-store"), SERVER_ENV, trained_demos) as started:
        yield started


def ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def until(done: Any, seconds: float, failure: str) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(failure)
        time.sleep(0.2)


def refused(aws_url: str) -> bool:
    host, port = aws_url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:  # reset or timed out: the connection met the socket while it was being closed
        return False
    return False


@pytest.fixture
def aws_started_after(served: tuple[Stack, subprocess.Popen[bytes]]) -> Iterator[None]:
    """The embedded AWS serving again after the test, passed or failed: the module's other tests
    use it."""
    yield
    stack, server = served
    server.send_signal(signal.SIGUSR2)
    until(lambda: not refused(stack.aws_url), 30, "the embedded AWS did not start again")


def instances(stack: Stack, name: str) -> dict[str, Any]:
    return {"instances": [demo.load_or_train(name, stack.state_dir).holdout[0].tolist()]}


def predict(stack: Stack, name: str, data: str | None = None) -> httpx.Response:
    """`name`'s answer for a row of the demo `data` (by default the demo named so). A deadline far
    above a normal answer: a request meeting a down AWS must not hang."""
    body = instances(stack, data or name)
    return httpx.post(f"{stack.url}/v1/models/{name}:predict", json=body, timeout=30)


def test_with_the_embedded_aws_stopped_a_served_model_answers_others_are_503_and_it_recovers(
    served: tuple[Stack, subprocess.Popen[bytes]], aws_started_after: None
) -> None:
    stack, server = served
    # Given breast-cancer served once, then the embedded AWS stopped
    assert predict(stack, "breast-cancer").status_code == 200
    server.send_signal(signal.SIGUSR1)
    until(lambda: refused(stack.aws_url), 30, "the embedded AWS kept its port")
    time.sleep(1.5)  # past the registry TTL: the next request asks the registry

    # When breast-cancer is asked again, it answers from what was read
    again = predict(stack, "breast-cancer")
    assert again.status_code == 200 and again.json()["model"]["version"] == 1

    # When digits, never served by this server, is asked: 503 aws_unavailable, Retry-After
    down = predict(stack, "digits")
    assert down.status_code == 503 and down.headers["retry-after"]
    assert down.json()["error"]["code"] == "aws_unavailable"

    # Then readiness is 503 and says why; the log says breast-cancer is served stale, once
    ready = httpx.get(f"{stack.url}/v2/health/ready", timeout=30)
    assert ready.status_code == 503 and "AWS cannot be reached" in ready.json()["reason"]
    time.sleep(1.5)
    assert predict(stack, "breast-cancer").status_code == 200
    log = (stack.state_dir / "serve.log").read_text()
    assert log.count("breast-cancer keeps serving from the registry") == 1, log

    # When the embedded AWS serves again: ready, and digits answers, with no restart
    server.send_signal(signal.SIGUSR2)
    until(lambda: ok(f"{stack.url}/v2/health/ready"), 30, "not ready again after AWS came back")
    assert predict(stack, "digits").status_code == 200


def test_a_corrupted_artifact_is_substituted_said_so_and_serves_again_once_restored(
    served: tuple[Stack, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    stack, _ = served
    # Given bc-faults v1 champion and served, then v2 champion with its bytes corrupted in the bucket
    bc = demo.load_or_train("breast-cancer", stack.state_dir)
    features = ",".join(f.name for f in bc.enrichment.features or [])
    for number, model in ((1, bc.model), (2, retrained(bc.model))):
        path = tmp_path / f"v{number}.onnx"
        path.write_bytes(model)
        pushed = stack.cli(
            "models", "push", "bc-faults", str(path), "--features", features, "--alias", "champion"
        )
        assert pushed.returncode == 0, pushed.stderr
        if number == 1:
            assert predict(stack, "bc-faults", "breast-cancer").json()["model"]["version"] == 1
    s3 = stack.s3()
    listing = s3.list_objects_v2(Bucket="aimass-local", Prefix="models/bc-faults/2/")["Contents"]
    [key] = [o["Key"] for o in listing if o["Key"].endswith(".onnx")]
    good = s3.get_object(Bucket="aimass-local", Key=key)["Body"].read()
    s3.put_object(Bucket="aimass-local", Key=key, Body=b"corrupted")

    # When the champion is asked for: v1 answers, and the answer says v2 was resolved and refused
    answer = predict(stack, "bc-faults", "breast-cancer").json()
    assert answer["model"]["version"] == 1
    assert answer["fallback"]["from"]["version"] == 2
    assert answer["fallback"]["reason"] == "artifact_integrity"

    # Then once the bytes are restored, v2 answers after the back-off, without a restart or a note
    s3.put_object(Bucket="aimass-local", Key=key, Body=good)

    def v2_answers() -> bool:
        body = predict(stack, "bc-faults", "breast-cancer").json()
        return body["model"]["version"] == 2 and "fallback" not in body

    until(v2_answers, 30, "v2 was not checked again after its bytes were restored")
