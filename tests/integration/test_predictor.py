"""The model store and request pipeline against moto: caching, alias moves, and refusing artifacts
that fail their sha256."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from aimass import artifacts, wiring
from aimass.errors import IntegrityError
from aimass.registration import register_version, set_alias
from aimass.serving.build import request_pipeline
from aimass.serving.pipeline import RequestPipeline
from tests.support import Clock, retrained


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def serving(registered: Any, tmp_path: Any, clock: Clock) -> RequestPipeline:
    return request_pipeline(wiring.registry(), tmp_path / "cache", registry_ttl_s=5.0, clock=clock)


def promote_retrained(demos: dict[str, Any]) -> None:
    """Register a retrained breast-cancer model as v2 and make it the champion."""
    demo = demos["breast-cancer"]
    v2 = register_version(
        wiring.registry(), "aimass-test", "breast-cancer", retrained(demo.model), "t", demo.enrichment
    )
    set_alias(wiring.registry(), "breast-cancer", "champion", v2.version, "t")


def row(demos: dict[str, Any]) -> list[Any]:
    return [demos["breast-cancer"].holdout[0].tolist()]


def test_predictions_match_scikit_learn(serving: RequestPipeline, demos: dict[str, Any]) -> None:
    demo = demos["breast-cancer"]
    result = serving.predict("breast-cancer", demo.holdout.tolist())
    got = np.array(
        [[p["probabilities"]["malignant"], p["probabilities"]["benign"]] for p in result["predictions"]]
    )
    np.testing.assert_allclose(got, demo.holdout_probabilities, atol=1e-5, rtol=0)
    assert result["model"] == {"name": "breast-cancer", "version": 1, "backend": "lambda"}


def test_an_alias_move_is_seen_once_the_registry_ttl_passes(
    serving: RequestPipeline, demos: dict[str, Any], clock: Clock
) -> None:
    serving.predict("breast-cancer", row(demos))
    promote_retrained(demos)
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 1
    clock.now += 6
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 2


def test_a_tampered_new_version_is_refused_and_the_previous_keeps_serving(
    serving: RequestPipeline, demos: dict[str, Any], clock: Clock
) -> None:
    # Given v1 serving as champion, and v2 registered whose stored bytes are later altered
    serving.predict("breast-cancer", row(demos))
    promote_retrained(demos)
    artifacts.put("aimass-test", "models/breast-cancer/2/model.onnx", demos["digits"].model)
    clock.now += 6
    # When the champion moves to v2, v1 keeps answering; asking for v2 by number is refused
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 1
    with pytest.raises(IntegrityError):
        serving.predict("breast-cancer", row(demos), version=2)


def test_a_tampered_model_with_nothing_to_fall_back_to_is_refused(
    moto_aws: None, demos: dict[str, Any], tmp_path: Any
) -> None:
    register_version(wiring.registry(), "aimass-test", "digits", demos["digits"].model, "t")
    artifacts.put("aimass-test", "models/digits/1/model.onnx", b"\x00" * 10)
    with pytest.raises(IntegrityError):
        request_pipeline(wiring.registry(), tmp_path).store.load("digits")


def test_a_cached_model_file_is_checked_again_before_it_is_loaded(
    serving: RequestPipeline, demos: dict[str, Any], tmp_path: Any
) -> None:
    record = wiring.registry().get_version("breast-cancer", 1)
    path = artifacts.cached_path(record.artifact_uri, record.sha256, tmp_path / "cache")
    path.write_bytes(b"corrupted on disk")
    assert serving.predict("breast-cancer", row(demos))["model"]["version"] == 1
    assert artifacts.sha256(path.read_bytes()) == record.sha256


def test_only_the_current_ruleset_stays_compiled_however_many_were_saved(
    serving: RequestPipeline, demos: dict[str, Any], clock: Clock
) -> None:
    from aimass.contracts.rules import Ruleset
    from aimass.registration import save_ruleset

    # Given ten rulesets saved one after another, each used by a prediction
    for threshold in range(10):
        rule = {
            "id": "big",
            "stage": "pre",
            "when": f"input.mean_radius > {threshold}.5",
            "then": {"flag": "big"},
        }
        save_ruleset(wiring.registry(), "breast-cancer", Ruleset.model_validate({"rules": [rule]}), "t")
        clock.now += 6
        serving.predict("breast-cancer", row(demos))
    # Then the store holds one compiled ruleset for the version, the last one saved
    assert list(serving.store._rulesets) == [("breast-cancer", 10, 1)]


def test_a_request_is_local_once_the_store_holds_all_it_needs_and_until_the_ttl_passes(
    serving: RequestPipeline, demos: dict[str, Any], clock: Clock
) -> None:
    # Given a model never asked for, Then answering it needs the registry and S3
    assert not serving.store.local("breast-cancer")
    # When it has answered once, Then the next answer needs nothing outside the process, by any name
    serving.predict("breast-cancer", row(demos))
    assert serving.store.local("breast-cancer") and serving.store.local("breast-cancer", version=1)
    assert not serving.store.local("breast-cancer", version=2)  # a version never loaded
    assert not serving.store.local("breast-cancer", alias="nope")
    # And once the registry TTL has passed, the summary must be read again
    clock.now += 6
    assert not serving.store.local("breast-cancer")
