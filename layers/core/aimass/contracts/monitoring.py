"""Monitor runs (docs/monitoring.md): starting one, and a run's summary as summary.json holds it and
the API answers it."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictFloat, StrictInt, StrictStr, field_validator

from aimass.contracts.common import Contract

MONITOR_RUN_PATTERN = r"^[0-9]{8}T[0-9]{9}Z-[0-9a-f]{6}$"
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# The longest window a run reads: a run is about recent traffic.
MAX_WINDOW_S = 31 * 86400


def since_seconds(since: str | float) -> float:
    """A window's length: seconds, or text such as "90m", "24h", "7d" (ValueError otherwise)."""
    if isinstance(since, int | float) and not isinstance(since, bool):
        seconds = float(since)
    else:
        found = _SINCE.match(str(since))
        if found is None:
            raise ValueError(f"{since!r} is not a duration: seconds, or a number with s, m, h or d (24h)")
        seconds = float(found[1]) * _UNITS[found[2]]
    if not 0 < seconds <= MAX_WINDOW_S:
        raise ValueError(f"a window is more than 0 s and at most {MAX_WINDOW_S // 86400} days")
    return seconds


class MonitorRunRequest(Contract):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{}, {"since": "24h"}, {"since": 3600}]}
    )

    # Strict: `true` is not a window of 1 s
    since: StrictStr | StrictInt | StrictFloat = Field(
        default="24h", description="the window, ending now: seconds, or a number with s, m, h or d"
    )

    @field_validator("since")
    @classmethod
    def _duration(cls, value: str | float) -> str | float:
        since_seconds(value)
        return value

    @property
    def seconds(self) -> float:
        return since_seconds(self.since)


VersionStatus = Literal["ok", "drift", "insufficient_data", "no_baseline"]


class MonitoredVersion(Contract):
    """A version's result in a run: judged (`ok`, `drift`) with its figures, or why not."""

    model_config = ConfigDict(extra="allow")

    version: int
    status: VersionStatus
    rows: int
    reason: str | None = Field(None, description="why the version was not judged")
    drifted_features: list[str] = Field(default_factory=list)
    features_checked: list[str] = Field(default_factory=list)
    features_skipped: list[dict[str, str]] = Field(
        default_factory=list, description="features left out, with why (personal data)"
    )
    drift_score: float | None = Field(None, description="the share of the checked features that drifted")
    max_psi: float | None = None
    prediction_drift: dict[str, Any] | None = None
    violations: int | None = Field(None, description="items of its constraint_violations.json")
    anomaly_rate: float | None = None
    flag_rate: float | None = Field(None, description="the share of rows with a constraint violation")
    live_accuracy: dict[str, Any] | None = Field(
        None, description="its labelled predictions so far (feedback)"
    )
    rows_by_hour: dict[str, int] | None = None
    flagged_by_hour: dict[str, int] | None = Field(
        None, description="per hour of the window, the rows with a constraint violation"
    )
    anomalies_by_hour: dict[str, int] | None = Field(
        None, description="per hour of the window, the anomalous rows (with an anomaly model)"
    )
    files: dict[str, str] | None = None


class MonitorSummary(Contract):
    """A run's summary.json: its window, what it read and skipped, each version's result, the outcome
    and what was done about it."""

    model_config = ConfigDict(extra="allow")

    model: str
    run: str
    status: Literal["succeeded", "failed", "unfinished"]
    outcome: Literal[
        "drift", "no_drift", "insufficient_data", "no_baseline", "no_data", "failed", "unfinished"
    ]
    window: dict[str, Any] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    rows: int | None = None
    truncated: bool | None = Field(None, description="the run read max_rows rows (the newest) and stopped")
    objects: int | None = None
    skipped_objects: int | None = None
    lines: int | None = None
    skipped_lines: int | None = None
    versions: list[MonitoredVersion] = Field(default_factory=list)
    actions: dict[str, Any] | None = None
    error: str | None = None


class MonitorRunList(Contract):
    runs: list[MonitorSummary]
