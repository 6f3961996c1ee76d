"""A monitor run on `aimass serve`, as a user runs it: traffic sent over HTTP is captured, and
`aimass monitor run NAME --since 1h --json` finds the one feature whose values were shifted, and
nothing in clean traffic; `aimass monitor reports` lists the run, `aimass monitor report --html`
draws its page, and /metrics shows its figures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aimass.local import demo
from tests.e2e.conftest import Stack, serving

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, trained_demos: Path) -> Iterator[Stack]:
    with serving(tmp_path_factory.mktemp("e2e-monitor"), None, trained_demos) as (started, _):
        yield started


def test_the_monitor_finds_the_shifted_feature_and_only_it_and_nothing_in_clean_traffic(
    stack: Stack, tmp_path: Path
) -> None:
    bc = demo.load_or_train("breast-cancer", stack.state_dir)
    model, reference = tmp_path / "bc.onnx", tmp_path / "reference.csv"
    model.write_bytes(bc.model)
    reference.write_bytes(bc.reference_csv)
    features = [f.name for f in bc.enrichment.features or []]
    # Given two copies of the demo pushed with its training data as their baselines' reference
    for name in ("bc-clean", "bc-shifted"):
        pushed = stack.cli(
            "models", "push", name, str(model), "--features", ",".join(features),
            "--labels", "malignant,benign", "--reference", str(reference), "--alias", "champion",
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
    # and the holdout's 143 rows sent to each over HTTP, with mean_texture 1.5 standard deviations
    # (about 6.5) higher in the second's
    rows = [dict(zip(features, map(float, row), strict=True)) for row in bc.holdout]
    shifted = [row | {"mean_texture": row["mean_texture"] + 6.5} for row in rows]
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for name, sent in (("bc-clean", rows), ("bc-shifted", shifted)):
            for start in range(0, len(sent), 20):
                answer = client.post(
                    f"/v1/models/{name}:predict", json={"instances": sent[start : start + 20]}
                )
                assert answer.status_code == 200, answer.text

    # When each model's monitor runs over the last hour
    clean = stack.cli("monitor", "run", "bc-clean", "--since", "1h", "--json")
    drifted = stack.cli("monitor", "run", "bc-shifted", "--since", "1h", "--json")

    # Then clean traffic drifted nowhere (exit 0), and the shifted feature, alone, did (exit 1)
    assert clean.returncode == 0, clean.stderr
    found = json.loads(clean.stdout)
    assert found["outcome"] == "no_drift" and found["rows"] == 143
    assert found["versions"][0]["drifted_features"] == []
    assert drifted.returncode == 1, drifted.stderr
    found = json.loads(drifted.stdout)
    assert found["outcome"] == "drift" and found["rows"] == 143
    assert found["versions"][0]["drifted_features"] == ["mean_texture"]
    # and the run is listed, newest first, with its files in the embedded S3
    reports = stack.cli("monitor", "reports", "bc-shifted", "--json")
    assert reports.returncode == 0, reports.stderr
    assert [r["run"] for r in json.loads(reports.stdout)["runs"]] == [found["run"]]
    key = f"monitoring/bc-shifted/{found['run']}/v1/constraint_violations.json"
    violations = json.loads(stack.s3().get_object(Bucket="aimass-local", Key=key)["Body"].read())[
        "violations"
    ]
    assert [
        v["feature_name"] for v in violations if v["constraint_check_type"] == "baseline_drift_check"
    ] == ["mean_texture"]
    # and its page, drawn by the CLI from the API, names the feature and has the rates per hour
    page = tmp_path / "run.html"
    report = stack.cli("monitor", "report", "bc-shifted", found["run"], "--html", str(page))
    assert report.returncode == 1, report.stderr
    html = page.read_text()
    assert "<code>mean_texture</code>" in html and "<h2>Rates over time</h2>" in html
    # and the server's Prometheus metrics show the run's drifted feature
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        metrics = client.get("/metrics").text
    assert 'aimass_monitor_drifted_features{model="bc-shifted",version="1"} 1.0' in metrics
