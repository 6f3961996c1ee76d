"""The local server's `GET /metrics`: Prometheus' text format, read back with prometheus_client's own
parser, and counters that the request pipeline's observers raise with the request's model, version
and protocol."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aimass.api.app import create_app
from tests.support import Samples, added, prometheus_samples

PREDICT = "/v1/models/breast-cancer:predict"
REJECT_HUGE_RADIUS = {
    "rules": [
        {
            "id": "beyond-training",
            "stage": "pre",
            "when": "input.mean_radius > 1000.0",
            "then": {"reject": "radius beyond anything the model was trained on"},
        }
    ]
}


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def instances(demos: dict[str, Any], count: int) -> list[dict[str, float]]:
    names = [f.name for f in demos["breast-cancer"].enrichment.features]
    return [dict(zip(names, map(float, row), strict=True)) for row in demos["breast-cancer"].holdout[:count]]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return prometheus_samples(response.text)


def test_metrics_answer_prometheus_text_with_the_process_metrics(client: TestClient) -> None:
    # When Prometheus scrapes the local server
    response = client.get("/metrics")
    # Then it gets the text exposition format, which prometheus_client's parser reads, with the
    # process metrics and the request metrics' help and types
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert {"process_cpu_seconds", "python_gc_objects_collected", "python_info"} <= set(families)
    assert families["aimass_predictions"].type == "counter"
    assert families["aimass_request_duration_seconds"].type == "histogram"
    # and the deployed API's OpenAPI document (API Gateway's routes) does not list it
    assert "/metrics" not in client.app.openapi()["paths"]  # type: ignore[attr-defined]


def test_predictions_raise_the_counters_by_model_version_and_protocol(
    client: TestClient, demos: dict[str, Any]
) -> None:
    before = scrape(client)
    # When three instances are predicted over V1 and one over V2
    answer = client.post(PREDICT, json={"instances": instances(demos, 3)}).json()
    version = str(answer["model"]["version"])
    row = demos["breast-cancer"].holdout[0].tolist()
    tensor = client.get("/v2/models/breast-cancer").json()["inputs"][0]["name"]
    infer = {"inputs": [{"name": tensor, "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
    assert client.post("/v2/models/breast-cancer/infer", json=infer).status_code == 200
    after = scrape(client)
    # Then each protocol's requests and instances are counted under the version that answered
    v1 = {"model": "breast-cancer", "version": version, "variant": "", "protocol": "v1"}
    v2 = {**v1, "protocol": "v2"}
    for name, labels, rise in [
        ("aimass_predictions_total", v1, 1),
        ("aimass_prediction_instances_total", v1, 3),
        ("aimass_predictions_total", v2, 1),
        ("aimass_prediction_instances_total", v2, 1),
        ("aimass_request_duration_seconds_count", {"model": "breast-cancer", "protocol": "v1"}, 1),
        ("aimass_request_duration_seconds_count", {"model": "breast-cancer", "protocol": "v2"}, 1),
        ("aimass_anomalies_total", {"model": "breast-cancer", "version": version}, 0),
    ]:
        assert added(before, after, name, **labels) == rise, (name, labels)
    assert (
        "aimass_anomalies_total",
        frozenset({"model": "breast-cancer", "version": version}.items()),
    ) in after


def test_a_rule_rejection_is_counted_as_one_and_as_an_error_by_its_code(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given a rule that rejects an implausible radius
    assert client.put("/v1/models/breast-cancer/rules", json=REJECT_HUGE_RADIUS).status_code == 200
    before = scrape(client)
    # When a request the rule rejects is sent
    rows = instances(demos, 2)
    rows[1]["mean_radius"] = 5000.0
    assert client.post(PREDICT, json={"instances": rows}).status_code == 422
    after = scrape(client)
    # Then it is a rule rejection, an error with the rule_rejected code, and no prediction
    model = {"model": "breast-cancer"}
    rejected = {**model, "code": "rule_rejected"}
    assert added(before, after, "aimass_rule_rejections_total", **model) == 1
    assert added(before, after, "aimass_errors_total", **rejected) == 1
    predicted = sum(v for (name, _), v in after.items() if name == "aimass_predictions_total")
    assert predicted == sum(v for (name, _), v in before.items() if name == "aimass_predictions_total")


def test_a_request_for_an_unknown_model_is_counted_without_the_name_it_gave(client: TestClient) -> None:
    before = scrape(client)
    # When a caller asks for a model that does not exist
    response = client.post("/v1/models/no-such-model-8f3a:predict", json={"instances": [[1.0]]})
    assert response.status_code == 404
    # Then the error is counted under an empty model label: callers cannot grow the exposition
    after = scrape(client)
    unknown = {"model": "", "code": "not_found"}
    assert added(before, after, "aimass_errors_total", **unknown) == 1
    assert "no-such-model-8f3a" not in client.get("/metrics").text


def test_metrics_take_the_predict_scope_when_the_local_server_has_keys(
    registered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import reset_caches

    # Given a local server with an API key and an admin key
    monkeypatch.setenv("AIMASS_API_KEY", "predict-key")
    monkeypatch.setenv("AIMASS_ADMIN_KEY", "admin-key")
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        # Then a scrape without a key is refused, and either key opens it
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"x-api-key": "predict-key"}).status_code == 200
        assert client.get("/metrics", headers={"x-api-key": "admin-key"}).status_code == 200
