"""Benchmark 10: the local server under load, as `aimass serve` runs it (data capture on).

One sequential keep-alive client first (its throughput is the floor the concurrent run must reach),
then `CONCURRENCY` clients at once sending `REQUESTS` predictions in all. Every answer is checked: its
status, and its prediction ids, which must then all be found in the captured objects (read back from
the embedded S3 after the run): capture may shed load, but only by answering without ids, never by
losing a capture it gave ids for.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import boto3
import httpx

from aimass.local.stack import FAKE_CREDENTIALS
from bench.harness import demo_rows
from bench.http_server import local_server
from bench.report import Table, ms, rate, ratio
from bench.stats import percentile
from gpu_endpoints.process import free_port

MODEL = "breast-cancer"
CONCURRENCY = 64
REQUESTS = 10_000
SEQUENTIAL = 1_000


def _body() -> bytes:
    return json.dumps(demo_rows(MODEL, 1).body).encode()


class Connection:
    """One keep-alive HTTP/1.1 connection sending the same request again and again. A client this
    small costs a fraction of a millisecond of CPU a request: httpx's async client cost about as much
    CPU as the server at 64 connections, and on 2 shared cores it, not the server, set the pace."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base: str) -> Connection:
        url = httpx.URL(base)
        return cls(*await asyncio.open_connection(url.host, url.port))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _request(base: str) -> bytes:
    body = _body()
    host = httpx.URL(base).netloc.decode()
    head = (
        f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _drive(base: str, requests: int, concurrency: int) -> dict[str, Any]:
    request = _request(base)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ids: list[str] = []
    without_ids = 0
    remaining = requests
    connections = [await Connection.open(base) for _ in range(concurrency)]

    async def worker(connection: Connection) -> None:
        nonlocal remaining, without_ids
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            status, body = await connection.send(request)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                found = json.loads(body).get("prediction_ids")
                if found:
                    ids.extend(found)
                else:
                    without_ids += 1

    await connections[0].send(request)  # the server's first request loads the model
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(connection) for connection in connections))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    for connection in connections:
        connection.close()
    ordered = sorted(latencies)
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "answers_without_ids": without_ids,
        "client_cpu_ms_per_request": cpu * 1000 / len(latencies),
        "ids": ids,
    }


def _captured_ids(aws_port: int) -> set[str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{aws_port}",
        region_name="us-east-1",
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="aimass-local", Prefix=f"capture/{MODEL}/"
    ):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket="aimass-local", Key=item["Key"])["Body"].read()
            found |= {json.loads(line)["eventMetadata"]["eventId"] for line in body.splitlines() if line}
    return found


def run(scale: float = 1.0) -> dict[str, Any]:
    aws_port = free_port()
    with local_server(capture=True, aws_port=aws_port) as base:
        sequential = asyncio.run(_drive(base, max(100, int(SEQUENTIAL * scale)), 1))
        concurrent = asyncio.run(_drive(base, max(500, int(REQUESTS * scale)), CONCURRENCY))
        time.sleep(2)  # the capture writer's last objects
        captured = _captured_ids(aws_port)
    for figures in (sequential, concurrent):
        given = figures.pop("ids")
        figures["ids_given"] = len(given)
        figures["ids_lost"] = len(set(given) - captured)
    return {"model": MODEL, "sequential": sequential, "concurrent": concurrent}


def tables(result: dict[str, Any]) -> list[Table]:
    sequential, concurrent = result["sequential"], result["concurrent"]
    table = Table(
        f"`aimass serve` under load: {result['model']}, one instance per request, data capture on",
        ["clients", "requests", "req/s", "p50 (ms)", "p99 (ms)", "p99/p50", "non-200", "no ids", "ids lost"],
        note="Client and server share the machine's cores (the client: one asyncio process). `no ids`: "
        "answers the capture writer shed (answered, not captured); `ids lost`: ids given whose capture "
        "is not in S3.",
    )
    for figures in (sequential, concurrent):
        table.add(
            str(figures["concurrency"]),
            f"{figures['requests']:,}",
            rate(figures["requests_per_s"]),
            ms(figures["p50_ms"]),
            ms(figures["p99_ms"]),
            ratio(figures["p99_ms"] / figures["p50_ms"]),
            str(sum(v for k, v in figures["statuses"].items() if k != "200")),
            str(figures["answers_without_ids"]),
            str(figures["ids_lost"]),
        )
    table.add(
        "concurrent / sequential",
        "",
        ratio(concurrent["requests_per_s"] / sequential["requests_per_s"]),
        "",
        "",
        "",
        "",
        "",
        "",
    )
    return [table]
