"""Data capture: what each answered online request took and gave, kept to attach ground truth to.

A JSON Lines object per batch of captured requests, `capture/<model>/<yyyy>/<mm>/<dd>/<HH>/<object>.jsonl`
(UTC), one line per instance of the requests it holds, in the shape of SageMaker data capture:

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "{\\"mean_radius\\": 17.99, ...}", "encoding": "JSON"},
                     "endpointOutput": {..., "mode": "OUTPUT", "data": "{\\"label\\": \\"benign\\", ...}"}},
     "eventMetadata": {"eventId": <prediction id>, "inferenceTime": "2026-11-23T12:22:05.123Z",
                       "model": "breast-cancer", "modelVersion": 1, "protocol": "v1"},
     "eventVersion": "0"}

Inputs are as the model saw them, keyed by feature name (else by input name), and nothing else: a
V1 object's keys that are not features are never written. A personal (`pii`) feature's values are
erased or tokenised (aimass.privacy), here, on the writer's thread, off the request's path. Outputs
are the V1 prediction (for V2, the graph's outputs shaped as V1 would answer them). While a rollout is under
way, `eventMetadata` also says which `variant` of the traffic policy answered.

A shadow version's answers (aimass.serving.shadow) are lines of the same shape, with `"variant":
"shadow"` and the shadow's `modelVersion`, and the SAME `eventId` as the served line of the same
instance. They are kept apart, under `capture/<model>/shadow/<yyyy>/<mm>/<dd>/<HH>/<object>.jsonl`,
the hour being the served prediction id's: a reader joins them to the served lines by `eventId`,
looking in the same hour under `shadow/`. Nothing that reads the served lines (feedback by id) sees
them.

A prediction id, `<model>:<yyyymmddHH>:<object>:<line>`, names its capture object and line, so
feedback finds it with one GET. Requests arriving together share an object (CaptureWriter says when),
written from a small thread pool: a request never waits for S3 (the Lambda entry waits for them once
the response is built, before the invocation ends).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from aimass.contracts.common import iso_utc
from aimass.contracts.registry import Signature
from aimass.gateways.s3 import Bucket, KeyMissing
from aimass.serving import codecs
from aimass.serving.pipeline import Answered

log = logging.getLogger(__name__)

PREFIX = "capture/"
CONTENT_TYPE = "application/jsonlines"


@dataclass(frozen=True)
class PredictionId:
    model: str
    hour: str  # UTC yyyymmddHH of the request
    request: str  # uuid4 hex: the capture object (one request's, or a batch of requests')
    index: int  # the line in the object

    def __str__(self) -> str:
        return f"{self.model}:{self.hour}:{self.request}:{self.index}"

    @classmethod
    def parse(cls, text: str) -> PredictionId:
        """An id as contracts.PREDICTION_ID_PATTERN checks it (ValueError otherwise)."""
        model, hour, request, index = text.split(":")
        if len(hour) != 10 or not hour.isdigit() or len(request) != 32:
            raise ValueError(f"not a prediction id: {text!r}")
        return cls(model, hour, request, int(index))

    @property
    def key(self) -> str:
        return capture_key(self.model, self.hour, self.request)


# Where a shadow version's lines go, under the model's capture prefix.
SHADOW_PART = "shadow"


def hour_folder(model: str, hour: str, part: str = "") -> str:
    """Where a model's captured objects of an hour (`YYYYMMDDHH`) are: capture/<model>/[<part>/]
    <yyyy>/<mm>/<dd>/<HH>/."""
    folder = f"{model}/{part}/" if part else f"{model}/"
    return f"{PREFIX}{folder}{hour[:4]}/{hour[4:6]}/{hour[6:8]}/{hour[8:10]}/"


def capture_key(model: str, hour: str, request: str, part: str = "") -> str:
    return f"{hour_folder(model, hour, part)}{request}.jsonl"


@dataclass(frozen=True)
class Captured:
    """One captured prediction, read back."""

    prediction_id: str
    version: int
    inputs: dict[str, Any]
    output: Any
    at: str


def _plain(tensor: Any) -> list[Any]:
    """A tensor as JSON values: float32 as the shortest decimal that reads back as the same float32
    (0.1, not 0.10000000149011612), NaN (a null feature) as None."""
    if not isinstance(tensor, np.ndarray):
        return list(tensor)
    if tensor.dtype.kind == "f":
        values: np.ndarray = tensor.astype(str).astype(np.float64) if tensor.dtype.itemsize < 8 else tensor
        missing = np.isnan(values)
        if missing.any():
            values = values.astype(object)
            values[missing] = None
        return list(values.tolist())
    return list(tensor.tolist())


def input_rows(
    signature: Signature, feeds: dict[str, Any], count: int, given: list[Any] | None = None
) -> list[dict[str, Any]]:
    """Each instance's inputs as the model saw them: keyed by feature name, else by input name. A
    tabular model's instances as given (V1: objects or rows, checked) are its inputs, exactly as
    sent; otherwise they are read back from the tensors."""
    if signature.features:
        names = [f.name for f in signature.features]
        if given is not None:
            return [
                {n: row.get(n) for n in names}
                if isinstance(row, dict)
                else dict(zip(names, row, strict=True))
                for row in given
            ]
        return [dict(zip(names, row, strict=True)) for row in _plain(feeds[signature.inputs[0].name])]
    columns = {name: _plain(tensor) for name, tensor in feeds.items()}
    return [{name: column[i] for name, column in columns.items()} for i in range(count)]


def _json(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a model's NaN or infinity, written as null like the API does
        return json.dumps(json.loads(json.dumps(value), parse_constant=lambda _: None), separators=(",", ":"))


def lines(answered: Answered, ids: list[str], at: datetime) -> bytes:
    """The capture object of an answered request, one line per instance."""
    record = answered.version
    if answered.predictions is not None:
        outputs = answered.predictions
    else:
        outputs = codecs.v1_predictions(record.signature, answered.outputs or {}, answered.instances)
    inputs = answered.masker.rows(
        input_rows(record.signature, answered.feeds, answered.instances, answered.given)
    )
    meta: dict[str, Any] = {
        "inferenceTime": iso_utc(at),
        "model": record.name,
        "modelVersion": record.version,
    }
    if answered.variant is not None:
        meta["variant"] = answered.variant
    out = []
    for prediction_id, row, output in zip(ids, inputs, outputs, strict=True):
        out.append(
            _json(
                {
                    "captureData": {
                        "endpointInput": {
                            "observedContentType": "application/json",
                            "mode": "INPUT",
                            "data": _json(row),
                            "encoding": "JSON",
                        },
                        "endpointOutput": {
                            "observedContentType": "application/json",
                            "mode": "OUTPUT",
                            "data": _json(output),
                            "encoding": "JSON",
                        },
                    },
                    "eventMetadata": {"eventId": prediction_id, **meta, "protocol": answered.protocol},
                    "eventVersion": "0",
                }
            )
        )
    return ("\n".join(out) + "\n").encode()


def read(bucket: str, key: str) -> dict[str, Captured]:
    """The predictions of one capture object by prediction id; none when it does not exist."""
    try:
        body = Bucket(bucket).get(key)
    except KeyMissing:
        return {}
    found = {}
    for line in body.splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        meta, data = event["eventMetadata"], event["captureData"]
        found[meta["eventId"]] = Captured(
            meta["eventId"],
            int(meta["modelVersion"]),
            json.loads(data["endpointInput"]["data"]),
            json.loads(data["endpointOutput"]["data"]),
            meta["inferenceTime"],
        )
    return found


@dataclass
class _Batch:
    """The capture object being filled for one model: the requests it holds, one line per instance."""

    model: str
    hour: str
    name: str
    bucket: Bucket
    jobs: list[tuple[Answered, list[str], datetime]]
    lines: int = 0
    part: str = ""  # SHADOW_PART: a shadow version's lines

    @property
    def key(self) -> str:
        return capture_key(self.model, self.hour, self.name, self.part)

    @property
    def slot(self) -> str:
        """The open batch it is, of its model's: the served lines' or the shadow's."""
        return f"{self.model}/{self.part}"


