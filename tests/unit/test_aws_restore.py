"""What a SnapStart restore does to the AWS clients (aws.reconnect): kept, their connections new, and the
role's credentials read in the hook rather than by the first request. Against a loopback HTTP server
that plays both DynamoDB and Lambda's container credentials endpoint, counting the connections and the
credential reads."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aimass import aws
from aimass.config import settings

# botocore refreshes credentials that expire within 15 minutes when they are next used.
REFRESH_WINDOW = timedelta(minutes=15)
# How long after their first read the first credentials enter that window: the snapshot's, gone stale.
STALE_AFTER_S = 3.0


class Endpoint(ThreadingHTTPServer):
    """DynamoDB (any POST answers an empty ListTables) and a container credentials endpoint (GET): each
    connection, each credentials read, and the access key each DynamoDB call was signed with."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.connections = 0
        self.credential_reads: list[str] = []
        self.signed_with: list[str] = []
        self.first_expiry = datetime.now(UTC) + REFRESH_WINDOW + timedelta(seconds=STALE_AFTER_S)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one handler a connection, however many requests
    server: Endpoint

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_GET(self) -> None:
        reads = self.server.credential_reads
        key = f"ROLEKEY{len(reads) + 1}"
        reads.append(key)
        expiry = self.server.first_expiry if len(reads) == 1 else datetime.now(UTC) + timedelta(hours=6)
        self.answer(
            "application/json",
            {
                "AccessKeyId": key,
                "SecretAccessKey": "secret",
                "Token": "token",
                "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        authorization = self.headers.get("Authorization", "")
        self.server.signed_with.append(authorization.split("Credential=")[1].split("/")[0])
        self.answer("application/x-amz-json-1.0", {"TableNames": []})

    def answer(self, content_type: str, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    server = Endpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AIMASS_AWS_ENDPOINT_URL", server.url)
    settings.cache_clear()
    aws.reset()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        aws.reset()
        settings.cache_clear()


def test_after_a_restore_the_clients_are_kept_and_their_next_call_opens_a_new_connection(
    endpoint: Endpoint,
) -> None:
    dynamodb = aws.client("dynamodb")
    dynamodb.list_tables()
    dynamodb.list_tables()
    assert endpoint.connections == 1  # kept alive between calls, as in the snapshot

    aws.reconnect()
    dynamodb.list_tables()

    # The pooled connection did not survive a restore: the call after it opens its own
    assert aws.client("dynamodb") is dynamodb
    assert endpoint.connections == 2


def test_a_restore_reads_stale_container_credentials_again_before_the_first_request(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given SnapStart's credentials: the role's, from the container endpoint, none in the environment
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{endpoint.url}/credentials")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "token")
    dynamodb = aws.client("dynamodb")  # init: the credentials are read once, with the client
    assert endpoint.credential_reads == ["ROLEKEY1"]
    # And those credentials near their expiry by the time of the restore, as a snapshot's do
    time.sleep(max(0.0, (endpoint.first_expiry - REFRESH_WINDOW - datetime.now(UTC)).total_seconds()) + 0.2)

    aws.reconnect()
    assert endpoint.credential_reads == ["ROLEKEY1", "ROLEKEY2"]
    dynamodb.list_tables()

    # Then the first call after the restore reads no credentials and is signed with the new ones
    assert endpoint.credential_reads == ["ROLEKEY1", "ROLEKEY2"]
    assert endpoint.signed_with == ["ROLEKEY2"]
