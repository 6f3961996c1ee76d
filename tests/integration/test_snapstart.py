"""SnapStart's runtime hooks (aimass.api.snapstart): what a snapshot holds and what a restore makes again."""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from aimass import aws, wiring
from aimass.api import snapstart
from aimass.local.lambda_runtime import LambdaContext, load_handler
from tests.support import event


@pytest.fixture
def registry_reads() -> Iterator[list[str]]:
    """The models whose summary the service reads from the registry while the test runs."""
    registry = wiring.registry()
    get_model, reads = registry.get_model, []

    def counting(name: str) -> Any:
        reads.append(name)
        return get_model(name)

    registry.get_model = counting  # type: ignore[method-assign]
    yield reads
    del registry.get_model


def test_the_hooks_import_and_run_without_the_lambda_runtime_library() -> None:
    # Locally snapshot_restore_py is absent: the hooks are kept, registered once, run on request.
    assert importlib.util.find_spec("snapshot_restore_py") is None
    load_handler("online")
    load_handler("online")

    assert [hook for hook, _, _ in snapstart._before] == [snapstart.before_snapshot]
    assert [hook for hook, _, _ in snapstart._after] == [snapstart.after_restore]


def test_a_snapshot_holds_every_champion_ready_to_answer(registered: Any, registry_reads: list[str]) -> None:
    snapstart.run_before_snapshot()
    store = wiring.serving().store

    assert sorted(registry_reads) == sorted(registered.versions)
    assert all(store.local(name) for name in registered.versions)


def test_the_first_request_after_a_restore_reads_nothing_from_the_registry(
    registered: Any, registry_reads: list[str]
) -> None:
    online = load_handler("online")
    snapstart.run_before_snapshot()
    snapstart.run_after_restore()
    registry_reads.clear()

    response = online(event("v1_predict_breast_cancer"), LambdaContext())

    assert response["statusCode"] == 200
    assert registry_reads == []


def test_a_restore_reads_the_aliases_again_and_makes_new_clients(
    registered: Any, registry_reads: list[str]
) -> None:
    snapstart.run_before_snapshot()
    clients = aws.client("dynamodb"), aws.client("s3")
    registry_reads.clear()

    snapstart.run_after_restore()

    # Its aliases may have moved while the snapshot waited: each held model's summary is read again.
    assert sorted(registry_reads) == sorted(registered.versions)
    assert aws.client("dynamodb") is not clients[0] and aws.client("s3") is not clients[1]
    assert all(wiring.serving().store.local(name) for name in registered.versions)


def test_a_restore_gives_the_random_generators_new_seeds() -> None:
    # Every environment restored from one snapshot starts from the same generator state.
    random.seed(7)
    np.random.seed(7)
    state = random.getstate(), np.random.get_state()
    snapshot_draws = random.random(), np.random.random()
    random.setstate(state[0])
    np.random.set_state(state[1])

    snapstart.reseed()

    assert (random.random(), np.random.random()) != snapshot_draws


def test_a_snapshot_holds_at_most_the_configured_number_of_models(
    registered: Any, registry_reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aimass.config import settings

    monkeypatch.setenv("AIMASS_SNAPSHOT_MAX_MODELS", "1")
    settings.cache_clear()

    prepared = snapstart.prepare_models()

    assert len(prepared) == 1 and len(registered.versions) > 1
    assert [name for name in registered.versions if wiring.serving().store.local(name)] == prepared
