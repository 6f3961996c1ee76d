"""Registry events in the local stack: what the table's stream, the publisher function, the events bus
and the webhooks rule do in AWS (docs/events.md), done by one background thread of `aimass serve`.

moto keeps a table's stream records but runs no publisher on them, and the stream would hold every
write (live counts included) for as long as the process lives; so the feed reads the audit records
themselves. Every POLL_S seconds it reads each model's audit records of the last WINDOW_S seconds
(a record's time is taken just before its write, so one written late is still found), publishes
those it has not seen on the local bus with the publisher function's code (aimass.events), and hands
each to the webhooks' one delivery implementation (aimass.webhooks) on a worker thread: a slow or
broken receiver delays no change and no other event. Records older than the feed (a kept state put
back at start) are not published again.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from aimass import aws, events, webhooks, wiring
from aimass.contracts.common import iso_utc, utcnow
from aimass.events import AUDIT_PREFIX, MODEL_PREFIX, Event

log = logging.getLogger(__name__)

POLL_S = 1.0
WINDOW_S = 60.0
DELIVERY_WORKERS = 4


class AuditFeed:
    def __init__(self, table: str, bus: str | None, poll_s: float = POLL_S) -> None:
        self.table = table
        self.bus = bus
        self.poll_s = poll_s
        self.since = utcnow()
        self._seen: dict[tuple[str, str], str] = {}  # an audit item's key -> its record's time
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(DELIVERY_WORKERS, thread_name_prefix="aimass-webhooks")

    def _query(self, **kwargs: Any) -> list[dict[str, Any]]:
        ddb = aws.client("dynamodb")
        items: list[dict[str, Any]] = []
        while True:
            page = ddb.query(TableName=self.table, **kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _new_records(self) -> list[dict[str, Any]]:
        window = iso_utc(datetime.now(UTC) - timedelta(seconds=WINDOW_S))
        start = max(window, self.since)
        self._seen = {key: at for key, at in self._seen.items() if at >= start}
        names = self._query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "MODELS"}},
            ProjectionExpression="sk",
        )
        found = []
        for name in names:
            items = self._query(
                KeyConditionExpression="pk = :pk AND sk BETWEEN :from AND :to",
                ExpressionAttributeValues={
                    ":pk": {"S": MODEL_PREFIX + name["sk"]["S"]},
                    ":from": {"S": AUDIT_PREFIX + start},
                    ":to": {"S": AUDIT_PREFIX + "\uffff"},
                },
            )
            for item in items:
                key = (item["pk"]["S"], item["sk"]["S"])
                if key not in self._seen:
                    self._seen[key] = item["sk"]["S"][len(AUDIT_PREFIX) :]
                    found.append(item)
        return sorted(found, key=lambda item: item["sk"]["S"])

    def poll(self) -> list[Event]:
        """One round: the new audit records' events, published and handed to delivery."""
        found = [events.event_of(item) for item in self._new_records()]
        if found and self.bus:
            events.publish(self.bus, found)  # what it does not take is logged: webhooks go on
        for event in found:
            self._pool.submit(_deliver, event)
        return found

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_s):
            try:
                self.poll()
            except Exception:  # the embedded AWS stopped (SIGUSR1), a bad record: the next round
                log.exception("registry events: a round failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aimass-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _deliver(event: Event) -> None:
    try:
        webhooks.deliver(
            event.detail_type, event.detail, wiring.registry().list_subscriptions(), wiring.latest_version
        )
    except Exception:
        log.exception("webhooks: event %s not delivered", event.detail.event_id)


def create_bus(name: str) -> None:
    """The template's AimassEventBus, in the embedded EventBridge."""
    client = aws.client("events")
    try:
        client.create_event_bus(Name=name)
    except client.exceptions.ResourceAlreadyExistsException:
        return
