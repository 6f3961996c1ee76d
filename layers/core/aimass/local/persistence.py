"""What the local stack keeps across restarts: moto holds everything in memory, so the stack saves the
tables' items and the bucket's objects (latest version of each key, with content type, user metadata
and whether it carried a SHA-256 checksum) into one zip file under the state directory, and puts them
back on the next start. The file is written beside itself and renamed over the old one, so a killed
process leaves the previous save whole. Step Functions executions, SNS subscriptions and the like are
not kept: the stack makes them again from the template at each start."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimass import aws

log = logging.getLogger(__name__)

FILE = "state.zip"
MANIFEST = "manifest.json"


def path_of(state_dir: Path) -> Path:
    return state_dir / "state" / FILE


def forget(state_dir: Path) -> None:
    """Remove the saved state: the next start is empty."""
    path_of(state_dir).unlink(missing_ok=True)


def _encode(value: object) -> object:
    if isinstance(value, bytes):
        return {"__b64__": base64.b64encode(value).decode()}
    raise TypeError(f"cannot save {type(value).__name__}")


def _decode(value: dict[str, Any]) -> object:
    return base64.b64decode(value["__b64__"]) if set(value) == {"__b64__"} else value


def _items(table: str) -> list[dict[str, Any]]:
    pages = aws.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    return [item for page in pages for item in page["Items"]]


def fingerprint(bucket: str, tables: list[str]) -> str:
    """What the state is, cheaply: the tables' items and the objects' keys and ETags."""
    listing = [
        (entry["Key"], entry["ETag"])
        for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for entry in page.get("Contents", [])
    ]
    items = {table: _items(table) for table in tables}
    text = json.dumps([listing, items], default=_encode, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def save(state_dir: Path, bucket: str, tables: list[str]) -> Path:
    """Write the tables' items and the bucket's objects to the state file, atomically. Its path."""
    s3 = aws.client("s3")
    path = path_of(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    objects: list[dict[str, Any]] = []
    # Objects stored as they are (models compress little), the manifest deflated.
    with zipfile.ZipFile(partial, "w") as archive:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                found = s3.get_object(Bucket=bucket, Key=entry["Key"], ChecksumMode="ENABLED")
                name = f"objects/{len(objects)}"
                archive.writestr(name, found["Body"].read())
                objects.append(
                    {
                        "key": entry["Key"],
                        "entry": name,
                        "content_type": found.get("ContentType", "binary/octet-stream"),
                        "metadata": found.get("Metadata", {}),
                        "checksum": "ChecksumSHA256" in found,
                    }
                )
        manifest = {"tables": {table: _items(table) for table in tables}, "objects": objects}
        archive.writestr(MANIFEST, json.dumps(manifest, default=_encode), zipfile.ZIP_DEFLATED)
    with partial.open("rb") as written:
        os.fsync(written.fileno())
    os.replace(partial, path)
    return path


def restore(state_dir: Path, bucket: str, tables: list[str]) -> bool:
    """Put the saved items and objects back (tables and bucket made already); whether there was a
    saved state."""
    path = path_of(state_dir)
    if not path.exists():
        return False
    s3, ddb = aws.client("s3"), aws.client("dynamodb")
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read(MANIFEST), object_hook=_decode)
        for entry in manifest["objects"]:
            extra = {"ChecksumAlgorithm": "SHA256"} if entry["checksum"] else {}
            s3.put_object(
                Bucket=bucket,
                Key=entry["key"],
                Body=archive.read(entry["entry"]),
                ContentType=entry["content_type"],
                Metadata=entry["metadata"],
                **extra,
            )
    for table, items in manifest["tables"].items():
        if table in tables:
            _put_items(ddb, table, items)
    return True


def _put_items(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        batch = items[start : start + 25]
        requests: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in batch]}
        while requests:
            requests = ddb.batch_write_item(RequestItems=requests)["UnprocessedItems"]


@dataclass
class Saver:
    """Saves the state every `interval` seconds from a background thread, and once more at stop;
    a round that finds the state as it last saved it writes nothing."""

    state_dir: Path
    bucket: str
    tables: list[str]
    interval: float = 30.0
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _saved: str = ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aimass-state-saver", daemon=True)
        self._thread.start()

    def save(self) -> None:
        with self._lock:
            now = fingerprint(self.bucket, self.tables)
            if now != self._saved or not path_of(self.state_dir).exists():
                save(self.state_dir, self.bucket, self.tables)
                self._saved = now

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.save()
            except Exception:  # the next round or the stop tries again
                log.exception("saving the local stack's state failed")

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.save()
