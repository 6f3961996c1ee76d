"""Rollouts on their schedule against moto (aimass.rollout.tick with a fake clock): a canary moved
through its steps and promoted, one with errors rolled back with its guard, figures, audit record
and a notice on the pipeline topic; ticks that race; a registry outage during a step; labels given
during a rollout counted as its live accuracy; the API's start, status and tick."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from fastapi.testclient import TestClient

from aimass import aws, rollout, wiring
from aimass.api.app import create_app
from aimass.config import settings
from aimass.contracts.registry import Guards, ModelSummary, RolloutStart
from aimass.local.lambda_runtime import LambdaContext, load_handler
from aimass.registration import register_version
from aimass.registry import Registry
from aimass.serving.live import bucket_of
from tests.conftest import drained, subscribed_queue
from tests.support import event, retrained

MODEL = "breast-cancer"


@pytest.fixture
def topic(registered: Any, demos: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """breast-cancer v1 as champion and a retrained v2; the pipeline topic with a queue on it."""
    demo = demos[MODEL]
    register_version(wiring.registry(), "aimass-test", MODEL, retrained(demo.model), "t", demo.enrichment)
    arn = aws.client("sns").create_topic(Name="aimass-pipeline")["TopicArn"]
    monkeypatch.setenv("AIMASS_PIPELINE_TOPIC_ARN", arn)
    settings.cache_clear()
    yield subscribed_queue(arn, "rollout-notices")
    settings.cache_clear()


def notices(queue: str) -> list[dict[str, Any]]:
    return [{"subject": m["Subject"], "message": m["Message"]} for m in drained(aws.client("sqs"), queue)]


def served(version: int, requests: int, errors: int = 0, seconds: float = 0.004) -> None:
    """Live counts of `requests` routed to `version` under the rollout, as the serving containers add them."""
    live_key = wiring.registry().get_model(MODEL).traffic.live_key
    counters = {"requests": requests, "errors": errors, f"lat_{bucket_of(seconds):02d}": requests}
    wiring.registry().add_live_counts(MODEL, live_key, version, counters)


def started(steps: list[float] | None = None, **guards: Any) -> datetime:
    plan = rollout.start(
        wiring.registry(),
        MODEL,
        RolloutStart(version=2, steps=steps, interval_s=60, guards=Guards(**guards)),
        "ops",
    ).plan
    assert plan is not None
    return datetime.fromisoformat(plan.step_started_at)


def tick(at: datetime) -> Any:
    return rollout.tick(wiring.registry(), MODEL, at, wiring.rollout_notices)


def actions() -> list[str]:
    return [r.action for r in wiring.registry().audit_page(MODEL, 100).records]


def test_a_canary_takes_each_step_when_its_interval_passed_and_is_promoted_after_the_last(topic: str) -> None:
    # Given a rollout of v2 in steps of 10, 50 and 100 % a minute apart, judged from 20 requests
    t0 = started([10, 50, 100], min_requests=20)
    served(1, 200)
    served(2, 30)
    # When a tick comes before the interval has passed, Then it stays at 10 %, its guards judged
    early = tick(t0 + timedelta(seconds=30))
    assert early.canary.percent == 10 and early.plan.step == 0
    assert {r.guard: r.status for r in early.judgement}["error_rate"] == "passed"
    assert early.next_step_at == (t0 + timedelta(seconds=60)).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    # When the interval has passed, Then it moves to 50 %, and again only a minute later to 100 %
    t1 = t0 + timedelta(seconds=61)
    assert tick(t1).canary.percent == 50
    assert tick(t1 + timedelta(seconds=30)).canary.percent == 50
    assert tick(t1 + timedelta(seconds=61)).canary.percent == 100
    # Then after the last step it is promoted: v2 the champion, the policy empty, the outcome kept
    done = tick(t1 + timedelta(seconds=122))
    assert done.state == "promoted" and done.stable == 2 and done.canary is None and done.plan is None
    assert done.outcome is not None and done.outcome.actor.startswith("rollout/")
    assert done.outcome.live is not None and done.outcome.live["canary"].requests == 30
    assert wiring.registry().get_model(MODEL).aliases["champion"] == 2
    assert actions()[-4:] == ["start_rollout", "rollout_step", "rollout_step", "promote_rollout"]
    # The live counts went on under one rollout across the steps
    assert [n["subject"] for n in notices(topic)] == [f"aimass rollout {MODEL}: v2 promoted"]


def test_a_canary_with_errors_is_rolled_back_with_its_guard_audit_and_notice(topic: str) -> None:
    # Given a rollout of v2 at 10 % and a canary failing one request in four
    t0 = started([10, 100], min_requests=20)
    served(1, 200, errors=2)
    served(2, 40, errors=10)
    # When the schedule ticks, before the step is due
    after = tick(t0 + timedelta(seconds=5))
    # Then the stable version serves everything and the rollout reads rolled_back, with its guard
    assert after.state == "rolled_back" and after.canary is None and after.plan is None
    outcome = after.outcome
    assert outcome is not None and outcome.guard is not None and outcome.guard.guard == "error_rate"
    assert (
        outcome.guard.figures["canary_error_rate"] == 0.25
        and outcome.guard.figures["stable_error_rate"] == 0.01
    )
    assert wiring.registry().get_model(MODEL).aliases["champion"] == 1
    # And it is audited, with the guard
    last = wiring.registry().audit_page(MODEL, 100).records[-1]
    assert last.action == "rollback_rollout" and last.details["guard"]["guard"] == "error_rate"
    assert last.details["policy"]["canary"] is None
    # And a notice on the pipeline topic says so, with the figures and the outcome as JSON last
    [notice] = notices(topic)
    assert notice["subject"] == f"aimass rollout {MODEL}: v2 rolled back (error_rate)"
    assert "canary: 40 requests, error rate 0.25" in notice["message"]
    assert json.loads(notice["message"].splitlines()[-1])["state"] == "rolled_back"
    # And a later tick finds nothing to do
    assert tick(t0 + timedelta(seconds=120)).state == "rolled_back"


def test_a_notice_that_cannot_be_published_never_undoes_the_rollback(
    topic: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    t0 = started([10, 100], min_requests=20)
    served(1, 100)
    served(2, 100, errors=100)
    monkeypatch.setenv("AIMASS_PIPELINE_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:no-such-topic")
    settings.cache_clear()
    assert tick(t0).state == "rolled_back"
    assert any("not published" in r.getMessage() for r in caplog.records)


class StaleOnce(Registry):
    """The registry as a tick reads it when another tick wrote right after its read: the first
    read of the model gives the summary as it was before."""

    def __init__(self, table: str, before: ModelSummary) -> None:
        super().__init__(table)
        self.before: ModelSummary | None = before

    def get_model(self, name: str) -> ModelSummary:
        if self.before is not None:
            before, self.before = self.before, None
            return before
        return super().get_model(name)


def test_of_two_ticks_racing_one_takes_the_step_and_the_other_changes_nothing(topic: str) -> None:
    t0 = started([10, 50, 100], min_requests=20)
    served(1, 100)
    served(2, 100)
    seen = wiring.registry().get_model(MODEL)
    due = t0 + timedelta(seconds=61)
    # When one tick takes the step, and another that read the model before it then acts
    assert tick(due).canary.percent == 50
    late = rollout.tick(StaleOnce(wiring.registry().table, seen), MODEL, due, wiring.rollout_notices)
    # Then the second one's write is refused (Conflict) and the rollout took one step, not two
    assert late.canary.percent == 50 and late.plan.step == 1
    assert actions().count("rollout_step") == 1


def test_a_registry_outage_during_a_step_leaves_the_last_good_policy(
    topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a rollout whose step is due
    t0 = started([10, 50, 100], min_requests=20)
    served(1, 100)
    served(2, 100)
    before = wiring.registry().get_model(MODEL).traffic
    # When the registry cannot be written (DynamoDB unreachable for the tick's write)
    events = aws.client("dynamodb").meta.events

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    events.register("before-call.dynamodb.TransactWriteItems", unreachable)
    try:
        with pytest.raises(EndpointConnectionError):
            tick(t0 + timedelta(seconds=61))
        # tick_all logs it, ticks the other models, and says which failed
        with pytest.raises(rollout.TickFailed, match=MODEL):
            rollout.tick_all(wiring.registry(), t0 + timedelta(seconds=61), wiring.rollout_notices)
    finally:
        events.unregister("before-call.dynamodb.TransactWriteItems", unreachable)
    # Then the policy is the last one written: the canary at 10 %, at the same version
    assert wiring.registry().get_model(MODEL).traffic == before
    assert any("not ticked" in r.getMessage() for r in caplog.records)
    # And once the registry answers, the next tick takes the step
    assert tick(t0 + timedelta(seconds=62)).canary.percent == 50


def test_labels_given_during_a_rollout_are_its_live_accuracy_through_the_api(
    topic: str, demos: dict[str, Any]
) -> None:
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        # Given a rollout started through the API sending every request to v2, judged by hand
        body = {"version": 2, "canary": 100, "guards": {"min_requests": 5, "min_labelled": 2}}
        start = client.put(f"/v1/models/{MODEL}/rollout", json=body)
        assert start.status_code == 200, start.text
        assert start.json()["plan"]["steps"] == [] and start.json()["next_step_at"] is None
        rows = demos[MODEL].holdout[:4].tolist()
        answer = client.post(f"/v1/models/{MODEL}:predict", json={"instances": rows}).json()
        assert answer["model"]["version"] == 2
        # When three of its four predictions are labelled with what it said, one with the other class
        said = [p["label"] for p in answer["predictions"]]
        other = {"malignant": "benign", "benign": "malignant"}
        given = [*said[:3], other[said[3]]]
        labels = [
            {"prediction_id": p, "label": g} for p, g in zip(answer["prediction_ids"], given, strict=True)
        ]
        assert client.post(f"/v1/models/{MODEL}/feedback", json={"labels": labels}).status_code == 200
        # Then the rollout's live figures have v2's accuracy from them, and the guard waits for v1's
        status = client.get(f"/v1/models/{MODEL}/rollout").json()
        assert (status["live"]["canary"]["labelled"], status["live"]["canary"]["accuracy"]) == (4, 0.75)
        assert {r["guard"]: r["status"] for r in status["judgement"]}["accuracy"] == "waiting"
        # And a tick through the API judges it and leaves a rollout without steps where it is
        ticked = client.post(f"/v1/models/{MODEL}/rollout/tick")
        assert ticked.status_code == 200 and ticked.json()["state"] == "canary"


def test_a_plan_that_cannot_run_is_a_422_where_it_is_wrong_and_nothing_changes(topic: str) -> None:
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        before = client.get(f"/v1/models/{MODEL}/traffic").json()
        refused = client.put(f"/v1/models/{MODEL}/rollout", json={"version": 2, "steps": [50, 20]})
        assert refused.status_code == 422
        locs = [d["loc"] for d in refused.json()["error"]["details"]]
        assert locs == [["body", "steps", 1], ["body", "steps", 1]]
        bad_guard = client.put(
            f"/v1/models/{MODEL}/rollout", json={"version": 2, "guards": {"min_request": 5}}
        )
        assert bad_guard.status_code == 422
        assert bad_guard.json()["error"]["details"][0]["loc"] == ["body", "guards", "min_request"]
        assert client.get(f"/v1/models/{MODEL}/traffic").json() == before
        assert client.post(f"/v1/models/{MODEL}/rollout/tick").json()["state"] == "none"


def test_the_rollout_function_ticks_every_rollout_on_its_schedules_event(topic: str) -> None:
    # Given a rollout whose canary fails every request it took
    started([10, 100], min_requests=20)
    served(1, 100)
    served(2, 100, errors=100)
    # When the schedule invokes the rollout function with its event
    handler = load_handler("rollout")
    answer = handler(event("scheduler_rollout_tick"), LambdaContext(function_name="aimass-rollout"))
    # Then it ticked the model: rolled back, and said so on the pipeline topic
    assert answer == {
        "releases": [],
        "rollouts": [{"name": MODEL, "state": "rolled_back", "policy_version": 2}],
    }
    assert [n["subject"] for n in notices(topic)] == [f"aimass rollout {MODEL}: v2 rolled back (error_rate)"]


def test_a_canary_widened_by_hand_stays_in_its_rollout_and_another_policy_ends_it(topic: str) -> None:
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        t0 = started([10, 50, 100], min_requests=20)
        plan = client.get(f"/v1/models/{MODEL}/rollout").json()["plan"]
        # When the canary is widened by hand, Then the plan, its id and the live figures go on
        widened = client.put(f"/v1/models/{MODEL}/traffic", json={"canary": {"version": 2, "percent": 30}})
        assert widened.status_code == 200 and widened.json()["rollout"] == plan["id"]
        served(2, 7)
        status = client.get(f"/v1/models/{MODEL}/rollout").json()
        assert status["plan"] == plan and status["live"]["canary"]["requests"] == 7
        # And the schedule's next step replaces it
        served(1, 100)
        served(2, 100)
        assert tick(t0 + timedelta(seconds=61)).canary.percent == 50
        # When the policy is emptied by hand, Then the rollout is over: no plan, nothing to tick
        assert client.put(f"/v1/models/{MODEL}/traffic", json={}).status_code == 200
        after = client.get(f"/v1/models/{MODEL}/rollout").json()
        assert (
            after["plan"] is None
            and after["state"] == "none"
            and wiring.registry().get_model(MODEL).rollout_plan is None
        )
