"""Model artifacts in S3 (`models/<name>/<version>/`) and their local cache, checked by sha256; any
file the service keeps by its s3:// URI."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from aimass.errors import IntegrityError, NotFound
from aimass.gateways.s3 import Bucket, KeyMissing


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_prefix(name: str, version: int) -> str:
    return f"models/{name}/{version}/"


def parse_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def put(bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    return Bucket(bucket).put(key, data, content_type, checksum=True)


def get(uri: str) -> bytes:
    bucket, key = parse_uri(uri)
    try:
        return Bucket(bucket).get(key)
    except KeyMissing as error:
        raise NotFound(f"artifact {uri} does not exist") from error


def exists(uri: str) -> bool:
    bucket, key = parse_uri(uri)
    return Bucket(bucket).exists(key)


def verified(uri: str, expected_sha256: str) -> bytes:
    """The artifact's bytes, or IntegrityError when they are not the bytes registered."""
    data = get(uri)
    actual = sha256(data)
    if actual != expected_sha256:
        raise IntegrityError(
            f"artifact {uri} has sha256 {actual[:12]}…, registered {expected_sha256[:12]}…; it is refused",
            [{"loc": ["artifact_uri"], "message": "sha256 mismatch", "type": "sha256_mismatch"}],
        )
    return data


def cached_path(uri: str, expected_sha256: str, cache_dir: Path) -> Path:
    """A local copy named by its hash. A cached file is re-hashed before use: /tmp outlives a deploy."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{expected_sha256}.onnx"
    if path.exists() and sha256(path.read_bytes()) == expected_sha256:
        return path
    data = verified(uri, expected_sha256)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".part")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
    return path
