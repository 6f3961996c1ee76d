"""A bucket's objects by key: the S3 operations the domain uses, S3's NoSuchKey as aimass's
NotFound, and a refusal (no such bucket, access denied) as ObjectRefused."""

from __future__ import annotations

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
