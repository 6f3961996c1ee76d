"""The model store when AWS cannot be reached (stale serving, bounded) and when an artifact fails its
sha256 (refused, checked again after a back-off, the answer saying which version answered), against
moto; AWS "down" is the registry and bucket pointed at a loopback port nothing listens on."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from aimass import artifacts, aws, wiring
from aimass.config import settings
from aimass.errors import AwsUnavailable, IntegrityError
from aimass.registration import register_version, set_alias
from aimass.serving.build import request_pipeline
from aimass.serving.pipeline import Answered, RequestPipeline
from aimass.serving.store import RECHECK_FIRST_S
from tests.support import Clock, retrained

TTL, MAX_STALE = 5.0, 300.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def answered() -> list[Answered]:
    return []


@pytest.fixture
def serving(registered: Any, tmp_path: Any, clock: Clock, answered: list[Answered]) -> RequestPipeline:
    return request_pipeline(
        wiring.registry(),
        tmp_path / "cache",
        registry_ttl_s=TTL,
        registry_max_stale_s=MAX_STALE,
        clock=clock,
        observers=[answered.append],
    )


@pytest.fixture
def aws_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Call `aws_down.stop()` to point every AWS client at a closed loopback port, `.start()` to
    point them back at (in-process) moto: the clients the registry and bucket use are made anew."""

    class Switch:
        def stop(self) -> None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            monkeypatch.setenv("AIMASS_AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
            settings.cache_clear()
            aws.reset()

        def start(self) -> None:
            monkeypatch.delenv("AIMASS_AWS_ENDPOINT_URL", raising=False)
            settings.cache_clear()
            aws.reset()

    switch = Switch()
    yield switch
    switch.start()


def row(demos: dict[str, Any]) -> list[Any]:
    return [demos["breast-cancer"].holdout[0].tolist()]


def stale_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "keeps serving from the registry" in r.getMessage()]


