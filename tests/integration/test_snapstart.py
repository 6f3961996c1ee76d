"""SnapStart's runtime hooks (aimass.api.snapstart): what a snapshot holds and what a restore makes again."""

from __future__ import annotations

import importlib.util
import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from aimass import aws, wiring
from aimass.api import snapstart
from aimass.local.lambda_runtime import LambdaContext, load_handler
from aimass.registration import set_alias
from tests.integration.test_sagemaker_routing import (
    MODEL,
    RecordedRuntime,
    on_endpoint,
    throttling,
    use_runtime,
)
from tests.support import event

__all__ = ["throttling"]  # the fixture, shared with test_sagemaker_routing


@pytest.fixture
def function_records() -> Iterator[list[logging.LogRecord]]:
    """The records the function's loggers write (its Powertools Logger's and aimass's: one logger, named
    after the service, and the package's, which has the Logger's handler)."""
    records: list[logging.LogRecord] = []

    class Kept(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    from aimass.api import lambda_entry

    kept = Kept(level=logging.DEBUG)
    loggers = {logging.getLogger(name) for name in ("aimass", lambda_entry.logger.name)}
    for logger in loggers:
        logger.addHandler(kept)
    yield records
    for logger in loggers:
        logger.removeHandler(kept)


@pytest.fixture
def registry_reads() -> Iterator[list[str]]:
    """The models whose summary the service reads from the registry while the test runs."""
    registry = wiring.registry()
    get_model, get_models, reads = registry.get_model, registry.get_models, []

    def counting(name: str) -> Any:
        reads.append(name)
        return get_model(name)

    def counting_together(names: Any) -> Any:
        reads.extend(names)
        return get_models(names)

    registry.get_model = counting  # type: ignore[method-assign]
    registry.get_models = counting_together  # type: ignore[method-assign]
    yield reads
    del registry.get_model, registry.get_models


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


def test_a_snapshot_sends_nothing_to_a_sagemaker_endpoint(
    registered: Any, demos: dict[str, Any], throttling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a model whose champion a SageMaker endpoint serves (a recorded SageMaker Runtime)
    use_runtime(monkeypatch, throttling)
    version = on_endpoint(demos[MODEL])
    set_alias(wiring.registry(), MODEL, "champion", version, "t")

    # When the snapshot's models are prepared (the before-snapshot hook's first step)
    prepared = snapstart.prepare_models()

    # Then the model is in the snapshot, and the endpoint was not called: a run there is real traffic
    assert MODEL in prepared
    assert RecordedRuntime.calls == []


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


def test_a_restore_reads_the_aliases_again_and_keeps_the_clients(
    registered: Any, registry_reads: list[str]
) -> None:
    snapstart.run_before_snapshot()
    clients = aws.client("dynamodb"), aws.client("s3")
    registry_reads.clear()

    snapstart.run_after_restore()

    # Its aliases may have moved while the snapshot waited: each held model's summary is read again.
    assert sorted(registry_reads) == sorted(registered.versions)
    # The clients made before the snapshot serve on (aws.reconnect: new connections, credentials read)
    assert aws.client("dynamodb") is clients[0] and aws.client("s3") is clients[1]
    assert all(wiring.serving().store.local(name) for name in registered.versions)


def test_a_restore_primes_the_path_twice_the_second_time_last(
    registered: Any, monkeypatch: pytest.MonkeyPatch, function_records: list[logging.LogRecord]
) -> None:
    load_handler("online")
    snapstart.run_before_snapshot()
    prime, steps = snapstart.prime, []

    def recording(models: Any, health: bool = True) -> dict[str, int]:
        statuses = prime(models, health)
        steps.append((statuses, len(function_records)))
        return statuses

    monkeypatch.setattr(snapstart, "prime", recording)
    function_records.clear()
    snapstart.run_after_restore()

    # The first pass faults the restored memory in; the second runs the predictions on it, and nothing
    # after it (the hook's log line included) pushes their path out of the caches before a request
    predictions = {f"/v1/models/{name}:predict": 200 for name in registered.versions}
    assert [statuses for statuses, _ in steps] == [{"/health": 200} | predictions, predictions]
    assert steps[-1][1] == len(function_records) > 0


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


def test_the_priming_requests_are_answered_and_leave_no_capture_metric_live_count_or_shadow(
    registered: Any, demos: dict[str, Any]
) -> None:
    from fastapi.testclient import TestClient

    from aimass.api import lambda_entry
    from aimass.api.app import create_app
    from aimass.registration import register_version
    from tests.support import retrained

    demo = demos["breast-cancer"]
    # Given breast-cancer under a rollout that counts every request live and shadows each on v2
    register_version(
        wiring.registry(), "aimass-test", "breast-cancer", retrained(demo.model), "t", demo.enrichment
    )
    with TestClient(create_app()) as admin:
        assert (
            admin.put("/v1/models/breast-cancer/rollout", json={"version": 2, "shadow": 100}).status_code
            == 200
        )
    online = load_handler("online")
    heard: list[Any] = []
    wiring.request_observers.append(heard.append)
    try:
        # When the hooks prime the function's path, before the snapshot and after a restore
        snapstart.run_before_snapshot()
        snapstart.run_after_restore()
        statuses = snapstart.prime(sorted(registered.versions))
        wiring.flush_live()
        wiring.flush_capture()

        # Then each priming request was answered, through the function's own path
        assert statuses == {"/health": 200} | {
            f"/v1/models/{name}:predict": 200 for name in registered.versions
        }
        # And nothing heard of them: no observer, no metric, no capture line, no live count, no shadow run
        assert heard == [] and lambda_entry.metrics.metric_set == {}
        assert objects("capture/") == []
        with TestClient(create_app()) as admin:
            assert admin.get("/v1/models/breast-cancer/rollout").json()["live"]["stable"]["requests"] == 0

        # While a request of a caller's, after them, is heard, captured, counted and shadowed as ever
        assert online(event("v1_predict_breast_cancer"), LambdaContext())["statusCode"] == 200
        wiring.flush_live()
        wiring.flush_capture()
        assert len(heard) == 1
        assert objects("capture/breast-cancer/") != []
        with TestClient(create_app()) as admin:
            live = admin.get("/v1/models/breast-cancer/rollout").json()["live"]
        assert (live["stable"]["requests"], live["shadow"]["requests"]) == (1, 1)
    finally:
        wiring.request_observers.remove(heard.append)


def test_priming_prints_no_metric_line_and_logs_nothing(
    registered: Any, capfd: pytest.CaptureFixture[str], function_records: list[logging.LogRecord]
) -> None:
    load_handler("online")
    snapstart.run_before_snapshot()
    snapstart.run_after_restore()
    capfd.readouterr()
    function_records.clear()

    # When the hooks' priming requests run through the function's handler
    statuses = snapstart.prime(sorted(registered.versions))

    # Then they were answered, and nothing reached the function's output: no EMF line, no log line
    assert set(statuses.values()) == {200}
    assert capfd.readouterr() == ("", "")
    assert function_records == []


def test_the_first_invocation_after_a_restore_reports_a_cold_start_and_the_second_does_not(
    registered: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.logging import logger as powertools_logging
    from aws_lambda_powertools.metrics.provider import cold_start

    from aimass.api import lambda_entry

    # Given a new environment's Powertools (its next invocation is its first), snapshotted and restored
    monkeypatch.setattr(cold_start, "is_cold_start", True)
    monkeypatch.setattr(powertools_logging, "is_cold_start", True)
    online = load_handler("online")
    snapstart.run_before_snapshot()
    snapstart.run_after_restore()
    capsys.readouterr()

    # When a caller's requests come in after the hooks' priming ones
    assert online(event("v1_predict_breast_cancer"), LambdaContext())["statusCode"] == 200
    first, first_keys = capsys.readouterr().out, dict(lambda_entry.logger.get_current_keys())
    assert online(event("v1_predict_breast_cancer"), LambdaContext())["statusCode"] == 200
    second, second_keys = capsys.readouterr().out, dict(lambda_entry.logger.get_current_keys())

    # Then the first reports the cold start, once, and its log context says so; the second does not
    assert metric_names(first).count("ColdStart") == 1 and "Predictions" in metric_names(first)
    assert first_keys["cold_start"] is True
    assert first_keys["function_request_id"] == LambdaContext.aws_request_id
    assert "ColdStart" not in metric_names(second) and "Predictions" in metric_names(second)
    assert second_keys["cold_start"] is False


def test_a_model_served_by_an_endpoint_is_not_primed(registered: Any, demos: dict[str, Any]) -> None:
    from aimass.registration import register_version, set_alias

    # Given digits' champion on a SageMaker endpoint: a priming request would be real traffic there
    demo = demos["digits"]
    remote = register_version(
        wiring.registry(), "aimass-test", "digits", demo.model, "t", demo.enrichment, backend="sagemaker:gone"
    )
    set_alias(wiring.registry(), "digits", "champion", remote.version, "t")
    load_handler("online")
    snapstart.run_before_snapshot()

    statuses = snapstart.prime(["breast-cancer", "digits"])

    assert statuses == {"/health": 200, "/v1/models/breast-cancer:predict": 200}


def metric_names(out: str) -> list[str]:
    """The metrics on the EMF lines printed to stdout."""
    lines = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    return [m["Name"] for line in lines for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]]


def objects(prefix: str) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket="aimass-test", Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]
