"""`aimass plan` end to end on the demos, against the API in this process and moto's S3: it reads
the version's record from the API and its model file from S3, load-tests it here, and prints or
answers (--json) the options and their monthly costs (docs/capacity.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aimass.api.app import create_app
from aimass.capacity import PRICES, invocations_per_instance
from aimass.cli import app


@pytest.fixture
def api(registered: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The aimass API in this process, with the demos registered: the CLI's HTTP calls go to it."""
    import httpx

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        monkeypatch.setattr(
            httpx, "request", lambda method, url, timeout=None, **kw: client.request(method, url, **kw)
        )
        yield client


def plan(*args: str) -> Any:
    # --aws-endpoint '': "AWS itself", which in this process is moto's
    return CliRunner().invoke(
        app,
        ["plan", *args, "--runs", "40", "--endpoint", "http://aimass.test", "--aws-endpoint", ""],
        catch_exceptions=False,
    )


def test_plan_json_for_the_digits_demo(api: TestClient) -> None:
    ran = plan("digits", "--rps", "200", "--p99-ms", "50", "--json")

    assert ran.exit_code == 0, ran.output
    result = json.loads(ran.stdout)
    assert (result["name"], result["version"], result["rps"], result["p99_ms"]) == ("digits", 1, 200, 50)
    costs = result["costs"]
    assert 0 < costs["model_p50_ms"] <= costs["model_p99_ms"]
    assert set(costs["batch_p50_ms"]) == {"1", "8", "32"}
    assert costs["model_bytes"] == api.get("/v1/models/digits/versions/1").json()["size_bytes"]
    assert [o["kind"] for o in result["lambda_options"]] == [
        "lambda",
        "lambda+provisioned",
        "lambda+snapstart",
    ]
    for option in result["lambda_options"]:
        assert option["monthly_usd"] == pytest.approx(sum(option["breakdown"].values()))
    assert [e["instance_type"] for e in result["sagemaker_options"]] == [i.name for i in PRICES.instances]
    for option in result["sagemaker_options"]:
        assert option["invocations_per_instance"] == invocations_per_instance(option["per_instance_req_s"])
    assert result["prices_date"] == PRICES.date
    assert result["recommended"] != "none meets the p99 bound"


def test_plan_prints_the_options_and_takes_a_price_table(api: TestClient, tmp_path: Path) -> None:
    table = {
        **{k: v for k, v in PRICES.__dict__.items() if k != "instances"},
        "date": "2030-01",
        "instances": [
            {"name": "ml.test.large", "vcpus": 2, "gpu": None, "usd_per_hour": 1.0},
            {"name": "ml.test.gpu", "vcpus": 8, "gpu": "T", "usd_per_hour": 2.0},
        ],
    }
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(table))

    ran = plan("breast-cancer", "--rps", "10", "--prices", str(prices))

    assert ran.exit_code == 0, ran.output
    assert "provisioned 1" in ran.stdout and "snapstart" in ran.stdout and "ml.test.large" in ran.stdout
    assert "cheapest: lambda" in ran.stdout and "2030-01" in ran.stdout
    # what the plan cannot measure here, and how to use the instance's vCPUs, said under the table
    assert "ml.test.gpu: GPU latency not measured here" in ran.stdout and "GpuFrontends 7" in ran.stdout


def test_plan_refuses_an_unknown_version_and_a_bad_price_table(api: TestClient, tmp_path: Path) -> None:
    assert plan("digits", "--rps", "1", "--version", "7").exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lambda_request": 1}))
    assert plan("digits", "--rps", "1", "--prices", str(bad)).exit_code == 2
    assert plan("unknown", "--rps", "1").exit_code == 1