def test_a_loaded_model_keeps_serving_stale_while_aws_is_down_and_says_so_once(
    serving: RequestPipeline,
    demos: dict[str, Any],
    clock: Clock,
    aws_down: Any,
    answered: list[Answered],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given breast-cancer served once (its summary read at t=0), then AWS going down
    serving.predict("breast-cancer", row(demos))
    aws_down.stop()
    caplog.set_level(logging.WARNING, "aimass.serving.store")

    # When requests come past the TTL, for a while
    models = []
    for now in (TTL + 1, TTL + 2, 3 * TTL, 10 * TTL):
        clock.now = now
        models.append(serving.predict("breast-cancer", row(demos))["model"]["version"])

    # Then v1 answers each, marked stale for the metrics, and the log says so once for the outage
    assert models == [1, 1, 1, 1]
    assert [a.stale for a in answered] == [False, True, True, True, True]
    assert len(stale_warnings(caplog)) == 1
    assert serving.store.stale("breast-cancer")


def test_stale_serving_ends_at_its_bound_with_aws_unavailable(
    serving: RequestPipeline, demos: dict[str, Any], clock: Clock, aws_down: Any
) -> None:
    serving.predict("breast-cancer", row(demos))
    aws_down.stop()
    clock.now = TTL + MAX_STALE  # the last moment a stale summary may serve
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 1

    clock.now = TTL + MAX_STALE + 1
    with pytest.raises(AwsUnavailable) as raised:
        serving.predict("breast-cancer", row(demos))
    assert raised.value.status == 503 and raised.value.headers["Retry-After"]


def test_a_model_never_read_is_aws_unavailable_at_once(
    serving: RequestPipeline, demos: dict[str, Any], aws_down: Any
) -> None:
    aws_down.stop()
    with pytest.raises(AwsUnavailable) as raised:
        serving.predict("digits", [demos["digits"].holdout[0].tolist()])
    assert raised.value.code == "aws_unavailable"
    assert raised.value.details[0]["type"] == "EndpointConnectionError"


def test_serving_is_fresh_again_once_aws_answers(
    serving: RequestPipeline,
    demos: dict[str, Any],
    clock: Clock,
    aws_down: Any,
    answered: list[Answered],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given breast-cancer served stale through an outage, its champion moved meanwhile
    serving.predict("breast-cancer", row(demos))
    aws_down.stop()
    clock.now = TTL + 1
    serving.predict("breast-cancer", row(demos))
    aws_down.start()
    promote_retrained(demos)
    caplog.set_level(logging.WARNING, "aimass.serving.store")

    # When AWS answers again and the stale summary's next check comes
    clock.now = 3 * TTL
    answer = serving.predict("breast-cancer", row(demos))

    # Then the registry is read afresh (v2, the new champion), and the outage's end is logged
    assert answer["model"]["version"] == 2
    assert not answered[-1].stale and not serving.store.stale("breast-cancer")
    assert any("AWS answers again" in r.getMessage() for r in caplog.records)


def promote_retrained(demos: dict[str, Any]) -> int:
    demo = demos["breast-cancer"]
    v2 = register_version(
        wiring.registry(), "aimass-test", "breast-cancer", retrained(demo.model), "t", demo.enrichment
    )
    set_alias(wiring.registry(), "breast-cancer", "champion", v2.version, "t")
    return v2.version


V2_KEY = "models/breast-cancer/2/model.onnx"


def test_a_refused_artifact_is_checked_again_after_its_back_off_and_serves_once_restored(
    serving: RequestPipeline, demos: dict[str, Any], clock: Clock
) -> None:
    # Given v1 serving, then v2 the champion with its stored bytes altered
    serving.predict("breast-cancer", row(demos))
    promote_retrained(demos)
    good = artifacts.get(f"s3://aimass-test/{V2_KEY}")
    artifacts.put("aimass-test", V2_KEY, demos["digits"].model)
    clock.now = TTL + 1

    # When the champion is asked for: v1 answers, and the answer says v2 was refused and why
    answer = serving.predict("breast-cancer", row(demos))
    assert answer["model"]["version"] == 1
    assert answer["fallback"]["from"] == {"name": "breast-cancer", "version": 2, "backend": "lambda"}
    assert answer["fallback"]["reason"] == "artifact_integrity"

    # Then restoring the bytes is not seen before the back-off has passed...
    artifacts.put("aimass-test", V2_KEY, good)
    clock.now += RECHECK_FIRST_S - 1
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 1
    with pytest.raises(IntegrityError):
        serving.predict("breast-cancer", row(demos), version=2)

    # ...and is once it has: v2 serves, with no note
    clock.now += 2
    answer = serving.predict("breast-cancer", row(demos))
    assert answer["model"]["version"] == 2 and "fallback" not in answer


def test_the_back_off_doubles_while_the_artifact_stays_wrong(
    serving: RequestPipeline, demos: dict[str, Any], clock: Clock
) -> None:
    serving.predict("breast-cancer", row(demos))
    promote_retrained(demos)
    good = artifacts.get(f"s3://aimass-test/{V2_KEY}")
    artifacts.put("aimass-test", V2_KEY, demos["digits"].model)
    clock.now = TTL + 1
    refused_at = clock.now
    serving.predict("breast-cancer", row(demos))  # refused: checked again in 30 s

    clock.now = refused_at + RECHECK_FIRST_S + 1  # checked again, still wrong: next in 60 s
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 1
    artifacts.put("aimass-test", V2_KEY, good)

    clock.now += 2 * RECHECK_FIRST_S - 1
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 1
    clock.now += 2
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 2


def test_a_refresh_reads_every_held_summary_again_and_prepares_what_they_name_now(
    serving: RequestPipeline, demos: dict[str, Any]
) -> None:
    # Given both demos held (as a snapshot holds them), then breast-cancer's champion moved to v2
    serving.predict("breast-cancer", row(demos))
    serving.predict("digits", [demos["digits"].holdout[0].tolist()])
    promote_retrained(demos)

    # When the store refreshes, within the TTL of what it read before
    refreshed = serving.store.refresh()

    # Then it read the summaries again: v2 is ready to answer and answers, with nothing left to read
    assert sorted(refreshed) == ["breast-cancer", "digits"]
    assert serving.store.local("breast-cancer") and serving.store.local("digits")
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 2


def test_a_refresh_while_aws_is_down_leaves_the_models_to_their_next_requests(
    serving: RequestPipeline, demos: dict[str, Any], aws_down: Any, caplog: pytest.LogCaptureFixture
) -> None:
    serving.predict("breast-cancer", row(demos))
    aws_down.stop()
    caplog.set_level(logging.WARNING, "aimass.serving.store")

    assert serving.store.refresh() == ["breast-cancer"]

    # Nothing read is trusted (its read time is another machine's): the next request reads again
    assert not serving.store.local("breast-cancer")
    assert any("could not read the models' summaries again" in r.getMessage() for r in caplog.records)
    aws_down.start()
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 1
