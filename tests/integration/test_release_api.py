"""Releases through the API: a model's release policy (set, audited, versioned; bad ones refused with
nothing changed), a version released per mode, a rollout under way superseded, approvals (approve,
reject, twice, unknown, bad time) and scheduled releases started when due, once, on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import release, wiring
from aimass.errors import Conflict
from aimass.registration import register_version
from tests.integration.test_traffic_api import client
from tests.support import error_of, retrained

__all__ = ["client"]  # the fixture, shared with test_traffic_api

MODEL = "/v1/models/breast-cancer"
NOW = datetime(2026, 12, 24, 6, 0, tzinfo=UTC)


def audit(client: TestClient) -> list[dict[str, Any]]:
    return client.get(f"{MODEL}/audit").json()  # type: ignore[no-any-return]


def traffic(client: TestClient) -> dict[str, Any]:
    return client.get(f"{MODEL}/traffic").json()  # type: ignore[no-any-return]


def champion(client: TestClient) -> int:
    return client.get(MODEL).json()["aliases"]["champion"]  # type: ignore[no-any-return]


def set_policy(client: TestClient, **policy: Any) -> dict[str, Any]:
    saved = client.put(f"{MODEL}/release-policy", json=policy)
    assert saved.status_code == 200, saved.text
    return saved.json()  # type: ignore[no-any-return]


def test_the_release_policy_defaults_to_a_canary_and_is_versioned_and_audited(client: TestClient) -> None:
    default = client.get(f"{MODEL}/release-policy").json()
    assert (default["mode"], default["approval"], default["version"]) == ("canary", False, 0)

    saved = set_policy(client, mode="shadow-then-canary", approval=True, steps=[10, 50, 100], interval_s=60)

    assert saved["version"] == 1 and client.get(f"{MODEL}/release-policy").json() == saved
    last = audit(client)[-1]
    assert last["action"] == "set_release_policy" and last["details"]["policy"]["approval"] is True
    assert set_policy(client, mode="direct")["version"] == 2


@pytest.mark.parametrize(
    ("policy", "status", "loc"),
    [
        ({"mode": "big-bang"}, 422, ["body", "mode"]),
        ({"steps": [50, 10, 100]}, 422, ["body", "steps"]),
        ({"steps": [10, 50]}, 422, ["body", "steps"]),
        ({"steps": []}, 422, ["body", "steps"]),
        ({"mode": "shadow-then-canary", "shadow": 0}, 422, ["body", "shadow"]),
        ({"canary": 101}, 422, ["body", "canary"]),
        ({"interval_s": 0}, 422, ["body", "interval_s"]),
        ({"approval": "maybe"}, 422, ["body", "approval"]),
    ],
)
def test_a_bad_release_policy_is_refused_where_it_is_wrong_and_nothing_changes(
    client: TestClient, policy: dict[str, Any], status: int, loc: list[Any]
) -> None:
    before = client.get(f"{MODEL}/release-policy").json()
    response = client.put(f"{MODEL}/release-policy", json=policy)
    assert response.status_code == status, response.text
    assert loc in [d["loc"] for d in error_of(response)["details"]]
    assert client.get(f"{MODEL}/release-policy").json() == before


def test_the_release_policy_of_an_unknown_model_is_a_404(client: TestClient) -> None:
    assert client.get("/v1/models/nope/release-policy").status_code == 404
    assert client.put("/v1/models/nope/release-policy", json={"mode": "direct"}).status_code == 404
    assert client.post("/v1/models/nope/versions/1/release").status_code == 404


def test_a_canary_release_starts_a_rollout_and_leaves_the_champion_serving(client: TestClient) -> None:
    set_policy(client, mode="canary", steps=[20, 50, 100])

    released = client.post(f"{MODEL}/versions/2/release")

    assert released.status_code == 200, released.text
    assert released.json()["state"] == "released" and released.json()["rollout"]["state"] == "canary"
    assert traffic(client)["canary"] == {"version": 2, "percent": 20}  # the first step
    assert champion(client) == 1
    assert [r["state"] for r in client.get(f"{MODEL}/release").json()["releases"]] == ["released"]
    assert "release_version" in [a["action"] for a in audit(client)]


def test_a_direct_release_moves_the_champion_at_once(client: TestClient) -> None:
    set_policy(client, mode="direct")

    released = client.post(f"{MODEL}/versions/2/release")

    assert released.status_code == 200, released.text
    assert (released.json()["alias"], released.json()["rollout"]) == ("champion", None)
    assert champion(client) == 2 and traffic(client)["canary"] is None


def test_a_shadow_then_canary_release_starts_its_rollout_with_no_canary_share(client: TestClient) -> None:
    set_policy(client, mode="shadow-then-canary", shadow=25)

    released = client.post(f"{MODEL}/versions/2/release")

    assert released.status_code == 200, released.text
    assert released.json()["mode"] == "shadow-then-canary"
    policy = traffic(client)
    # No request that names no version is answered by v2 yet: its traffic is the shadow phase's
    assert policy["canary"] is None or policy["canary"] == {"version": 2, "percent": 0}
    assert champion(client) == 1


def test_a_release_supersedes_the_rollout_under_way_and_says_so(
    client: TestClient, demos: dict[str, Any]
) -> None:
    demo = demos["breast-cancer"]
    assert client.put(f"{MODEL}/rollout", json={"version": 2, "canary": 30}).status_code == 200
    # Releasing the version being rolled out already is a 409; nothing changes
    again = client.post(f"{MODEL}/versions/2/release")
    assert again.status_code == 409 and error_of(again)["code"] == "already_rolling_out"
    register_version(
        wiring.registry(),
        "aimass-test",
        "breast-cancer",
        retrained(retrained(demo.model)),
        "t",
        demo.enrichment,
    )

    released = client.post(f"{MODEL}/versions/3/release")

    assert released.status_code == 200, released.text
    assert traffic(client)["canary"]["version"] == 3
    aborted = [a for a in audit(client) if a["action"] == "abort_rollout"]
    assert aborted[-1]["note"] == "superseded by the release of v3"


def test_a_version_waits_for_approval_then_its_rollout_starts(client: TestClient) -> None:
    set_policy(client, approval=True)
    before = traffic(client)

    waiting = client.post(f"{MODEL}/versions/2/release", headers={"x-aimass-note": "ticket 17"})

    assert waiting.status_code == 200 and waiting.json()["state"] == "pending_approval"
    assert traffic(client) == before and champion(client) == 1
    asked = audit(client)[-1]
    assert (asked["action"], asked["note"], asked["details"]["version"]) == (
        "request_approval",
        "ticket 17",
        2,
    )
    # Asking again while it waits is a 409
    again = client.post(f"{MODEL}/versions/2/release")
    assert again.status_code == 409 and error_of(again)["code"] == "release_pending"

    approved = client.post(f"{MODEL}/versions/2/approve", json={"note": "report reviewed"})

    assert approved.status_code == 200, approved.text
    assert (approved.json()["state"], approved.json()["note"]) == ("released", "report reviewed")
    assert traffic(client)["canary"]["version"] == 2 and champion(client) == 1
    actions = [a["action"] for a in audit(client)]
    assert actions[-2:] == ["approve_version", "start_rollout"]
    twice = client.post(f"{MODEL}/versions/2/approve")
    assert twice.status_code == 409 and error_of(twice)["code"] == "not_pending"


def test_a_rejected_version_stays_unreleased_and_the_stable_version_serves(client: TestClient) -> None:
    set_policy(client, approval=True)
    client.post(f"{MODEL}/versions/2/release")
    # A rejection needs a note
    bare = client.post(f"{MODEL}/versions/2/reject", json={})
    assert bare.status_code == 422 and ["body", "note"] in [d["loc"] for d in error_of(bare)["details"]]

    rejected = client.post(f"{MODEL}/versions/2/reject", json={"note": "recall dropped"})

    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert traffic(client)["canary"] is None and champion(client) == 1
    last = audit(client)[-1]
    assert (last["action"], last["note"]) == ("reject_version", "recall dropped")
    late = client.post(f"{MODEL}/versions/2/approve")
    assert late.status_code == 409 and error_of(late)["code"] == "not_pending"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("versions/9/approve", {}, 404),
        ("versions/9/reject", {"note": "no"}, 404),
        ("versions/2/approve", {"at": "tomorrow"}, 422),
        ("versions/2/approve", {"at": "2026-13-01T00:00:00Z"}, 422),
        ("versions/2/approve", {"colour": "blue"}, 422),
        ("versions/1/approve", {}, 409),  # never asked for
    ],
)
def test_a_bad_approval_is_refused_and_the_version_still_waits(
    client: TestClient, path: str, body: dict[str, Any], status: int
) -> None:
    set_policy(client, approval=True)
    client.post(f"{MODEL}/versions/2/release")

    response = client.post(f"{MODEL}/{path}", json=body)

    assert response.status_code == status, response.text
    assert client.get(f"{MODEL}/release").json()["releases"][0]["state"] == "pending_approval"
    assert traffic(client)["canary"] is None


def test_an_approval_for_a_later_time_starts_the_release_when_it_is_due_once(client: TestClient) -> None:
    set_policy(client, approval=True)
    client.post(f"{MODEL}/versions/2/release")
    at = NOW + timedelta(hours=1)

    scheduled = client.post(f"{MODEL}/versions/2/approve", json={"at": at.isoformat()})

    assert scheduled.status_code == 200 and scheduled.json()["state"] == "scheduled"
    assert scheduled.json()["at"] == "2026-12-24T07:00:00.000Z"
    stale = wiring.registry().get_release("breast-cancer", 2)
    assert stale is not None
    # Before its time nothing starts; at its time it starts, once
    assert release.start_due(wiring.registry(), NOW) == []
    started = release.start_due(wiring.registry(), at)
    assert [(r.version, r.state) for r in started] == [(2, "released")]
    assert traffic(client)["canary"]["version"] == 2
    assert release.start_due(wiring.registry(), at + timedelta(minutes=5)) == []
    # A second ticker that read the release while it was scheduled cannot claim it again
    with pytest.raises(Conflict):
        wiring.registry().save_release(stale.model_copy(update={"state": "released"}), None, ("scheduled",))


def test_a_release_asked_for_a_later_time_without_approval_is_scheduled(client: TestClient) -> None:
    at = datetime.now(UTC) + timedelta(days=1)

    scheduled = client.post(f"{MODEL}/versions/2/release", json={"at": at.isoformat()})

    assert scheduled.status_code == 200 and scheduled.json()["state"] == "scheduled"
    assert traffic(client)["canary"] is None and audit(client)[-1]["action"] == "schedule_release"
    # Rejected before its time, it never starts
    client.post(f"{MODEL}/versions/2/reject", json={"note": "not this week"})
    assert release.start_due(wiring.registry(), at + timedelta(hours=1)) == []
    assert traffic(client)["canary"] is None


def test_a_scheduled_release_that_cannot_start_when_due_is_kept_as_failed_with_why(
    client: TestClient,
) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    client.post(f"{MODEL}/versions/2/release", json={"at": at.isoformat()})
    # The version is archived before its time
    assert client.patch(f"{MODEL}/versions/2", json={"archived": True}).status_code == 200

    [failed] = release.start_due(wiring.registry(), at)

    assert (failed.version, failed.state) == (2, "failed") and failed.reason and "archived" in failed.reason
    assert traffic(client)["canary"] is None and champion(client) == 1
    assert audit(client)[-1]["action"] == "release_failed"


def test_the_same_pipeline_run_releasing_again_gets_the_release_it_started(client: TestClient) -> None:
    origin = {"pipeline": "run-1", "execution": "arn:run-1", "report": None}
    first = release.release(wiring.registry(), "breast-cancer", 2, "pipeline/run-1", origin=origin)

    # The Release step is retried after its first attempt wrote everything
    again = release.release(wiring.registry(), "breast-cancer", 2, "pipeline/run-1", origin=origin)

    assert again == first and first.rollout is not None
    assert [a["action"] for a in audit(client)].count("start_rollout") == 1
