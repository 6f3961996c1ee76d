"""A monitor run's page and figures, against moto: traffic predicted through the API is captured, a
run keeps a seeded sample of the window (never a personal feature's values) and its rates per hour,
`aimass monitor run|report --html` draws the run's page from the API's answers, and the local
server's /metrics shows the run's figures as gauges."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass.cli.common import FAILED
from aimass.monitoring.judge import PII_SKIP
from tests.integration.test_cli import api, cli
from tests.integration.test_monitor import MODEL, rows, send

__all__ = ["api"]  # the fixture, shared with test_cli

PERSONAL = "worst_area"


def answer_of(stdout: str) -> Any:
    """The command's JSON answer. The API it calls runs in this process, so the EMF lines of a monitor
    run (once an earlier test loaded a Lambda handler, which adds the EMF sink) share its stdout."""
    return json.loads("\n".join(line for line in stdout.splitlines() if not line.startswith('{"_aws"')))


@pytest.fixture
def drifted(api: TestClient, demos: dict[str, Any]) -> dict[str, Any]:
    """Traffic with mean_texture 1.5 standard deviations (about 6.5) above the baseline's, and
    worst_area personal (captured as tokens), judged by a run: its summary."""
    marked = api.put(f"/v1/models/{MODEL}/quality", json={"pii": "tokenise", "pii_features": [PERSONAL]})
    assert marked.status_code == 200, marked.text
    send(api, rows(demos, {"mean_texture": 6.5}))
    ran = api.post(f"/v1/models/{MODEL}/monitor:run", json={"since": "1h"})
    assert ran.status_code == 200, ran.text
    summary: dict[str, Any] = ran.json()
    return summary


def test_a_run_keeps_a_sample_without_personal_values_and_its_rates_per_hour(
    api: TestClient, drifted: dict[str, Any]
) -> None:
    # Given the run over the shifted traffic
    [version] = drifted["versions"]
    assert version["drifted_features"] == ["mean_texture"]

    # When its sample is read through the API
    route = f"/v1/models/{MODEL}/monitor/runs/{drifted['run']}/files/1"
    sample = api.get(f"{route}/sample.json").json()

    # Then it holds every row of the small window, per feature, and each row's prediction
    assert (sample["rows"], sample["of"]) == (143, 143)
    assert len(sample["features"]["mean_texture"]) == 143
    assert len(sample["predictions"]) == 143 and set(sample["predictions"]) <= {"malignant", "benign"}
    # but nothing of the personal feature: not its values, not its tokens
    assert PERSONAL not in sample["features"] and sample["left_out"] == [PERSONAL]
    assert all(isinstance(v, float) for values in sample["features"].values() for v in values)
    # and the summary counts the flagged and anomalous rows per hour, beside the rows per hour
    hours = version["rows_by_hour"]
    assert list(hours.values()) == [143]
    assert version["flagged_by_hour"].keys() == hours.keys()
    assert sum(version["flagged_by_hour"].values()) == round(version["flag_rate"] * 143)
    assert sum(version["anomalies_by_hour"].values()) == round(version["anomaly_rate"] * 143)


def test_monitor_report_html_draws_the_runs_page_naming_the_drifted_feature(
    api: TestClient, drifted: dict[str, Any], tmp_path: Path
) -> None:
    page = tmp_path / "run.html"

    # When the run's page is drawn from the API
    shown = cli("monitor", "report", MODEL, drifted["run"], "--html", str(page))

    # Then the command exits 1 (drift), and the page names the drifted feature first
    assert shown.exit_code == FAILED, shown.output
    html = page.read_text()
    assert f"<h1>Monitor run {drifted['run']}: {MODEL}</h1>" in html
    summary = html.split("<h2>Summary</h2>", 1)[1].split("</dl>", 1)[0]
    assert "1 of 29" in summary and "<code>mean_texture</code>" in summary
    # and says why the personal feature was skipped
    assert f"<code>{PERSONAL}</code>: {PII_SKIP}" in html
    # with the distributions and the predictions against the baseline, and the rates per hour
    for section in ("Feature drift", "Predictions", "Rates over time", "Violations"):
        assert f"<h2>{section}</h2>" in html
    hour = next(iter(drifted["versions"][0]["rows_by_hour"]))
    assert re.search(rf"<td>{hour}:00:00Z</td>\s*<td>143</td>", html)
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 3
    # and is self-contained: nothing fetched from elsewhere
    assert "http://" not in html and "https://" not in html


def test_monitor_run_html_writes_the_page_of_the_run_it_started(
    api: TestClient, demos: dict[str, Any], tmp_path: Path
) -> None:
    # Given clean traffic
    send(api, rows(demos))
    page = tmp_path / "clean.html"

    # When a run is started with --html
    ran = cli("monitor", "run", MODEL, "--since", "1h", "--html", str(page), "--json")

    # Then it found no drift, and its page says so
    assert ran.exit_code == 0, ran.output
    assert answer_of(ran.stdout)["outcome"] == "no_drift"
    assert "0 of 30" in page.read_text()


def test_a_run_file_that_is_not_one_is_refused_and_a_version_not_judged_has_none(
    api: TestClient, drifted: dict[str, Any]
) -> None:
    route = f"/v1/models/{MODEL}/monitor/runs/{drifted['run']}/files"

    unknown = api.get(f"{route}/1/secrets.json")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["loc"] == ["path", "file"]
    assert api.get(f"{route}/0/drift.json").status_code == 422
    missing = api.get(f"{route}/7/drift.json")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (
        api.get(f"/v1/models/{MODEL}/monitor/runs/20260101T000000000Z-abcdef/files/1/drift.json").status_code
        == 404
    )
    assert api.get(f"/v1/models/nope/monitor/runs/{drifted['run']}/files/1/drift.json").status_code == 404


def test_the_local_metrics_show_the_last_runs_figures_as_gauges(
    api: TestClient, drifted: dict[str, Any]
) -> None:
    [version] = drifted["versions"]

    exposition = api.get("/metrics").text

    labels = f'{{model="{MODEL}",version="1"}}'
    assert f"aimass_monitor_drifted_features{labels} 1.0" in exposition
    assert f"aimass_monitor_drift_score{labels} {float(version['drift_score'])!r}" in exposition
    assert f"aimass_monitor_constraint_violations{labels} {float(version['violations'])!r}" in exposition
    assert f"aimass_monitor_anomaly_rate{labels} {float(version['anomaly_rate'])!r}" in exposition
    assert f"aimass_monitor_rows{labels} 143.0" in exposition