class CaptureWriter:
    """Capture for the request pipeline: names a request's predictions and writes them off its path.

    Requests for one model share a capture object until it holds `max_lines` lines or is `max_age_s`
    old (or the hour turns, or `flush` is called): a busy server PUTs one object per batch of requests
    instead of one per request, which is what kept it from keeping up (bench/RESULTS.md, "under
    load"). An id names its object and line, so feedback still finds it with one GET. The Lambda
    entry flushes at the end of every invocation: there, one object per request, as before.

    At most `max_pending_lines` lines wait to be written; past that a request is answered uncaptured
    and without ids (counted in `shed`, logged) rather than queue without bound. A failed write is
    logged; its ids then stay unknown to feedback."""

    def __init__(
        self,
        bucket: str,
        sample_fraction: float = 1.0,
        *,
        max_lines: int = 1000,
        max_age_s: float = 0.2,
        max_pending_lines: int = 50_000,
        workers: int = 2,
        draw: Callable[[], float] = random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.bucket = bucket
        self.sample_fraction = sample_fraction
        self.max_lines = max_lines
        self.max_age_s = max_age_s
        self.max_pending_lines = max_pending_lines
        self.workers = workers
        self.draw = draw
        self.now = now
        self.shed = 0
        self.pending_lines = 0
        # Reentrant: a write that is done before its callback is added runs the callback (which takes
        # the lock) at once, on the thread that sealed the batch with the lock held.
        self._lock = threading.RLock()
        self._open: dict[str, _Batch] = {}
        # Writes in flight, each with its batch's part ("" served lines, SHADOW_PART a shadow's)
        self._pending: dict[Future[None], str] = {}
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, answered: Answered) -> list[str] | None:
        if self.sample_fraction < 1.0 and self.draw() >= self.sample_fraction:
            return None
        at = self.now()
        hour, model, count = at.strftime("%Y%m%d%H"), answered.version.name, answered.instances
        with self._lock:
            batch = self._batch_for(model, hour, count)
            if batch is None:
                return None
            ids = [str(PredictionId(model, hour, batch.name, batch.lines + i)) for i in range(count)]
            batch.jobs.append((answered, ids, at))
            batch.lines += count
            self.pending_lines += count
        return ids

    def shadow(self, answered: Answered, ids: list[str]) -> None:
        """Capture a shadow version's answer under the ids of the served answer it shadowed (one per
        instance), in the served ids' hour under `shadow/` (aimass.serving.shadow calls it)."""
        if len(ids) != answered.instances:
            return
        hour, model = PredictionId.parse(ids[0]).hour, answered.version.name
        with self._lock:
            batch = self._batch_for(model, hour, answered.instances, SHADOW_PART)
            if batch is None:
                return
            batch.jobs.append((answered, ids, self.now()))
            batch.lines += answered.instances
            self.pending_lines += answered.instances

    def _batch_for(self, model: str, hour: str, count: int, part: str = "") -> _Batch | None:
        """The open batch `count` more lines go in (the lock is held); None: too far behind."""
        if self.pending_lines + count > self.max_pending_lines:
            self.shed += 1
            if self.shed % 100 == 1:
                log.warning(
                    "capture is %d lines behind; %d requests answered uncaptured so far",
                    self.pending_lines,
                    self.shed,
                )
            return None
        slot = f"{model}/{part}"
        batch = self._open.get(slot)
        if batch is None or batch.hour != hour or batch.lines + count > self.max_lines:
            if batch is not None:
                self._seal(batch)
            batch = self._open[slot] = self._new_batch(model, hour, part)
        return batch

    def _new_batch(self, model: str, hour: str, part: str = "") -> _Batch:
        # The client is made (once) on the request's thread: a boto3 session makes clients one
        # thread at a time.
        batch = _Batch(model, hour, uuid.uuid4().hex, Bucket(self.bucket).holding_client(), [], part=part)
        timer = threading.Timer(self.max_age_s, self._seal_when_old, (batch,))
        timer.daemon = True
        timer.start()
        return batch

    def _seal_when_old(self, batch: _Batch) -> None:
        with self._lock:
            if self._open.get(batch.slot) is batch:
                self._seal(batch)

    def _seal(self, batch: _Batch) -> None:
        """Close the batch to new requests and hand its object to the writers (the lock is held)."""
        del self._open[batch.slot]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="aimass-capture")
        future = self._pool.submit(self._write, batch)
        self._pending[future] = batch.part
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.pop(future, None)

    def _write(self, batch: _Batch) -> None:
        try:
            body = b"".join(lines(answered, ids, at) for answered, ids, at in batch.jobs)
            batch.bucket.put(batch.key, body, CONTENT_TYPE)
        except Exception as error:
            from aimass.gateways.transient import unavailable

            what = "capture s3://%s/%s failed; its prediction ids stay unknown to feedback"
            down = unavailable(error)
            if down is None:
                log.exception(what, self.bucket, batch.key)
            else:  # an outage: its cause, not a trace per request (the model store logs the outage)
                log.warning(what + ": %s", self.bucket, batch.key, down.message)
        finally:
            # Before the write's future is done, so that whoever waited for it sees the lines gone
            with self._lock:
                self.pending_lines -= batch.lines

    def flush(self, timeout: float = 10.0, shadows: bool = True) -> None:
        """Write the captures taken so far and wait until they are written (or failed). Without
        `shadows` (the Lambda, as an invocation ends) a shadow version's lines are left to their timer:
        the caller's latency never waits on a shadow's write."""
        with self._lock:
            for batch in list(self._open.values()):
                if shadows or not batch.part:
                    self._seal(batch)
            pending = [f for f, part in self._pending.items() if shadows or not part]
        if pending:
            wait(pending, timeout=timeout)
