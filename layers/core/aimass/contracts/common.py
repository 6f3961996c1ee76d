"""What every contract shares: the name patterns, how a time is written, and how an answer names
the version that gave it."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


def iso_utc(at: datetime) -> str:
    """A time as every record and answer writes it: UTC, to the millisecond, with a Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> str:
    return iso_utc(datetime.now(UTC))


class ModelRef(BaseModel):
    name: str
    version: int
    backend: str
