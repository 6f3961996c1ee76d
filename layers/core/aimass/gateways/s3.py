"""A bucket's objects by key: the S3 operations the domain uses, S3's NoSuchKey as aimass's
NotFound, and a refusal (no such bucket, access denied) as ObjectRefused."""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aimass import aws
from aimass.errors import NotFound


class KeyMissing(NotFound):
    """No object at the key (S3's NoSuchKey)."""


class ObjectRefused(Exception):
    """S3 would not give the object: the bucket does not exist or this role may not read it. For a
    URI a caller gave, their mistake; for the stack's own bucket, a deployment's."""

    def __init__(self, uri: str, code: str) -> None:
        super().__init__(f"{uri} cannot be read: {code}")
        self.code = code


log = logging.getLogger(__name__)

# The error codes of a refusal, as opposed to S3 failing (throttled, unavailable: raised as they are)
REFUSALS = ("AccessDenied", "NoSuchBucket", "AllAccessDisabled", "403")


@dataclass(frozen=True)
class Head:
    """What HeadObject says of an object that the domain reads: its size and user metadata."""

    size: int
    metadata: dict[str, str]


class Bucket:
    def __init__(self, name: str, client: Any = None) -> None:
        self.name = name
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else aws.client("s3")

    def holding_client(self) -> Bucket:
        """This bucket with its client made now, on this thread. A boto3 session makes clients one
        thread at a time: work handed to other threads takes a bucket made this way."""
        return Bucket(self.name, self.client)

    def uri(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def get(self, key: str, version_id: str | None = None) -> bytes:
        data: bytes = self.stream(key, version_id).read()
        return data

    def stream(self, key: str, version_id: str | None = None) -> IO[bytes]:
        """The object's body as it arrives (never whole in memory unless read so)."""
        s3 = self.client
        try:
            body: IO[bytes] = s3.get_object(Bucket=self.name, Key=key, **_version(version_id))["Body"]
        except s3.exceptions.NoSuchKey as error:
            raise KeyMissing(f"{self.uri(key)} does not exist") from error
        except s3.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in REFUSALS:
                raise ObjectRefused(self.uri(key), code) from error
            raise
        return body

    def head(self, key: str, version_id: str | None = None) -> Head:
        found = self.client.head_object(Bucket=self.name, Key=key, **_version(version_id))
        return Head(found["ContentLength"], found.get("Metadata", {}))

    def exists(self, key: str) -> bool:
        """Whether an object is at the key (one HeadObject; S3 says 404 for a missing key to a caller
        that may list the bucket, 403 otherwise: the 403 is raised, it is not an answer)."""
        s3 = self.client
        try:
            s3.head_object(Bucket=self.name, Key=key)
        except s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def put(self, key: str, body: bytes, content_type: str | None = None, *, checksum: bool = False) -> str:
        """Write the object (with S3's own SHA-256 check of the upload when `checksum`); its URI."""
        extra: dict[str, str] = {}
        if content_type is not None:
            extra["ContentType"] = content_type
        if checksum:
            extra["ChecksumAlgorithm"] = "SHA256"
        self.client.put_object(Bucket=self.name, Key=key, Body=body, **extra)
        return self.uri(key)

    def upload(self, path: Path, key: str, content_type: str | None = None) -> str:
        """A local file to the key, in parts when it is large; its URI."""
        extra = {"ExtraArgs": {"ContentType": content_type}} if content_type is not None else {}
        self.client.upload_file(str(path), self.name, key, **extra)
        return self.uri(key)

    def reading(self, key: str, version_id: str | None = None) -> ReadAhead:
        """The object's body read ahead in a thread of its own while the caller works on what came
        before (closed when done with it)."""
        return ReadAhead(self.stream(key, version_id))

    def writing(self, key: str, content_type: str | None = None) -> ObjectWriter:
        """An object written as it comes: in parts uploaded while the caller goes on writing, made
        the object by commit() and nothing (its parts removed) by abort()."""
        return ObjectWriter(self.client, self.name, key, content_type)

    def download(self, key: str, path: Path, version_id: str | None = None) -> None:
        """The object to a local file, in parts when it is large."""
        self.client.download_file(self.name, key, str(path), ExtraArgs=_version(version_id) or None)

    def keys(self, prefix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            for found in page.get("Contents", []):
                yield found["Key"]

    def folders(self, prefix: str) -> Iterator[str]:
        """The names of the "folders" right under the prefix (common prefixes up to the next `/`)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for found in page.get("CommonPrefixes", []):
                yield found["Prefix"][len(prefix) :].rstrip("/")

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under the prefix, a page at a time."""
        s3 = self.client
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            found = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if found:
                s3.delete_objects(Bucket=self.name, Delete={"Objects": found, "Quiet": True})

    def download_link(self, key: str, expires_s: int) -> str:
        """A URL that reads the object without credentials until it expires."""
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.name, "Key": key}, ExpiresIn=expires_s
            )
        )


