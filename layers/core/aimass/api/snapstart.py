"""SnapStart's runtime hooks for the online function (docs/deploy.md, "Cold starts").

Lambda snapshots a published version's initialised environment and starts new environments from it. So
that a restored environment answers its first request as a warm one does, the snapshot holds what
requests use, made once: before the snapshot, the AWS clients, the request pipeline and every
registered model's default version (champion, else latest) with its canary, rules and checks.
Whatever must not be shared by every environment restored from one snapshot, or does not survive a
restore, is made again after it: the AWS session and its clients (credentials, open connections), the
random generators' seeds (canary and shadow draws, capture sampling), and the models' summaries, whose
read times are the snapshot's on another machine's clock.

The hooks come from `snapshot_restore_py`, which the Lambda Python runtimes include. Where it is absent
(the local stack, tests, this package's CLI) they are kept here and run only when asked
(`run_before_snapshot`, `run_after_restore`), as the benchmark of a restore does.
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from aimass.config import settings

if TYPE_CHECKING:
    from aimass.serving.store import LoadedModel

log = logging.getLogger(__name__)

Hook = Callable[..., Any]
_before: list[tuple[Hook, tuple[Any, ...], dict[str, Any]]] = []
_after: list[tuple[Hook, tuple[Any, ...], dict[str, Any]]] = []

try:
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:  # not on Lambda: kept, in the library's order, for run_before_snapshot/after_restore

    def register_before_snapshot(func: Hook, *args: Any, **kwargs: Any) -> Hook:
        _before.append((func, args, kwargs))
        return func

    def register_after_restore(func: Hook, *args: Any, **kwargs: Any) -> Hook:
        _after.append((func, args, kwargs))
        return func


def run_before_snapshot() -> None:
    """What Lambda does before it takes the snapshot: the hooks in the reverse order of registration."""
    for func, args, kwargs in reversed(_before):
        func(*args, **kwargs)


def run_after_restore() -> None:
    """What Lambda does after a restore: the hooks in the order of registration."""
    for func, args, kwargs in _after:
        func(*args, **kwargs)


def prepare_models() -> list[str]:
    """Every registered model's default version (at most AIMASS_SNAPSHOT_MAX_MODELS of them) made ready
    to answer (ModelStore.prepare) and run once; a model that cannot be is logged and left to its first
    request, so that one bad model never fails a snapshot."""
    from aimass import wiring

    store = wiring.serving().store
    prepared = []
    for summary in wiring.registry().list_models()[: settings().snapshot_max_models]:
        try:
            for loaded in store.prepare(summary.name):
                run_once(loaded)
        except Exception as error:  # any: the snapshot must be taken whatever one model holds
            log.warning("%s is not in the snapshot, its first request loads it: %s", summary.name, error)
        else:
            prepared.append(summary.name)
    return prepared


def run_once(loaded: LoadedModel) -> None:
    """One run on zeros of the signature's shapes: a session's first run allocates what the next
    ones reuse (ONNX Runtime's arena). Nothing is answered, captured or counted. A version whose
    inputs zeros cannot stand for (strings) is left to its first request."""
    from aimass.protocol.tensors import NUMPY_DTYPES

    inputs = loaded.version.signature.inputs
    if any(spec.dtype not in NUMPY_DTYPES or spec.dtype == "string" for spec in inputs):
        return
    shapes = {spec.name: [1 if d is None else d for d in spec.shape] for spec in inputs}
    loaded.run({spec.name: np.zeros(shapes[spec.name], NUMPY_DTYPES[spec.dtype]) for spec in inputs})


# What the function's HTTP path runs once so that its first request does not (aimass.api.app.route_once):
# set by register().
_primers: list[Callable[[], None]] = []


def prime() -> None:
    for primer in _primers:
        primer()


def before_snapshot() -> None:
    from aimass import wiring

    started = time.perf_counter()
    wiring.prepare()
    models = prepare_models()
    prime()
    # What the hooks made lives as long as the environment: kept out of the collector's passes, as the
    # function's init is (functions/online/app.py), so no first request pays for a pass over it.
    gc.collect()
    gc.freeze()
    log.info("snapshot ready: %d models in %.0f ms", len(models), (time.perf_counter() - started) * 1e3)


def reseed() -> None:
    """New seeds from the OS for the random generators the service draws from (traffic and shadow
    splits, capture's sampling): every environment restored from one snapshot would otherwise draw the
    same sequence. os.urandom is unique per restored environment (Lambda's SnapStart guarantee)."""
    random.seed()
    np.random.seed()


def after_restore() -> None:
    from aimass import aws, wiring

    started = time.perf_counter()
    reseed()
    # A new session reads the restored environment's credentials; its clients open new connections.
    aws.reset()
    wiring.prepare()
    models = wiring.serving().store.refresh()
    # The restored memory is read in as it is touched: touched here, within the restore's 10 s, rather
    # than by the first request (bench/RESULTS.md, issue 19).
    prime()
    gc.freeze()
    log.info("restored: %d models read again in %.0f ms", len(models), (time.perf_counter() - started) * 1e3)


_registered: list[bool] = []


def register(primer: Callable[[], None] | None = None) -> None:
    """Register the online function's hooks, once per process (the local stack may import the function
    more than once); `primer` runs its HTTP path once before the snapshot and after a restore, with
    nothing answered, captured or counted."""
    if not _registered:
        if primer is not None:
            _primers.append(primer)
        register_before_snapshot(before_snapshot)
        register_after_restore(after_restore)
        _registered.append(True)
