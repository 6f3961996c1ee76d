"""A graph version is monitored like any version: its captured traffic is judged against the baseline
it shares with its first member, and a shifted feature is found drifted on the graph's version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import wiring
from aimass.api.app import create_app
from aimass.registration import register_version
from tests.integration.test_monitor import MODEL, monitor, rows, send
from tests.support import retrained


@pytest.fixture
def client(registered: Any, demos: dict[str, Any]) -> Iterator[TestClient]:
    demo = demos[MODEL]
    register_version(wiring.registry(), "aimass-test", MODEL, retrained(demo.model), "t", demo.enrichment)
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_graph_versions_traffic_is_judged_against_its_shared_baseline(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given an ensemble v3 of v1 and v2, made the champion
    graph = {"kind": "ensemble", "members": [f"{MODEL}@champion", f"{MODEL}@2"]}
    made = client.post(f"/v1/models/{MODEL}/versions:compose", json={"graph": graph})
    assert made.status_code == 201, made.text
    assert client.put(f"/v1/models/{MODEL}/aliases/champion", json={"version": 3}).status_code == 200
    # and traffic whose mean_radius is 1.5 standard deviations above the baseline's, served by it
    send(client, rows(demos, {"mean_radius": 5.3}))

    # When the model's monitor runs
    summary = monitor()

    # Then the graph's version is the one judged, from every row, and mean_radius alone drifted
    [version] = summary["versions"]
    assert version["version"] == 3 and version["rows"] == 143
    assert version["status"] == "drift" and version["drifted_features"] == ["mean_radius"]
