"""DynamoDB in the local stack: moto's, with two seams that keep its memory flat and its writes'
cost independent of the table's size.

moto 5.2.6 (pinned to >=5.1.10,<5.3 in pyproject.toml) does two things that made `aimass serve`
grow without end under registry writes (docs/design.md has the figures; bench/memory.py measures):
- `BaseModel.__new__` (moto.core.common_models) appends every model object it makes to its class's
  `instances_tracked` list, read only by the dashboard of moto's server (/moto-api/), and nothing
  drops them but a reset of all of moto. DynamoDB makes such objects at every write: an `Item` per
  put, and all the copies below.
- `DynamoDBBackend.transact_write_items` deep-copies the whole table once per item of the
  transaction, as its rollback copy, whether or not the transaction fails.
Together: each registry write (a summary update and an audit put, one transaction) kept two copies
of the whole registry table alive, memory grew with the square of the number of writes, and a write
cost time in proportion to the table.

The seams, put in place by `install` and taken out by `uninstall`
(tests/integration/test_local_memory.py checks that they hold):
- DynamoDB's model classes are made untracked (an object's `__new__` without the append): an item
  replaced or deleted is freed. moto's DynamoDB never reads the lists; the dashboard shows no
  DynamoDB objects. moto's other services keep their tracking (S3 disposes of its keys' buffers
  through it at a reset).
- `transact_write_items` keeps as its rollback copy only the items the transaction names (a copy of
  each before it runs, none where there was no item) and puts them back if moto cancels it; moto's
  own copy of the tables is then the table itself (its rollback, putting each table back in place,
  changes nothing). A transaction whose keys this cannot read (moto refuses it anyway) or that
  writes a table with a stream (whose records only moto's copy would undo) gets moto's own copy.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
# moto's own `__new__` of each class made untracked (None: the class inherited it), and moto's
# transact_write_items and the `copy` module its module uses, to put back.
_originals: dict[type, Any] | None = None
_transacting = threading.local()

Backup = list[tuple[Any, Any, Any, Any]]  # (table, hash key, range key or None, copy of the item or None)


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    return object.__new__(cls)


def tracked_classes() -> list[type]:
    """moto's DynamoDB model classes: those whose objects moto's BaseModel tracks."""
    import moto.dynamodb.models  # noqa: F401  (defines and registers the classes)
    from moto.core.model_instances import model_data

    return list(model_data["dynamodb"].values())  # type: ignore[arg-type]


class _TablesByReference:
    """The `copy` module as moto's DynamoDB backend sees it: while this thread runs a transaction
    that keeps its own rollback copy, a deep copy of a table is the table itself."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.table import Table

        if getattr(_transacting, "active", False) and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def install() -> None:
    """Put the seams in moto's place. Idempotent; `uninstall` undoes it."""
    global _originals
    import moto.dynamodb.models as models

    with _lock:
        if _originals is not None:
            return
        _originals = {cls: vars(cls).get("__new__") for cls in tracked_classes()}
        for cls in _originals:
            cls.__new__ = staticmethod(_untracked_new)  # type: ignore[assignment]
        backend = models.DynamoDBBackend
        _originals[backend] = backend.transact_write_items
        backend.transact_write_items = _transact_write_items(backend.transact_write_items)  # type: ignore[method-assign]
        models.copy = _TablesByReference()  # type: ignore[assignment]


def uninstall() -> None:
    """Give moto its own behaviour back. Idempotent."""
    global _originals
    import moto.dynamodb.models as models

    with _lock:
        originals, _originals = _originals, None
        if originals is None:
            return
        models.copy = copy
        models.DynamoDBBackend.transact_write_items = originals.pop(models.DynamoDBBackend)  # type: ignore[method-assign]
        for cls, original in originals.items():
            if original is None:
                del cls.__new__
            else:
                cls.__new__ = original  # type: ignore[method-assign]


def _transact_write_items(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backup = _backup(self, transact_items)
        if backup is None:
            return original(self, transact_items)
        with _by_reference():
            try:
                return original(self, transact_items)
            except BaseException:
                _put_back(backup)
                raise

    return transact_write_items


@contextmanager
def _by_reference() -> Iterator[None]:
    _transacting.active = True
    try:
        yield
    finally:
        _transacting.active = False


def _backup(backend: Any, transact_items: list[dict[str, Any]]) -> Backup | None:
    """A copy of each item the transaction names, as it is before it runs; None where moto's own
    copy of the tables must do (keys it cannot read, a table with a stream)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    backup: Backup = []
    try:
        for entry in transact_items:
            (operation, request), *others = entry.items()
            table = backend.tables.get(request.get("TableName"))
            if others or table is None or table.stream_shard is not None:
                return None
            key = request["Item"] if operation == "Put" else request["Key"]
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            item = table.get_item(hash_key, range_key)
            backup.append((table, hash_key, range_key, copy.deepcopy(item)))
    except (KeyError, TypeError, AttributeError, ValueError):
        return None
    return backup


def _put_back(backup: Backup) -> None:
    # In reverse, so that an item named twice (moto refuses that) ends as it was first.
    for table, hash_key, range_key, item in reversed(backup):
        if item is None:
            table.delete_item(hash_key, range_key)
        elif range_key is not None:
            table.items[hash_key][range_key] = item
        else:
            table.items[hash_key] = item