def _version(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id else {}


# What the read-ahead thread reads at a time, and how many such blocks it may hold unread: memory
# stays at most this much whatever the object's size.
READ_BLOCK = 1 << 20
READ_AHEAD_BLOCKS = 8


class ReadAhead(io.RawIOBase):
    """A stream's bytes read by a thread of its own into a bounded queue, so that the network (or the
    embedded S3) and the reader's work overlap. An error of the stream is raised to the reader."""

    def __init__(self, body: IO[bytes], block: int = READ_BLOCK, depth: int = READ_AHEAD_BLOCKS) -> None:
        super().__init__()
        self._body = body
        self._block = block
        self._blocks: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._left = memoryview(b"")
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="s3-read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._body.read(self._block)
                self._put(data)
                if not data:
                    return
        except BaseException as error:  # handed to the reader, which raises it
            self._put(error)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._left and not self._ended:
            found = self._blocks.get()
            if isinstance(found, BaseException):
                self._ended = True
                raise found
            self._ended = not found
            self._left = memoryview(found)
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._thread.join()
            self._body.close()
        super().close()


# S3's multipart parts: at least 5 MiB but the last, at most 10,000 of them. 8 MiB (boto3's own
# default) allows objects up to 80 GB; the writer holds at most PARTS_AHEAD parts not yet uploaded.
PART_BYTES = 8 << 20
PARTS_AHEAD = 2


class ObjectWriter(io.RawIOBase):
    """An object written as it comes: each PART_BYTES written becomes a part of a multipart upload,
    uploaded by a thread of its own while the writer goes on. Nothing is at the key until commit()
    (an object smaller than a part is one PutObject then); abort() removes the parts uploaded, so a
    failed writer leaves nothing half-written."""

    def __init__(self, client: Any, bucket: str, key: str, content_type: str | None = None) -> None:
        super().__init__()
        self._client = client
        self.bucket = bucket
        self.key = key
        self._extra = {"ContentType": content_type} if content_type else {}
        self._pending = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._numbered = 0
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(PARTS_AHEAD)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.size = 0
        self.committed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._raise_failure()
        self._pending += data
        self.size += len(data)
        while len(self._pending) >= PART_BYTES:
            self._send(bytes(self._pending[:PART_BYTES]))
            del self._pending[:PART_BYTES]
        return len(data)

    def commit(self) -> str:
        """The object made of what was written; its URI."""
        if self._upload_id is None:
            body = bytes(self._pending)
            self._client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **self._extra)
        else:
            if self._pending:
                self._send(bytes(self._pending))
            self._finish_thread()
            self._raise_failure()
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])},
            )
        self._pending = bytearray()
        self.committed = True
        return f"s3://{self.bucket}/{self.key}"

    def abort(self) -> None:
        """Nothing at the key: the parts uploaded so far removed (S3 keeps them, and bills them, until
        the upload is aborted)."""
        self._pending = bytearray()
        if self._upload_id is None:
            return
        self._finish_thread()
        upload, self._upload_id = self._upload_id, None
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload)
        except Exception as error:  # already gone, or S3 failing: the error that led here matters more
            # The bucket's AbortIncompleteUploads lifecycle rule removes what is left (template.yaml).
            log.warning("could not abort the upload of s3://%s/%s: %s", self.bucket, self.key, error)

    def _send(self, part: bytes) -> None:
        if self._upload_id is None:
            started = self._client.create_multipart_upload(Bucket=self.bucket, Key=self.key, **self._extra)
            self._upload_id = started["UploadId"]
            self._thread = threading.Thread(target=self._upload_parts, name="s3-parts", daemon=True)
            self._thread.start()
        self._numbered += 1
        self._put((self._numbered, part))

    def _put(self, item: tuple[int, bytes] | None) -> None:
        """Queue a part (None: no more), unless the upload thread has stopped on an error."""
        while self._thread is not None and self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        self._raise_failure()

    def _upload_parts(self) -> None:
        while (item := self._queue.get()) is not None:
            number, body = item
            if self._error is not None:
                continue  # drained, not sent: the writer raises the error
            try:
                answer = self._client.upload_part(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
                )
            except BaseException as error:  # raised to the writer on its next write or commit
                self._error = error
                continue
            self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def _finish_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._put(None)
            self._thread.join()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error
