"""The registry on DynamoDB and S3 (moto): versions, aliases, audit, integrity."""

from __future__ import annotations

from typing import Any

import pytest

from aimass import artifacts, aws, wiring
from aimass.errors import IntegrityError, NotFound, ValidationFailed
from aimass.registration import register_version, set_alias


def push(demos: dict[str, Any], name: str = "breast-cancer", as_name: str | None = None) -> Any:
    demo = demos[name]
    return register_version(
        wiring.registry(), "aimass-test", as_name or name, demo.model, "alice", demo.enrichment
    )


def test_versions_count_up_from_one_and_store_artifact_signature_and_card(
    moto_aws: None, demos: dict[str, Any]
) -> None:
    first, second = push(demos), push(demos)
    assert (first.version, second.version) == (1, 2)
    keys = {
        o["Key"] for o in aws.client("s3").list_objects_v2(Bucket="aimass-test", Prefix="models/")["Contents"]
    }
    assert {
        "models/breast-cancer/2/model.onnx",
        "models/breast-cancer/2/signature.json",
        "models/breast-cancer/2/model_card.md",
    } <= keys
    assert second.sha256 == artifacts.sha256(demos["breast-cancer"].model)
    assert wiring.registry().get_model("breast-cancer").latest_version == 2


def test_a_version_is_immutable(moto_aws: None, demos: dict[str, Any]) -> None:
    record = push(demos)
    ddb = aws.client("dynamodb")
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        wiring.registry().commit_version(record.model_copy(update={"sha256": "0" * 64}))
    assert wiring.registry().get_version("breast-cancer", 1).sha256 == record.sha256


def test_requests_mean_the_champion_else_the_latest_version(moto_aws: None, demos: dict[str, Any]) -> None:
    push(demos), push(demos)
    assert wiring.registry().resolve("breast-cancer").version == 2
    set_alias(wiring.registry(), "breast-cancer", "champion", 1, "bob")
    assert wiring.registry().resolve("breast-cancer").version == 1
    assert wiring.registry().resolve("breast-cancer", alias="champion").version == 1
    assert wiring.registry().resolve("breast-cancer", version=2).version == 2


def test_unknown_models_versions_and_aliases_are_not_found(moto_aws: None, demos: dict[str, Any]) -> None:
    push(demos)
    for selector in ({}, {"version": 9}, {"alias": "challenger"}):
        name = "nope" if not selector else "breast-cancer"
        with pytest.raises(NotFound):
            wiring.registry().resolve(name, **selector)


def test_every_change_leaves_an_audit_record(moto_aws: None, demos: dict[str, Any]) -> None:
    push(demos)
    set_alias(wiring.registry(), "breast-cancer", "challenger", 1, "bob")
    trail = wiring.registry().audit_trail("breast-cancer")
    assert [(r.action, r.actor) for r in trail] == [("register_version", "alice"), ("set_alias", "bob")]
    assert trail[1].details == {"alias": "challenger", "version": 1, "previous_version": None}


def test_an_alias_is_not_moved_to_a_version_whose_artifact_was_tampered_with(
    moto_aws: None, demos: dict[str, Any]
) -> None:
    record = push(demos)
    artifacts.put("aimass-test", "models/breast-cancer/1/model.onnx", b"tampered")
    with pytest.raises(IntegrityError):
        set_alias(wiring.registry(), "breast-cancer", "champion", record.version, "mallory")
    assert wiring.registry().get_model("breast-cancer").aliases == {}


def test_invalid_names_and_aliases_are_refused(moto_aws: None, demos: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        push(demos, as_name="Bad Name!")
    push(demos)
    with pytest.raises(ValidationFailed):
        set_alias(wiring.registry(), "breast-cancer", "Not An Alias", 1, "bob")
