"""Helpers the test layers share (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"


class Clock:
    """A clock a test moves by hand: `clock.now += 6`."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def error_of(response: Any) -> dict[str, Any]:
    """The API's error object of a response, which must be JSON."""
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]  # type: ignore[no-any-return]


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())  # type: ignore[no-any-return]


def retrained(model: bytes) -> bytes:
    """The same graph in other bytes (another sha256), as a retrained model's file would be."""
    import onnx

    proto = onnx.load_from_string(model)
    proto.doc_string = "retrained"
    return bytes(proto.SerializeToString())


def binary_input(name: str, shape: list[int], datatype: str, size: int | str) -> dict[str, Any]:
    """A V2 input whose data comes as `size` raw bytes after the JSON header (the binary tensor data
    extension; a str `size` is one a refusal test sends)."""
    return {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}


def binary_request(header: dict[str, Any], *data: bytes) -> tuple[bytes, dict[str, str]]:
    """A V2 request with the binary tensor data extension, laid out as the specification says: the
    JSON header, then each binary input's raw bytes in input order; and the HTTP headers that say it
    is one and where its JSON ends."""
    text = json.dumps(header).encode()
    return text + b"".join(data), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(text)),
    }


class Receiver:
    """A webhook receiver on 127.0.0.1 (a real HTTP server on a thread): it records each request's
    headers and body and answers the next of `statuses` (200 once they run out). A context manager;
    `url` is where it listens."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.arrived:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def first(
        self, wanted: Callable[[dict[str, str], bytes], bool], timeout: float = 60
    ) -> tuple[dict[str, str], bytes]:
        """The first request that is `wanted`, once it has arrived (a test fails when none has after
        `timeout` s)."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: any(wanted(*r) for r in self.requests), timeout), (
                f"none of the {len(self.requests)} webhook requests that arrived is the one awaited"
            )
            return next(r for r in self.requests if wanted(*r))

    def wait_for(self, count: int, timeout: float = 60) -> list[tuple[dict[str, str], bytes]]:
        """The requests once `count` have arrived (a test fails when they have not after `timeout` s)."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout), (
                f"{len(self.requests)} of {count} webhook requests arrived"
            )
            return list(self.requests)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def prometheus_samples(text: str) -> Samples:
    """Every sample of a /metrics answer by (name, labels), read with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def added(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a sample rose between two scrapes (a sample not there yet counts as 0)."""
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)
