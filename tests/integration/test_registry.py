"""The registry on DynamoDB and S3 (moto): versions, aliases, audit, integrity."""

from __future__ import annotations

from typing import Any

import pytest

from aimass import artifacts, aws, wiring
from aimass.errors import AwsUnavailable, Conflict, IntegrityError, NotFound, ValidationFailed
from aimass.registration import register_version, set_alias
from aimass.registry import BATCH_GET_ATTEMPTS, Registry


def push(demos: dict[str, Any], name: str = "breast-cancer", as_name: str | None = None) -> Any:
    demo = demos[name]
    return register_version(
        wiring.registry(), "aimass-test", as_name or name, demo.model, "alice", demo.enrichment
    )


def test_versions_count_up_from_one_and_store_artifact_and_signature(
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
    trail = wiring.registry().audit_page("breast-cancer", 1000).records
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


def test_removing_the_champion_leaves_requests_to_the_latest_version(
    moto_aws: None, demos: dict[str, Any]
) -> None:
    # Given two versions, the first champion
    push(demos), push(demos)
    set_alias(wiring.registry(), "breast-cancer", "champion", 1, "bob")
    # When the champion alias is removed
    removed = wiring.registry().remove_alias("breast-cancer", "champion", "carol")
    # Then it is gone, requests mean the latest version, and the audit trail says who and what
    assert removed.previous_version == 1
    assert wiring.registry().get_model("breast-cancer").aliases == {}
    assert wiring.registry().resolve("breast-cancer").version == 2
    last = wiring.registry().audit_page("breast-cancer", 1000).records[-1]
    assert (last.action, last.actor, last.details) == (
        "remove_alias",
        "carol",
        {"alias": "champion", "previous_version": 1},
    )


def test_removing_an_alias_that_is_not_there_is_not_found(moto_aws: None, demos: dict[str, Any]) -> None:
    push(demos)
    with pytest.raises(NotFound) as raised:
        wiring.registry().remove_alias("breast-cancer", "challenger", "carol")
    assert raised.value.details[0]["loc"] == ["path", "alias"]


def test_an_archived_version_is_skipped_by_latest_but_served_by_number(
    moto_aws: None, demos: dict[str, Any]
) -> None:
    # Given three versions
    push(demos), push(demos), push(demos)
    # When the latest is archived
    standing = wiring.registry().set_archived("breast-cancer", 3, True, "dave")
    # Then requests without a version mean the one before it, and version 3 is still there by number
    assert (standing.archived, standing.latest_active_version) == (True, 2)
    assert wiring.registry().resolve("breast-cancer").version == 2
    assert wiring.registry().resolve("breast-cancer", version=3).version == 3
    summary = wiring.registry().get_model("breast-cancer")
    assert (summary.archived_versions, summary.latest_version) == ([3], 3)
    # And a version registered later is the latest again
    push(demos)
    assert wiring.registry().resolve("breast-cancer").version == 4


def test_an_archived_version_takes_no_alias(moto_aws: None, demos: dict[str, Any]) -> None:
    push(demos), push(demos)
    wiring.registry().set_archived("breast-cancer", 1, True, "dave")
    with pytest.raises(Conflict) as raised:
        set_alias(wiring.registry(), "breast-cancer", "challenger", 1, "bob")
    assert "archived" in raised.value.message
    assert wiring.registry().get_model("breast-cancer").aliases == {}


def test_a_version_an_alias_points_at_cannot_be_archived(moto_aws: None, demos: dict[str, Any]) -> None:
    push(demos)
    set_alias(wiring.registry(), "breast-cancer", "champion", 1, "bob")
    set_alias(wiring.registry(), "breast-cancer", "challenger", 1, "bob")
    with pytest.raises(Conflict) as raised:
        wiring.registry().set_archived("breast-cancer", 1, True, "dave")
    assert "challenger, champion" in raised.value.message
    assert wiring.registry().get_model("breast-cancer").archived_versions == []


def test_with_every_version_archived_only_a_version_by_number_is_served(
    moto_aws: None, demos: dict[str, Any]
) -> None:
    push(demos)
    wiring.registry().set_archived("breast-cancer", 1, True, "dave")
    with pytest.raises(NotFound, match="every version is archived"):
        wiring.registry().resolve("breast-cancer")
    assert wiring.registry().resolve("breast-cancer", version=1).version == 1
    # Unarchived, it is the latest again; both changes are audited
    standing = wiring.registry().set_archived("breast-cancer", 1, False, "erin")
    assert (standing.archived, standing.latest_active_version) == (False, 1)
    assert wiring.registry().resolve("breast-cancer").version == 1
    trail = wiring.registry().audit_page("breast-cancer", 1000).records
    assert [(r.action, r.actor, r.details["version"]) for r in trail[1:]] == [
        ("archive_version", "dave", 1),
        ("unarchive_version", "erin", 1),
    ]


def test_summaries_read_together_are_those_read_one_by_one(moto_aws: None, demos: dict[str, Any]) -> None:
    push(demos)
    push(demos, "digits")
    set_alias(wiring.registry(), "breast-cancer", "champion", 1, "alice")
    registry = wiring.registry()
    # More names than one BatchGetItem takes, some unknown, one twice: the known ones, once each.
    names = ["breast-cancer", "digits", "breast-cancer"] + [f"unknown-{n}" for n in range(120)]

    summaries = registry.get_models(names)

    assert summaries == {name: registry.get_model(name) for name in ("breast-cancer", "digits")}
    assert registry.get_models([]) == {}


class Throttled(Registry):
    """The registry as DynamoDB answers it under throttling: each BatchGetItem leaves its first key
    unprocessed, to be asked again; while the throttling lasts (`to_the_end`), even when it is the
    only key."""

    calls = 0

    def __init__(self, table: str, to_the_end: bool = False) -> None:
        super().__init__(table)
        self.to_the_end = to_the_end

    @property
    def _ddb(self) -> Any:
        client, registry = aws.client("dynamodb"), self

        class Client:
            def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
                registry.calls += 1
                ((table, request),) = RequestItems.items()
                first, rest = request["Keys"][:1], request["Keys"][1:]
                if not rest and not registry.to_the_end:
                    return dict(client.batch_get_item(RequestItems=RequestItems))
                page = client.batch_get_item(RequestItems={table: {**request, "Keys": rest}}) if rest else {}
                return {
                    "Responses": page.get("Responses", {}),
                    "UnprocessedKeys": {table: {**request, "Keys": first}},
                }

        return Client()


def test_summaries_left_unprocessed_are_asked_again(moto_aws: None, demos: dict[str, Any]) -> None:
    push(demos)
    push(demos, "digits")

    throttled = Throttled(wiring.registry().table)

    summaries = throttled.get_models(["breast-cancer", "digits"])

    assert sorted(summaries) == ["breast-cancer", "digits"]
    assert throttled.calls == 2


def test_summaries_throttled_to_the_end_are_aws_unavailable_after_bounded_tries(
    moto_aws: None, demos: dict[str, Any]
) -> None:
    push(demos)
    throttled = Throttled(wiring.registry().table, to_the_end=True)

    with pytest.raises(AwsUnavailable) as raised:
        throttled.get_models(["breast-cancer"])

    assert throttled.calls == BATCH_GET_ATTEMPTS
    assert raised.value.status == 503 and "Retry-After" in raised.value.headers
