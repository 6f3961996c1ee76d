"""The captured lines of a model's window: `capture/<model>/<yyyy>/<mm>/<dd>/<HH>/*.jsonl` of each
hour the window touches (aimass.capture writes them), newest hour first, each line read as (version,
inputs, output, hour). Shadow lines (kept under `shadow/`, or marked `"variant": "shadow"`) are not
the served traffic and are passed over. An object or a line that is not a capture line of this model
(not JSON Lines, another model's, without a version or inputs) is skipped and counted, never fatal:
anyone who can write to the bucket can put anything there."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic_core

from aimass.capture import PREFIX, SHADOW_PART, hour_folder
from aimass.contracts.common import iso_utc
from aimass.contracts.monitoring import since_seconds
from aimass.gateways.s3 import Bucket, KeyMissing

__all__ = ["Line", "Tally", "Window", "captured", "since_seconds"]


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def ending(cls, end: datetime, seconds: float) -> Window:
        return cls(end - timedelta(seconds=seconds), end)

    def hours(self) -> list[datetime]:
        """The hours the window touches, newest first."""
        hour = self.end.replace(minute=0, second=0, microsecond=0)
        found = []
        while hour > self.start - timedelta(hours=1):
            found.append(hour)
            hour -= timedelta(hours=1)
        return found

    def holds(self, at: str) -> bool:
        """Whether an inferenceTime (aimass.contracts.common.iso_utc text, or any ISO time) is in it."""
        if len(at) == 24 and at.endswith("Z"):
            return iso_utc(self.start) <= at <= iso_utc(self.end)
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            return False
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        return self.start <= when <= self.end

    def describe(self) -> dict[str, Any]:
        return {
            "start": iso_utc(self.start),
            "end": iso_utc(self.end),
            "seconds": round((self.end - self.start).total_seconds(), 3),
        }


def hour_prefix(model: str, hour: datetime) -> str:
    return hour_folder(model, f"{hour:%Y%m%d%H}")


@dataclass
class Tally:
    """What a run read: objects and lines, those skipped (not capture lines of the model), shadow
    lines passed over and lines of the hours outside the window itself."""

    objects: int = 0
    lines: int = 0
    skipped_objects: int = 0
    skipped_lines: int = 0
    shadow_lines: int = 0
    outside_window: int = 0


@dataclass(frozen=True)
class Line:
    version: int
    inputs: Any
    output: Any
    hour: str  # the line's inferenceTime to the hour, "2026-12-06T16"


def captured(bucket: Bucket, model: str, window: Window, tally: Tally) -> Iterator[Line]:
    """The served lines of `model` in `window`, newest hour first (within an hour, in key order)."""
    for hour in window.hours():
        for key in sorted(bucket.keys(hour_prefix(model, hour))):
            if f"/{SHADOW_PART}/" in key.removeprefix(f"{PREFIX}{model}/"):
                continue
            body = _body(bucket, key)
            if body is None:
                tally.skipped_objects += 1
                continue
            tally.objects += 1
            for text in body.splitlines():
                if not text.strip():
                    continue
                tally.lines += 1
                yield from _line(text, model, window, tally)


def _body(bucket: Bucket, key: str) -> str | None:
    """An object's text: None when it is not a JSON Lines object we can read (another format, not
    UTF-8, gone since it was listed)."""
    if not key.endswith((".jsonl", ".jsonl.gz")):
        return None
    try:
        data = bucket.get(key)
    except KeyMissing:
        return None
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return data.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError):
        return None


def _line(text: str, model: str, window: Window, tally: Tally) -> Iterator[Line]:
    try:
        event = pydantic_core.from_json(text)
        meta, data = event["eventMetadata"], event["captureData"]
        if meta.get("variant") == SHADOW_PART:
            tally.shadow_lines += 1
            return
        if meta.get("model", model) != model:
            raise ValueError("another model's line")
        version = meta["modelVersion"]
        if type(version) is not int and not (isinstance(version, str) and version.isdigit()):
            raise ValueError("no version")
        at = meta["inferenceTime"]
        inputs = pydantic_core.from_json(data["endpointInput"]["data"])
        output = pydantic_core.from_json(data["endpointOutput"]["data"])
        if not isinstance(at, str) or not isinstance(inputs, dict | list):
            raise ValueError("no time or inputs")
    except (ValueError, KeyError, TypeError, AttributeError):
        tally.skipped_lines += 1
        return
    if not window.holds(at):
        tally.outside_window += 1
        return
    yield Line(int(version), inputs, output, at[:13])
