"""What every contract shares: the name patterns, how a time is written, and how an answer names
the version that gave it."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


def iso_utc(at: datetime) -> str:
    """A time as every record and answer writes it: UTC, to the millisecond, with a Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> str:
    return iso_utc(datetime.now(UTC))


class Contract(BaseModel):
    """The base of every contract. pydantic builds a model's validator and serializer when the model
    is first used, not when its class is defined (`defer_build`): a function pays only for the
    contracts it uses, and the online function's cold start uses a few of the hundred-odd
    (docs/design.md, "Contracts are built when first used")."""

    model_config = ConfigDict(defer_build=True)


class ModelRef(Contract):
    name: str
    version: int
    backend: str
