"""Data capture: what each answered online request took and gave, kept to attach ground truth to.

One JSON Lines object per captured request, `capture/<model>/<yyyy>/<mm>/<dd>/<HH>/<request>.jsonl`
(UTC), one line per instance in the shape of SageMaker data capture:

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "{\\"mean_radius\\": 17.99, ...}", "encoding": "JSON"},
                     "endpointOutput": {..., "mode": "OUTPUT", "data": "{\\"label\\": \\"benign\\", ...}"}},
     "eventMetadata": {"eventId": <prediction id>, "inferenceTime": "2026-11-23T12:22:05.123Z",
                       "model": "breast-cancer", "modelVersion": 1, "protocol": "v1"},
     "eventVersion": "0"}

Inputs are as the model saw them, keyed by feature name (else by input name); outputs are the V1
prediction (for V2, the graph's outputs shaped as V1 would answer them).

A prediction id, `<model>:<yyyymmddHH>:<request>:<index>`, names its capture object, so feedback finds
it with one GET. The writer puts objects from a small thread pool: a request never waits for S3
(the Lambda entry waits for them once the response is built, before the invocation ends).
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
    request: str  # uuid4 hex: the capture object
    index: int  # the instance in the request

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


def capture_key(model: str, hour: str, request: str) -> str:
    return f"{PREFIX}{model}/{hour[:4]}/{hour[4:6]}/{hour[6:8]}/{hour[8:10]}/{request}.jsonl"


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
    inputs = input_rows(record.signature, answered.feeds, answered.instances, answered.given)
    meta = {"inferenceTime": iso_utc(at), "model": record.name, "modelVersion": record.version}
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


class CaptureWriter:
    """Capture for the request pipeline: names a request's predictions and writes them off its path.

    At most `max_pending` requests wait to be written; past that a request goes uncaptured (and
    without ids) rather than make the service queue without bound or wait. A failed write is
    logged; its ids then stay unknown to feedback."""

    def __init__(
        self,
        bucket: str,
        sample_fraction: float = 1.0,
        *,
        max_pending: int = 256,
        workers: int = 2,
        draw: Callable[[], float] = random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.bucket = bucket
        self.sample_fraction = sample_fraction
        self.max_pending = max_pending
        self.workers = workers
        self.draw = draw
        self.now = now
        self.skipped = 0
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, answered: Answered) -> list[str] | None:
        if self.sample_fraction < 1.0 and self.draw() >= self.sample_fraction:
            return None
        at = self.now()
        hour, request = at.strftime("%Y%m%d%H"), uuid.uuid4().hex
        model = answered.version.name
        ids = [str(PredictionId(model, hour, request, i)) for i in range(answered.instances)]
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self.skipped += 1
                if self.skipped % 100 == 1:
                    log.warning(
                        "capture is %d requests behind; %d requests went uncaptured",
                        len(self._pending),
                        self.skipped,
                    )
                return None
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="aimass-capture")
            # The client is made (once) on the request's thread: a boto3 session makes clients
            # one thread at a time.
            bucket = Bucket(self.bucket).holding_client()
            future = self._pool.submit(
                self._write, bucket, capture_key(model, hour, request), answered, ids, at
            )
            self._pending.add(future)
        future.add_done_callback(self._done)
        return ids

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _write(self, bucket: Bucket, key: str, answered: Answered, ids: list[str], at: datetime) -> None:
        try:
            bucket.put(key, lines(answered, ids, at), CONTENT_TYPE)
        except Exception as error:
            from aimass.gateways.transient import unavailable

            what = "capture s3://%s/%s failed; its prediction ids stay unknown to feedback"
            down = unavailable(error)
            if down is None:
                log.exception(what, self.bucket, key)
            else:  # an outage: its cause, not a trace per request (the model store logs the outage)
                log.warning(what + ": %s", self.bucket, key, down.message)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until the captures started so far are written (or failed)."""
        with self._lock:
            pending = list(self._pending)
        if pending:
            wait(pending, timeout=timeout)
