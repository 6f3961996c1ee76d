"""A model's traffic policy through the API: set, audited and versioned; requests that name no version
split between the stable version and the canary, every answer saying which served it and why; bad
policies refused with nothing changed; a dropped file routed once for the whole file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import wiring
from aimass.api.app import create_app
from aimass.registration import register_version
from tests.support import error_of, retrained

MODEL = "/v1/models/breast-cancer"
PREDICT = f"{MODEL}:predict"


@pytest.fixture
def client(registered: Any, demos: dict[str, Any]) -> Iterator[TestClient]:
    demo = demos["breast-cancer"]
    # Given breast-cancer v1 as champion and a retrained v2
    register_version(
        wiring.registry(), "aimass-test", "breast-cancer", retrained(demo.model), "t", demo.enrichment
    )
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def body(demos: dict[str, Any]) -> dict[str, Any]:
    return {"instances": [demos["breast-cancer"].holdout[0].tolist()]}


def test_a_canary_policy_splits_requests_and_every_answer_says_which_version_and_why(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # When half the traffic goes to v2, sticky by the routing header
    saved = client.put(
        f"{MODEL}/traffic", json={"canary": {"version": 2, "percent": 50}, "sticky_by": "header"}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 1 and client.get(f"{MODEL}/traffic").json() == saved.json()
    # Then each key gets one version, both versions serve, and the variant names the reason
    seen = {}
    for key in [f"user-{i}" for i in range(40)]:
        answers = [
            client.post(PREDICT, json=body(demos), headers={"x-aimass-routing-key": key}).json()
            for _ in range(2)
        ]
        assert answers[0]["model"]["version"] == answers[1]["model"]["version"]
        seen[answers[0]["model"]["version"]] = answers[0]["variant"]
    assert seen == {1: "stable", 2: "canary"}
    # A request that names its version or alias is pinned to it
    assert client.post(f"{MODEL}/versions/2:predict", json=body(demos)).json()["variant"] == "pinned"
    assert client.post(f"{MODEL}/labels/champion:predict", json=body(demos)).json()["model"]["version"] == 1
    # A request without the sticky key gets the stable version
    assert client.post(PREDICT, json=body(demos)).json()["model"]["version"] == 1
    # V2 says it in the response's parameters
    rows = demos["breast-cancer"].holdout[:1]
    v2 = client.post(
        "/v2/models/breast-cancer/infer",
        json={
            "inputs": [
                {"name": "input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.tolist()}
            ]
        },
        headers={"x-aimass-routing-key": "user-1"},
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["parameters"]["variant"] in {"stable", "canary"}
    # The change is audited with the policy it replaced
    last = client.get(f"{MODEL}/audit").json()[-1]
    assert last["action"] == "set_traffic_policy" and last["details"]["policy"]["canary"]["percent"] == 50


@pytest.mark.parametrize(
    ("policy", "status", "loc"),
    [
        ({"canary": {"version": 9, "percent": 10}}, 404, ["path", "version"]),
        ({"canary": {"version": 2, "percent": 101}}, 422, ["body", "canary", "percent"]),
        ({"canary": {"version": 1, "percent": 10}}, 422, ["body", "canary", "version"]),
        ({"canary": {"version": 2, "percent": 10}, "sticky_by": "cookie"}, 422, ["body", "sticky_by"]),
        ({"canary": {"version": 2, "percent": 10}, "sticky_by": "feature:nope"}, 422, ["body", "sticky_by"]),
        ({"shadow": {"version": 1, "percent": 10}}, 422, ["body", "shadow", "version"]),
    ],
)
def test_a_bad_policy_is_refused_where_it_is_wrong_and_nothing_changes(
    client: TestClient, policy: dict[str, Any], status: int, loc: list[Any]
) -> None:
    before = client.get(f"{MODEL}/traffic").json()
    response = client.put(f"{MODEL}/traffic", json=policy)
    assert response.status_code == status, response.text
    if status == 422:
        assert loc in [d["loc"] for d in error_of(response)["details"]]
    assert client.get(f"{MODEL}/traffic").json() == before


def test_an_archived_version_takes_no_traffic(client: TestClient) -> None:
    assert client.patch(f"{MODEL}/versions/2", json={"archived": True}).status_code == 200
    response = client.put(f"{MODEL}/traffic", json={"canary": {"version": 2, "percent": 10}})
    assert response.status_code == 409 and error_of(response)["details"][0]["type"] == "archived"


def test_a_dropped_file_is_routed_once_for_the_whole_file(client: TestClient, demos: dict[str, Any]) -> None:
    from aimass.batch.drop import Drop, process
    from aimass.gateways.s3 import Bucket

    # Given every request that names no version sent to the canary
    client.put(f"{MODEL}/traffic", json={"canary": {"version": 2, "percent": 100}})
    wiring.registry_changed("breast-cancer")
    rows = demos["breast-cancer"].holdout[:5]
    features = [f if isinstance(f, str) else f.name for f in demos["breast-cancer"].enrichment.features]
    csv = ",".join(features) + "\n" + "\n".join(",".join(map(str, r)) for r in rows.tolist()) + "\n"
    Bucket("aimass-test").put("incoming/breast-cancer/day.csv", csv.encode())
    # When the file is predicted
    summary = process(
        Drop("aimass-test", "incoming/breast-cancer/day.csv", "etag"),
        wiring.serving(),
        wiring.batch_settings(),
    )
    # Then its report names the canary as the version that predicted all of it
    report = json.loads(Bucket("aimass-test").get("reports/breast-cancer/day.csv.json"))
    assert summary["status"] == "succeeded" and report["rows"]["predicted"] == 5
    assert (report["model"]["version"], report["variant"]) == (2, "canary")


def test_a_rollout_starts_once_and_ends_by_promotion_that_moves_the_champion(
    client: TestClient, demos: dict[str, Any]
) -> None:
    assert client.get(f"{MODEL}/rollout").json()["state"] == "none"
    started = client.put(f"{MODEL}/rollout", json={"version": 2, "canary": 100})
    assert started.status_code == 200, started.text
    assert (started.json()["state"], started.json()["canary"]["version"]) == ("canary", 2)
    again = client.put(f"{MODEL}/rollout", json={"version": 2, "canary": 10})
    assert again.status_code == 409 and error_of(again)["code"] == "rollout_in_progress"
    assert client.post(PREDICT, json=body(demos)).json()["variant"] == "canary"
    promoted = client.post(f"{MODEL}/rollout/promote")
    assert promoted.status_code == 200 and promoted.json()["stable"] == 2
    assert client.get(MODEL).json()["aliases"]["champion"] == 2
    answer = client.post(PREDICT, json=body(demos)).json()
    assert (answer["model"]["version"], answer["variant"]) == (2, "stable")


@pytest.mark.parametrize(
    ("method", "path", "json_body", "status", "code"),
    [
        ("put", "rollout", {"version": 9}, 404, "not_found"),
        ("put", "rollout", {"version": 1}, 422, "validation_error"),
        ("put", "rollout", {"version": 2, "canary": 150}, 422, "validation_error"),
        ("post", "rollout/promote", None, 409, "no_rollout"),
        ("post", "rollout/abort", None, 409, "no_rollout"),
    ],
)
def test_a_rollout_that_cannot_be_is_a_clear_4xx_and_changes_nothing(
    client: TestClient, method: str, path: str, json_body: Any, status: int, code: str
) -> None:
    before = client.get(MODEL).json()
    response = getattr(client, method)(f"{MODEL}/{path}", **({"json": json_body} if json_body else {}))
    assert response.status_code == status and error_of(response)["code"] == code, response.text
    after = client.get(MODEL).json()
    assert (after["aliases"], after["traffic"]) == (before["aliases"], before["traffic"])


def test_while_a_rollout_is_under_way_its_status_has_each_versions_live_figures(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given v2 rolled out to half the traffic, sticky by key, and 40 keyed requests of 2 instances
    assert (
        client.put(f"{MODEL}/rollout", json={"version": 2, "canary": 50, "sticky_by": "header"}).status_code
        == 200
    )
    two = {"instances": demos["breast-cancer"].holdout[:2].tolist()}
    served = [
        client.post(PREDICT, json=two, headers={"x-aimass-routing-key": f"k{i}"}).json()["model"]["version"]
        for i in range(40)
    ]
    # When the rollout's status is read
    live = client.get(f"{MODEL}/rollout").json()["live"]
    # Then each version's requests are those it answered, with its instances, latency and classes
    assert (live["stable"]["requests"], live["canary"]["requests"]) == (served.count(1), served.count(2))
    for figures, version in ((live["stable"], 1), (live["canary"], 2)):
        assert figures["instances"] == 2 * served.count(version) and figures["error_rate"] == 0
        assert (
            figures["latency_p50_ms"] is not None and figures["latency_p99_ms"] >= figures["latency_p50_ms"]
        )
        assert sum(figures["classes"].values()) == 1.0 and set(figures["classes"]) <= {"malignant", "benign"}
    # And requests pinned to a version, outside the split, are not counted
    client.post(f"{MODEL}/versions/2:predict", json=two)
    assert client.get(f"{MODEL}/rollout").json()["live"]["canary"]["requests"] == served.count(2)
    # Once promoted there is no rollout, and nothing is counted
    assert client.post(f"{MODEL}/rollout/promote").json()["live"] is None


def test_the_lambda_emits_predictions_by_version_and_variant_while_a_rollout_is_under_way(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    from aimass.api.lambda_entry import metrics
    from aimass.local.lambda_runtime import LambdaContext, load_handler
    from tests.support import event

    # Given v2 rolled out to every request of the online function
    assert client.put(f"{MODEL}/rollout", json={"version": 2, "canary": 100}).status_code == 200
    online = load_handler("online")
    metrics.clear_metrics()  # what earlier tests' predictions added without an invocation to flush it
    capsys.readouterr()
    # When it answers a request naming no version
    assert online(event("v1_predict_breast_cancer"), LambdaContext())["statusCode"] == 200
    # Then its EMF line counts it under the model, and under the model, version and variant too
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [line] = [m for m in emf if "Predictions" in m]
    instances = len(json.loads(event("v1_predict_breast_cancer")["body"])["instances"])
    assert (line["model"], line["version"], line["variant"], line["Predictions"]) == (
        "breast-cancer",
        "2",
        "canary",
        [float(instances)],
    )
    dimensions = line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert sorted(map(sorted, dimensions)) == [["model", "service"], ["model", "variant", "version"]]
