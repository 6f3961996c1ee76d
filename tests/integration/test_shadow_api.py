"""Shadow traffic through the API against moto: a shadow version runs on the stable version's sampled
requests, never answers them, is captured beside them under the same prediction ids, and is compared
with them in the rollout's status; a failing shadow changes nothing the caller sees; bad shadow
policies are refused with nothing changed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import onnx
import pytest
from fastapi.testclient import TestClient

from aimass import aws, wiring
from aimass.api.app import create_app
from aimass.capture import PredictionId
from aimass.registration import register_version
from tests.support import error_of, retrained

BUCKET = "aimass-test"
MODEL = "/v1/models/breast-cancer"
PREDICT = f"{MODEL}:predict"


@pytest.fixture
def client(registered: Any, demos: dict[str, Any]) -> Iterator[TestClient]:
    demo = demos["breast-cancer"]
    # Given breast-cancer v1 as champion and a retrained v2 (the same graph in other bytes)
    register_version(wiring.registry(), BUCKET, "breast-cancer", retrained(demo.model), "t", demo.enrichment)
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def two(demos: dict[str, Any], start: int = 0) -> dict[str, Any]:
    return {"instances": demos["breast-cancer"].holdout[start : start + 2].tolist()}


def objects(prefix: str) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def lines(keys: list[str]) -> list[dict[str, Any]]:
    s3 = aws.client("s3")
    return [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()
        if line.strip()
    ]


def settle() -> None:
    """The shadow runs enqueued so far done, and the captures so far written."""
    assert wiring.serving().shadows.drain()
    wiring.flush_capture()


def test_a_shadow_rollout_runs_the_version_beside_the_stable_one_and_never_answers(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # When v2 is rolled out as a shadow of every request, with no canary share
    started = client.put(f"{MODEL}/rollout", json={"version": 2, "shadow": 100})
    assert started.status_code == 200, started.text
    assert (started.json()["state"], started.json()["canary"]) == ("shadow", None)
    assert started.json()["shadow"] == {"version": 2, "percent": 100}
    answers = [client.post(PREDICT, json=two(demos, i)).json() for i in range(6)]
    # Then v1 answers every request, and nothing in the answer is the shadow's
    assert {(a["model"]["version"], a["variant"]) for a in answers} == {(1, "stable")}
    assert all(set(a) == {"predictions", "model", "prediction_ids", "variant"} for a in answers)
    # And the shadow's lines are captured under shadow/, one per instance, with the served ids
    settle()
    served_ids = [i for a in answers for i in a["prediction_ids"]]
    shadow = lines(objects("capture/breast-cancer/shadow/"))
    assert sorted(line["eventMetadata"]["eventId"] for line in shadow) == sorted(served_ids)
    assert {(line["eventMetadata"]["modelVersion"], line["eventMetadata"]["variant"]) for line in shadow} == {
        (2, "shadow")
    }
    hour = PredictionId.parse(served_ids[0]).hour
    folder = f"capture/breast-cancer/shadow/{hour[:4]}/{hour[4:6]}/{hour[6:8]}/{hour[8:]}/"
    assert all(key.startswith(folder) for key in objects("capture/breast-cancer/shadow/"))
    # And the served lines say which variant answered; feedback's reads by id never meet the shadow's
    first = PredictionId.parse(served_ids[0])
    served = {line["eventMetadata"]["eventId"]: line for line in lines([first.key])}
    assert served[served_ids[0]]["eventMetadata"]["variant"] == "stable"
    by_id = {line["eventMetadata"]["eventId"]: line for line in shadow}
    for event_id, line in served.items():
        if event_id in by_id:  # the same instance: the same inputs, and here the same label
            assert by_id[event_id]["captureData"]["endpointInput"] == line["captureData"]["endpointInput"]
            output = json.loads(by_id[event_id]["captureData"]["endpointOutput"]["data"])
            assert output["label"] == json.loads(line["captureData"]["endpointOutput"]["data"])["label"]
    # And the rollout's status compares the shadow with the stable version on those requests
    live = client.get(f"{MODEL}/rollout").json()["live"]
    assert set(live) == {"stable", "shadow"}
    assert (live["stable"]["requests"], live["stable"]["instances"]) == (6, 12)
    assert (live["shadow"]["requests"], live["shadow"]["errors"], live["shadow"]["skipped"]) == (6, 0, 0)
    assert (live["shadow"]["compared"], live["shadow"]["agreement"]) == (12, 1.0)
    assert live["shadow"]["latency_p50_ms"] is not None and live["stable"]["compared"] == 0
    # When it is promoted, the shadow's version becomes the champion and serves every request
    promoted = client.post(f"{MODEL}/rollout/promote")
    assert promoted.status_code == 200 and (promoted.json()["state"], promoted.json()["stable"]) == (
        "promoted",
        2,
    )
    assert client.post(PREDICT, json=two(demos)).json()["model"]["version"] == 2


def test_a_failing_shadow_leaves_every_answer_as_it_was(client: TestClient, demos: dict[str, Any]) -> None:
    demo = demos["breast-cancer"]
    # Given a v3 whose model file is removed from S3 once it is rolled out as a shadow
    proto = onnx.load_from_string(demo.model)
    proto.doc_string = f"gone {uuid.uuid4().hex}"  # bytes no earlier test cached on disk
    broken = register_version(
        wiring.registry(), BUCKET, "breast-cancer", proto.SerializeToString(), "t", demo.enrichment
    )
    before = [client.post(f"{MODEL}/versions/1:predict", json=two(demos, i)).json() for i in range(5)]
    assert client.put(f"{MODEL}/rollout", json={"version": broken.version, "shadow": 100}).status_code == 200
    aws.client("s3").delete_object(Bucket=BUCKET, Key=broken.artifact_uri.split("/", 3)[3])
    # When requests are answered
    responses = [client.post(PREDICT, json=two(demos, i)) for i in range(5)]
    # Then each is a 200 with the very answer v1 gave before
    assert [r.status_code for r in responses] == [200] * 5
    assert [r.json()["predictions"] for r in responses] == [b["predictions"] for b in before]
    # And the shadow's failures are counted, with nothing compared and nothing captured
    settle()
    shadow = client.get(f"{MODEL}/rollout").json()["live"]["shadow"]
    assert (shadow["requests"], shadow["errors"], shadow["error_rate"]) == (5, 5, 1.0)
    assert (shadow["compared"], shadow["agreement"]) == (0, None)
    assert objects("capture/breast-cancer/shadow/") == []
    # And a shadow archived while it runs is counted the same way
    assert client.post(f"{MODEL}/rollout/abort").json()["state"] == "aborted"
    assert client.put(f"{MODEL}/rollout", json={"version": 2, "shadow": 100}).status_code == 200
    assert client.patch(f"{MODEL}/versions/2", json={"archived": True}).status_code == 200
    wiring.registry_changed("breast-cancer")
    assert client.post(PREDICT, json=two(demos)).json()["predictions"] == before[0]["predictions"]
    settle()
    assert client.get(f"{MODEL}/rollout").json()["live"]["shadow"]["errors"] == 1


def test_a_shadow_may_be_the_canary_and_its_runs_never_mix_with_what_it_served(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given v2 as the canary of half the keys and the shadow of every request v1 answers
    policy = {"canary": {"version": 2, "percent": 50}, "shadow": {"version": 2, "percent": 100}}
    saved = client.put(f"{MODEL}/traffic", json={**policy, "sticky_by": "header"})
    assert saved.status_code == 200, saved.text
    served = [
        client.post(PREDICT, json=two(demos), headers={"x-aimass-routing-key": f"k{i}"}).json()
        for i in range(30)
    ]
    by_stable = sum(a["model"]["version"] == 1 for a in served)
    assert 0 < by_stable < 30
    settle()
    # Then the canary's figures are the requests it answered, the shadow's the ones it ran beside v1
    status = client.get(f"{MODEL}/rollout").json()
    assert status["state"] == "canary"
    live = status["live"]
    assert (live["stable"]["requests"], live["canary"]["requests"]) == (by_stable, 30 - by_stable)
    assert (live["shadow"]["requests"], live["shadow"]["compared"]) == (by_stable, 2 * by_stable)
    assert live["canary"]["compared"] == 0


@pytest.mark.parametrize(
    ("policy", "status", "loc"),
    [
        ({"shadow": {"version": 1, "percent": 10}}, 422, ["body", "shadow", "version"]),
        ({"shadow": {"version": 9, "percent": 10}}, 404, None),
        ({"shadow": {"version": 2, "percent": 101}}, 422, ["body", "shadow", "percent"]),
        ({"shadow": {"version": 2, "percent": -1}}, 422, ["body", "shadow", "percent"]),
        ({"shadow": {"version": 2}}, 422, ["body", "shadow", "percent"]),
    ],
)
def test_a_bad_shadow_is_refused_where_it_is_wrong_and_nothing_changes(
    client: TestClient, policy: dict[str, Any], status: int, loc: list[Any] | None
) -> None:
    before = client.get(MODEL).json()
    response = client.put(f"{MODEL}/traffic", json=policy)
    assert response.status_code == status, response.text
    if loc is not None:
        assert loc in [d["loc"] for d in error_of(response)["details"]]
    after = client.get(MODEL).json()
    assert (after["traffic"], after["aliases"]) == (before["traffic"], before["aliases"])


def test_an_archived_version_shadows_nothing(client: TestClient) -> None:
    assert client.patch(f"{MODEL}/versions/2", json={"archived": True}).status_code == 200
    response = client.put(f"{MODEL}/traffic", json={"shadow": {"version": 2, "percent": 10}})
    assert response.status_code == 409 and error_of(response)["details"][0]["type"] == "archived"
    started = client.put(f"{MODEL}/rollout", json={"version": 2, "shadow": 10})
    assert started.status_code == 409 and client.get(f"{MODEL}/traffic").json()["version"] == 0


def test_a_shadow_rollout_blocks_another_and_is_aborted_like_a_canary(client: TestClient) -> None:
    before = client.get(MODEL).json()["traffic"]
    assert client.put(f"{MODEL}/rollout", json={"version": 1, "shadow": 10}).status_code == 422
    assert client.put(f"{MODEL}/rollout", json={"version": 9, "shadow": 10}).status_code == 404
    out_of_range = client.put(f"{MODEL}/rollout", json={"version": 2, "shadow": 150})
    assert out_of_range.status_code == 422
    assert ["body", "shadow"] in [d["loc"] for d in error_of(out_of_range)["details"]]
    assert client.get(MODEL).json()["traffic"] == before
    assert client.put(f"{MODEL}/rollout", json={"version": 2, "shadow": 10}).status_code == 200
    again = client.put(f"{MODEL}/rollout", json={"version": 2, "canary": 10})
    assert again.status_code == 409 and error_of(again)["code"] == "rollout_in_progress"
    assert "shadow" in error_of(again)["message"]
    aborted = client.post(f"{MODEL}/rollout/abort")
    assert aborted.status_code == 200 and (aborted.json()["state"], aborted.json()["shadow"]) == (
        "aborted",
        None,
    )
    assert client.get(MODEL).json()["aliases"]["champion"] == 1


def test_the_lambda_emits_the_shadows_runs_and_agreement_by_version_and_variant(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    from aimass.local.lambda_runtime import LambdaContext, load_handler
    from tests.support import event

    assert client.put(f"{MODEL}/rollout", json={"version": 2, "shadow": 100}).status_code == 200
    online = load_handler("online")
    capsys.readouterr()
    assert online(event("v1_predict_breast_cancer"), LambdaContext())["statusCode"] == 200
    assert wiring.serving().shadows.drain()
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    shadow = [m for m in emf if "RolloutShadowCompared" in m]
    assert shadow and (shadow[-1]["model"], shadow[-1]["version"], shadow[-1]["variant"]) == (
        "breast-cancer",
        "2",
        "shadow",
    )
    last = {k: v for k, v in shadow[-1].items() if k.startswith("RolloutShadow")}
    assert (last["RolloutShadowRuns"], last["RolloutShadowErrors"]) == ([1.0], [0.0])
    assert last["RolloutShadowCompared"] == last["RolloutShadowAgreed"] == [2.0]
    stable = [m for m in emf if "Predictions" in m]
    assert stable and stable[-1]["variant"] == "stable"


def test_an_invocations_end_waits_for_the_served_lines_never_for_a_shadows(
    client: TestClient, demos: dict[str, Any]
) -> None:
    from aimass.capture import CaptureWriter
    from aimass.serving import codecs
    from aimass.serving.pipeline import Answered

    model = wiring.serving().store.load("breast-cancer")
    rows = demos["breast-cancer"].holdout[:1].tolist()
    outputs = model.run(codecs.v1_feeds(model.version.signature, rows))
    served = Answered(model.version, 1, feeds=codecs.v1_feeds(model.version.signature, rows), outputs=outputs)
    # Given a served answer and its shadow's, in a writer whose batches never seal on their own
    writer = CaptureWriter(BUCKET, max_age_s=3600)
    ids = writer(served)
    assert ids is not None
    writer.shadow(served, ids)
    # When an invocation ends, only the served lines are written; the shadow's at the next flush
    writer.flush(shadows=False)
    assert objects("capture/breast-cancer/") != [] and objects("capture/breast-cancer/shadow/") == []
    writer.flush()
    [line] = lines(objects("capture/breast-cancer/shadow/"))
    assert line["eventMetadata"]["eventId"] == ids[0]
