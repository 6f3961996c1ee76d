"""The local stack started as a user starts it (`aimass serve`), driven over HTTP, S3 and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from aimass.local import demo
from tests.e2e.conftest import AIMASS, Stack
from tests.support import added, prometheus_samples

pytestmark = pytest.mark.e2e


def holdout(stack: Stack, name: str) -> demo.Demo:
    return demo.load_or_train(name, stack.state_dir)


def test_start_up_says_what_is_served_and_how_to_call_it(stack: Stack) -> None:
    printed = (stack.state_dir / "serve.log").read_text()
    assert "model breast-cancer" in printed and "model digits" in printed
    assert f"curl -s {stack.url}/v1/models/breast-cancer:predict" in printed


def test_the_demo_models_are_registered_as_champion(stack: Stack) -> None:
    listing = httpx.get(f"{stack.url}/v1/models", params={"detail": "true"}).json()["models"]
    models = {m["name"]: m for m in listing}
    assert models["breast-cancer"]["aliases"] == {"champion": 1}
    assert models["digits"]["aliases"] == {"champion": 1}


def test_kserve_v1_clients_find_the_server_alive_and_plain_curl_bodies_read(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/").json() == {"status": "alive"}
    assert {"breast-cancer", "digits"} <= set(httpx.get(f"{stack.url}/v1/models").json()["models"])
    assert httpx.get(f"{stack.url}/v1/models/digits").json()["ready"] is True
    # `curl -d '{"instances": ...}'` without -H labels the JSON application/x-www-form-urlencoded.
    curl_d = {"content-type": "application/x-www-form-urlencoded"}
    body = json.dumps({"instances": [[[0.0] * 8] * 8]})
    predicted = httpx.post(f"{stack.url}/v1/models/digits:predict", content=body, headers=curl_d)
    assert predicted.status_code == 200 and len(predicted.json()["predictions"]) == 1
    refused = httpx.post(f"{stack.url}/v1/models/digits:predict", content="instances=1", headers=curl_d)
    assert refused.status_code == 415


def test_tabular_predictions_equal_scikit_learn(stack: Stack) -> None:
    bc = holdout(stack, "breast-cancer")
    names = [f.name for f in bc.enrichment.features or []]
    instances = [dict(zip(names, map(float, row), strict=True)) for row in bc.holdout]
    response = httpx.post(f"{stack.url}/v1/models/breast-cancer:predict", json={"instances": instances})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    got = np.array([[p["probabilities"]["malignant"], p["probabilities"]["benign"]] for p in predictions])
    np.testing.assert_allclose(got, bc.holdout_probabilities, atol=1e-5, rtol=0)
    assert [p["label"] for p in predictions] == [
        ["malignant", "benign"][int(i)] for i in bc.holdout_probabilities.argmax(axis=1)
    ]


def test_image_predictions_equal_scikit_learn_over_v1_and_v2(stack: Stack) -> None:
    digits = holdout(stack, "digits")
    v1 = httpx.post(
        f"{stack.url}/v1/models/digits:predict", json={"instances": digits.holdout.tolist()}
    ).json()
    got = np.array([[p["probabilities"][str(d)] for d in range(10)] for p in v1["predictions"]])
    np.testing.assert_allclose(got, digits.holdout_probabilities, atol=1e-5, rtol=0)
    v2 = httpx.post(
        f"{stack.url}/v2/models/digits/infer",
        json={
            "inputs": [
                {
                    "name": "image",
                    "shape": list(digits.holdout.shape),
                    "datatype": "FP32",
                    "data": digits.holdout.reshape(-1).tolist(),
                }
            ],
            "outputs": [{"name": "probabilities"}],
        },
    ).json()
    assert v2["outputs"][0]["shape"] == [len(digits.holdout), 10]
    np.testing.assert_allclose(
        np.array(v2["outputs"][0]["data"]).reshape(-1, 10), digits.holdout_probabilities, atol=1e-5, rtol=0
    )


def test_the_heavy_demo_is_served_through_the_emulated_sagemaker_endpoint(stack: Stack) -> None:
    import onnxruntime as ort

    printed = (stack.state_dir / "serve.log").read_text()
    images = holdout(stack, "digits").holdout[:40]
    network = ort.InferenceSession(
        str(stack.state_dir / "demo" / demo.GPU_DEMO / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    expected = network.run(["probabilities"], {"image": images})[0]

    v1 = httpx.post(f"{stack.url}/v1/models/{demo.GPU_DEMO}:predict", json={"instances": images.tolist()})
    v2 = httpx.post(
        f"{stack.url}/v2/models/{demo.GPU_DEMO}/infer",
        json={
            "inputs": [
                {"name": "image", "shape": list(images.shape), "datatype": "FP32", "data": images.tolist()}
            ]
        },
    )
    model = httpx.get(f"{stack.url}/v1/models/{demo.GPU_DEMO}").json()

    assert (
        f"model {demo.GPU_DEMO} (champion v2 on the emulated SageMaker endpoint aimass-local-gpu" in printed
    )
    assert model["aliases"] == {"champion": 2, "fallback": 1}
    assert [v["backend"] for v in model["versions"]] == ["lambda", "sagemaker:aimass-local-gpu"]
    assert v1.status_code == 200, v1.text
    assert v1.json()["model"] == {
        "name": demo.GPU_DEMO,
        "version": 2,
        "backend": "sagemaker:aimass-local-gpu",
    }
    assert "fallback" not in v1.json()
    got = np.array([[p["probabilities"][str(d)] for d in range(10)] for p in v1.json()["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_version"] == "2"
    probabilities = next(o for o in v2.json()["outputs"] if o["name"] == "probabilities")
    np.testing.assert_allclose(np.array(probabilities["data"]).reshape(-1, 10), expected, atol=1e-5, rtol=0)


def test_prometheus_scrapes_the_api_and_the_emulated_endpoint_as_a_users_grafana_would(stack: Stack) -> None:
    # Given the two scrape targets of docs/metrics.md: the API, and the endpoint's URL as printed
    printed = (stack.state_dir / "serve.log").read_text()
    found = re.search(r"aimass-local-gpu at (http://\S+?);", printed)
    assert found, printed
    endpoint = found.group(1)
    api_before = prometheus_samples(httpx.get(f"{stack.url}/metrics").text)
    endpoint_before = prometheus_samples(httpx.get(f"{endpoint}/metrics").text)
    # When the heavy demo answers a request over HTTP (its champion is on the endpoint)
    images = holdout(stack, "digits").holdout[:3]
    answered = httpx.post(
        f"{stack.url}/v1/models/{demo.GPU_DEMO}:predict", json={"instances": images.tolist()}
    )
    assert answered.status_code == 200, answered.text
    api = httpx.get(f"{stack.url}/metrics")
    endpoint_after = prometheus_samples(httpx.get(f"{endpoint}/metrics").text)
    # Then the API counts the request and its instances under the version that answered, and the
    # endpoint counts the invocation it got for that request
    assert api.status_code == 200 and api.headers["content-type"].startswith("text/plain")
    api_after = prometheus_samples(api.text)
    labels = {"model": demo.GPU_DEMO, "version": "2", "variant": "", "protocol": "v1"}
    assert added(api_before, api_after, "aimass_predictions_total", **labels) == 1
    assert added(api_before, api_after, "aimass_prediction_instances_total", **labels) == 3
    invocations = sum(
        value - endpoint_before.get((name, label_set), 0.0)
        for (name, label_set), value in endpoint_after.items()
        if name == "aimass_inference_requests_total" and ("status", "200") in label_set
    )
    assert invocations == 1


def test_a_bad_request_over_http_gets_a_json_4xx(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.url}/v1/models/breast-cancer:predict",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_json"


def test_the_cli_pushes_a_version_moves_the_champion_and_predicts_with_it(
    stack: Stack, tmp_path: Path
) -> None:
    bc = holdout(stack, "breast-cancer")
    model = tmp_path / "breast-cancer.onnx"
    model.write_bytes(bc.model)
    features = ",".join(f.name for f in bc.enrichment.features or [])
    pushed = stack.cli(
        "models",
        "push",
        "breast-cancer",
        str(model),
        "--features",
        features,
        "--labels",
        "malignant,benign",
        "--alias",
        "challenger",
    )
    assert pushed.returncode == 0, pushed.stderr
    assert "registered breast-cancer v2" in pushed.stdout
    moved = stack.cli("models", "alias", "breast-cancer", "champion", "2")
    assert moved.returncode == 0 and "champion → v2 (was v1)" in moved.stdout
    listed = stack.cli("models", "list")
    assert "challenger→v2" in listed.stdout and "champion→v2" in listed.stdout
    row = ",".join(str(float(v)) for v in bc.holdout[0])
    predicted = stack.cli(
        "predict", "breast-cancer", "--data", f'{{"instances": [[{row}]]}}', "--alias", "champion"
    )
    assert predicted.returncode == 0, predicted.stderr
    assert '"version": 2' in predicted.stdout


def test_the_cli_removes_an_alias_and_archives_a_version_that_then_serves_only_by_number(
    stack: Stack, tmp_path: Path
) -> None:
    bc = holdout(stack, "breast-cancer")
    model = tmp_path / "model.onnx"
    model.write_bytes(bc.model)
    features = ",".join(f.name for f in bc.enrichment.features or [])
    for alias in ("champion", "staging"):  # v1 champion, v2 staging
        push = ("models", "push", "bc-hygiene", str(model), "--features", features, "--alias", alias)
        assert stack.cli(*push).returncode == 0
    row = ",".join(str(float(v)) for v in bc.holdout[0])
    body = f'{{"instances": [[{row}]]}}'

    # The champion's removal leaves the latest version serving
    removed = stack.cli("models", "unalias", "bc-hygiene", "champion", "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout)["previous_version"] == 1
    assert '"version": 2' in stack.cli("predict", "bc-hygiene", "--data", body).stdout

    # A version an alias points at is not archived; once free, it is, and stops serving by default
    refused = stack.cli("models", "archive", "bc-hygiene", "2")
    assert refused.returncode == 1 and "staging" in refused.stderr
    assert stack.cli("models", "unalias", "bc-hygiene", "staging").returncode == 0
    assert stack.cli("models", "archive", "bc-hygiene", "2").returncode == 0
    assert '"version": 1' in stack.cli("predict", "bc-hygiene", "--data", body).stdout
    by_number = httpx.post(f"{stack.url}/v1/models/bc-hygiene/versions/2:predict", json=json.loads(body))
    assert by_number.status_code == 200 and by_number.json()["model"]["version"] == 2
    trail = httpx.get(f"{stack.url}/v1/models/bc-hygiene/audit").json()
    assert {"remove_alias", "archive_version"} <= {record["action"] for record in trail}


def test_the_cli_reports_errors_with_their_details(stack: Stack) -> None:
    failed = stack.cli("predict", "breast-cancer", "--data", '{"instances": [{"mean_radius": "big"}]}')
    assert failed.returncode == 1
    assert "422 validation_error" in failed.stderr and "instances.0.mean_texture" in failed.stderr


def test_scripts_read_json_and_tell_an_unreachable_api_by_its_exit_code(stack: Stack) -> None:
    # --json is the API's answer, nothing else on stdout
    listed = stack.cli("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {"breast-cancer", "digits"} <= {m["name"] for m in json.loads(listed.stdout)["models"]}

    # An API that is not there: exit 3 and one line, not a traceback
    gone = subprocess.run(
        [str(AIMASS), "models", "list", "--endpoint", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=stack.env,
        timeout=60,
        check=False,
    )
    assert gone.returncode == 3
    assert gone.stderr.strip().splitlines() == [
        "cannot reach GET http://127.0.0.1:9/v1/models?detail=true: [Errno 111] Connection refused"
    ]

    version = subprocess.run([str(AIMASS), "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and version.stdout.startswith("aimass ")


def test_the_embedded_aws_serves_the_artifacts_bucket_to_boto3(stack: Stack) -> None:
    s3 = stack.s3()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="aimass-local", Prefix="models/digits/")["Contents"]}
    assert "models/digits/1/model.onnx" in keys
    assert s3.get_bucket_versioning(Bucket="aimass-local")["Status"] == "Enabled"


def test_rules_saved_with_the_cli_decide_on_predictions(stack: Stack, tmp_path: Path) -> None:
    ruleset = tmp_path / "rules.json"
    ruleset.write_text(
        json.dumps(
            {
                "rules": [
                    {
                        "id": "refer-malignant",
                        "when": "output.label == 'malignant'",
                        "then": {"set": {"decision": "refer"}},
                    },
                    {
                        "id": "discharge",
                        "when": "output.label == 'benign'",
                        "then": {"set": {"decision": "discharge"}},
                    },
                ]
            }
        )
    )
    saved = stack.cli("rules", "put", "breast-cancer", str(ruleset))
    assert saved.returncode == 0 and "rules v1 saved (2 rules)" in saved.stdout, saved.stderr
    bc = holdout(stack, "breast-cancer")
    response = httpx.post(
        f"{stack.url}/v1/models/breast-cancer:predict", json={"instances": bc.holdout.tolist()}
    )
    for item in response.json()["predictions"]:
        assert item["decision"] == ("refer" if item["label"] == "malignant" else "discharge")
        assert [r["id"] for r in item["rules"]] == [
            "refer-malignant" if item["label"] == "malignant" else "discharge"
        ]


def test_data_quality_from_a_parquet_reference_flags_rejects_and_reports(
    stack: Stack, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    bc = holdout(stack, "breast-cancer")
    names = [f.name for f in bc.enrichment.features or []]
    model, reference = tmp_path / "model.onnx", tmp_path / "reference.parquet"
    model.write_bytes(bc.model)
    pyarrow.parquet.write_table(pyarrow.csv.read_csv(pa.BufferReader(bc.reference_csv)), reference)
    pushed = stack.cli(
        "models",
        "push",
        "bc-quality",
        str(model),
        "--features",
        ",".join(names),
        "--labels",
        "malignant,benign",
        "--reference",
        str(reference),
        "--alias",
        "champion",
    )
    assert pushed.returncode == 0, pushed.stderr
    assert "baseline from 426 rows of upload:reference.csv" in pushed.stdout

    rows = [dict(zip(names, map(float, row), strict=True)) for row in bc.holdout[:3]]
    outlier = {k: v * 3 for k, v in rows[0].items()}
    predict = f"{stack.url}/v1/models/bc-quality:predict"
    flagged = httpx.post(predict, json={"instances": [*rows, outlier]}).json()["predictions"]
    assert [p["anomaly"]["anomalous"] for p in flagged] == [False, False, False, True]
    assert flagged[3]["quality"][0]["check"] == "range" and "label" in flagged[3]

    policy = stack.cli("quality", "policy", "bc-quality", "--violations", "reject")
    assert policy.returncode == 0 and "violations → reject, anomalies → flag" in policy.stdout, policy.stderr
    rejected = httpx.post(predict, json={"instances": [*rows, outlier]})
    assert rejected.status_code == 422
    assert rejected.json()["error"]["details"][0]["loc"] == ["instances", 3, "mean_radius"]

    batch = tmp_path / "batch.csv"
    batch.write_text(
        ",".join(names)
        + "\n"
        + "\n".join(",".join(str(float(v) * 1.3) for v in row) for row in bc.holdout)
        + "\n"
    )
    report = stack.cli("quality", "check", "bc-quality", str(batch))
    assert report.returncode == 1, report.stderr  # it found problems: a script can gate on it
    assert "baseline_drift_check" in report.stdout and f"{len(bc.holdout)} rows" in report.stdout
    as_json = stack.cli("quality", "check", "bc-quality", str(batch), "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["item_count"] == len(bc.holdout)


def test_a_ruleset_that_does_not_fit_the_model_fails_to_save_with_the_rule_named(
    stack: Stack, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(
        json.dumps({"rules": [{"id": "typo", "when": "input.mean_radus > 1.0", "then": {"flag": "x"}}]})
    )
    saved = stack.cli("rules", "put", "digits", str(broken))
    assert saved.returncode == 1
    assert "422" in saved.stderr and "rules.0.when" in saved.stderr and "typo" in saved.stderr


def batch_rows(stack: Stack, count: int) -> str:
    """A CSV of held-out breast-cancer rows with an id column and one row that is not a number."""
    made = holdout(stack, "breast-cancer")
    names = [f.name for f in made.enrichment.features]
    lines = [",".join(["case", *names])]
    lines += [",".join([f"c{i}", *map(str, row)]) for i, row in enumerate(made.holdout[:count].tolist())]
    cells = lines[3].split(",")
    lines[3] = ",".join([cells[0], "oops", *cells[2:]])
    return "\n".join(lines) + "\n"


def wait_for_report(s3: Any, key: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return json.loads(s3.get_object(Bucket="aimass-local", Key=key)["Body"].read())  # type: ignore[no-any-return]
        except s3.exceptions.NoSuchKey:
            assert time.monotonic() < deadline, f"no {key} within {seconds} s"
            time.sleep(0.3)


@pytest.mark.parametrize(("rows", "parts"), [(30, None), (140, 3)])
def test_a_file_put_under_incoming_through_s3_is_predicted_into_s3(
    stack: Stack, rows: int, parts: int | None
) -> None:
    s3 = stack.s3()
    body = batch_rows(stack, rows).encode()
    # A file over the threshold (50 kB here) goes through the batch state machine
    assert (len(body) > 50_000) == (parts is not None)
    # When a user drops a file with the S3 API, as they would in AWS
    s3.put_object(
        Bucket="aimass-local",
        Key=f"incoming/breast-cancer/e2e-{rows}.csv",
        Body=body,
        Metadata={"aimass-id-column": "case"},
    )
    report = wait_for_report(s3, f"reports/breast-cancer/e2e-{rows}.csv.json")
    # Then every row is accounted for: predicted into predictions/, or rejected with its reason
    assert report["status"] == "succeeded", report
    assert report["rows"] == {"in": rows, "predicted": rows - 1, "rejected": 1}
    assert report.get("parts", {}).get("count") == parts
    predicted = s3.get_object(Bucket="aimass-local", Key=f"predictions/breast-cancer/e2e-{rows}.csv")["Body"]
    lines = predicted.read().decode().splitlines()
    assert lines[0].startswith("case,label,") and len(lines) == rows
    assert [line.split(",")[0] for line in lines[1:]] == [f"c{i}" for i in range(rows) if i != 2]
    rejected = s3.get_object(Bucket="aimass-local", Key=f"rejected/breast-cancer/e2e-{rows}.csv.jsonl")[
        "Body"
    ]
    assert json.loads(rejected.read())["case"] == "c2"


@pytest.mark.parametrize("where", ["s3", "local"])
def test_the_cli_batches_a_file_and_downloads_the_outputs(stack: Stack, tmp_path: Path, where: str) -> None:
    source = tmp_path / "cases.csv"
    source.write_text(batch_rows(stack, 12))
    command = [str(AIMASS), "batch", str(source), "--model", "breast-cancer", "--id-column", "case"]
    command += ["--aws-endpoint", stack.aws_url, "--out", str(tmp_path / "out")]
    command += ["--html", str(tmp_path / "cases.html")]
    done = subprocess.run(
        [*command, *(["--local"] if where == "local" else [])],
        capture_output=True,
        text=True,
        env=stack.env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 rows in, 11 predicted, 1 rejected" in done.stdout
    out = tmp_path / "out"
    assert len((out / "cases.predictions.csv").read_text().splitlines()) == 12  # header + 11
    assert json.loads((out / "cases.rejected.jsonl").read_text())["row"] == 3
    assert json.loads((out / "cases.report.json").read_text())["rows"]["rejected"] == 1
    page = (tmp_path / "cases.html").read_text()  # the report as a page, with the predictions drawn
    assert "Data-quality report: breast-cancer" in page and "11 predicted classes of the batch" in page


def test_the_cli_retrains_a_model_on_the_embedded_step_functions(stack: Stack) -> None:
    # The command `aimass serve` prints
    assert "aimass pipeline run breast-cancer" in (stack.state_dir / "serve.log").read_text()
    done = stack.cli("pipeline", "run", "breast-cancer")
    assert done.returncode == 0, done.stdout + done.stderr
    for state in ("Ingest", "Validate", "ChooseBackend", "Train", "Evaluate", "ReleaseGate", "Notify"):
        assert f"✓ {state} (" in done.stdout
    run_id = done.stdout.split("started run ", 1)[1].split()[0]

    # The candidate was measured against the champion on the same held-out rows, and released
    # through a canary rollout (the default release policy) only if it beat it (earlier tests here
    # may have moved the champion); the champion keeps serving the rest meanwhile
    run = httpx.get(f"{stack.url}/v1/models/breast-cancer/pipeline/runs/{run_id}", timeout=10).json()
    assert run["status"] == "SUCCEEDED" and run["trigger"] == "api"
    assert f"{run['decision']}" in done.stdout and run["candidate"]["roc_auc"] > 0.95
    assert run["dataset"]["rows"] == 569
    champion = httpx.get(f"{stack.url}/v1/models/breast-cancer", timeout=10).json()["aliases"]["champion"]
    assert champion == run["champion_version"]
    if run["decision"] == "promoted":
        assert run["release"]["follow"] == "aimass rollout status breast-cancer"
        rollout = httpx.get(f"{stack.url}/v1/models/breast-cancer/rollout", timeout=10).json()
        assert rollout["canary"]["version"] == run["version"]
        assert f"canary rollout of v{run['version']}" in done.stdout

    listed = stack.cli("pipeline", "runs", "breast-cancer")
    assert listed.returncode == 0 and run_id in listed.stdout
    # In a narrow terminal too, the id is whole: it is what `pipeline status` takes
    narrow = subprocess.run(
        [str(AIMASS), "pipeline", "runs", "breast-cancer", "--endpoint", stack.url],
        capture_output=True,
        text=True,
        env=stack.env | {"COLUMNS": "60"},
        timeout=60,
        check=False,
    )
    assert narrow.returncode == 0 and run_id in narrow.stdout, narrow.stdout
    as_json = stack.cli("pipeline", "runs", "breast-cancer", "--json")
    assert run_id in [r["run_id"] for r in json.loads(as_json.stdout)["runs"]]


def test_the_card_of_a_version_the_pipeline_made_is_a_page_over_http(stack: Stack, tmp_path: Path) -> None:
    # Given a model pushed with the CLI, its training data in the bucket, and its card's owner and
    # limits set by a person
    bc = holdout(stack, "breast-cancer")
    model = tmp_path / "bc-card.onnx"
    model.write_bytes(bc.model)
    features = ",".join(f.name for f in bc.enrichment.features or [])
    pushed = stack.cli(
        "models", "push", "bc-card", str(model), "--features", features, "--labels", "malignant,benign"
    )
    assert pushed.returncode == 0, pushed.stderr
    stack.s3().put_object(
        Bucket="aimass-local", Key="datasets/bc-card/breast_cancer.csv", Body=demo.training_csv()
    )
    card_set = stack.cli("models", "card-set", "bc-card", "1", "--owner", "ana", "--limits", "adults only")
    assert card_set.returncode == 0, card_set.stderr

    # When the pipeline retrains it (no champion to beat: it registers v2)
    done = stack.cli("pipeline", "run", "bc-card", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["version"] == 2

    # Then v2's card, asked for by a browser, is a page with the run's lineage, its evaluation,
    # baseline and feature attributions drawn, and the fields of v1's card
    response = httpx.get(
        f"{stack.url}/v1/models/bc-card/versions/2/card", headers={"accept": "text/html"}, timeout=30
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<h1>Model card: bc-card v2</h1>" in page and page.count("<svg") == 3
    assert "Bar plot of the mean |SHAP| per feature" in page and "bc-card/2/card/attributions.json" in page
    assert "adults only" in page and "ana" in page
    assert "held-out evaluation" in page and "/reports/bc-card/pipeline/" in page
    assert "datasets/bc-card/snapshots/" in page

    # And the CLI writes the same page, and gives the card as JSON
    written = stack.cli("models", "card", "bc-card", "2", "--html", str(tmp_path / "card.html"))
    assert (
        written.returncode == 0 and "<h1>Model card: bc-card v2</h1>" in (tmp_path / "card.html").read_text()
    )
    card = json.loads(stack.cli("models", "card", "bc-card", "2", "--json").stdout)
    assert card["additional_information"]["custom_details"]["lineage.parent_version"] == "1"


def test_the_cli_runs_the_local_retraining_schedule_on_demand(stack: Stack) -> None:
    schedules = subprocess.run(
        [str(AIMASS), "pipeline", "schedules", "--aws-endpoint", stack.aws_url],
        capture_output=True,
        text=True,
        env=stack.env,
        timeout=60,
        check=False,
    )
    assert schedules.returncode == 0, schedules.stderr
    assert "breast-cancer" in schedules.stdout and "rate(1 day)" in schedules.stdout

    done = stack.cli("pipeline", "schedule-run", "breast-cancer", "--aws-endpoint", stack.aws_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ Ingest (" in done.stdout and "(schedule)" in done.stdout
    run_id = done.stdout.split("started run ", 1)[1].split()[0]
    run = httpx.get(f"{stack.url}/v1/models/breast-cancer/pipeline/runs/{run_id}", timeout=10).json()
    assert (run["status"], run["trigger"]) == ("SUCCEEDED", "schedule")


def test_labels_sent_for_predictions_become_training_rows_and_live_accuracy(stack: Stack) -> None:
    # Given two digit predictions, each with its id
    digits = holdout(stack, "digits")
    answer = httpx.post(
        f"{stack.url}/v1/models/digits:predict", json={"instances": digits.holdout[:2].tolist()}
    ).json()
    said = [p["label"] for p in answer["predictions"]]
    # When the first is confirmed and the second given another digit, over HTTP
    other = str((int(said[1]) + 1) % 10)
    labels = [
        {"prediction_id": answer["prediction_ids"][0], "label": int(said[0])},
        {"prediction_id": answer["prediction_ids"][1], "label": other},
    ]
    posted = httpx.post(f"{stack.url}/v1/models/digits/feedback", json={"labels": labels}, timeout=30)
    # Then both are recorded as training rows (the image's cells and the label) in the embedded S3
    assert posted.status_code == 200, posted.text
    assert posted.json()["accepted"] == 2
    [uri] = posted.json()["files"]
    key = uri.removeprefix("s3://aimass-local/")
    assert key.startswith("datasets/digits/feedback/") and key.endswith(".csv")
    rows = stack.s3().get_object(Bucket="aimass-local", Key=key)["Body"].read().decode().splitlines()
    assert rows[0].split(",")[1] == "image[0][0]" and rows[0].endswith(",label")
    assert [row.rsplit(",", 1)[1] for row in rows[1:]] == [said[0], other]
    # And the version's live accuracy counts one right of two
    live = httpx.get(f"{stack.url}/v1/models/digits/feedback", timeout=10).json()
    assert live["versions"] == [
        {"version": 1, "task": "classification", "labelled": 2, "correct": 1, "accuracy": 0.5, "mae": None}
    ]


def test_explain_over_http_adds_up_to_each_predicted_probability_on_any_backend(stack: Stack) -> None:
    # Given breast-cancer's demo version (ONNX in process) and digits-cnn's v2 (a SageMaker endpoint),
    # by number: other tests of this module push versions and move aliases
    rows = holdout(stack, "breast-cancer").holdout[:3].tolist()
    images = holdout(stack, "digits").holdout[:1].tolist()
    # When they are explained over HTTP, breast-cancer at the default sample count
    tabular = httpx.post(
        f"{stack.url}/v1/models/breast-cancer/versions/1:explain", json={"instances": rows}, timeout=60
    )
    imaged = httpx.post(
        f"{stack.url}/v1/models/{demo.GPU_DEMO}/versions/2:explain",
        json={"instances": images, "parameters": {"samples": 128, "background": 8}},
        timeout=60,
    )
    # Then base value + attributions == the predicted class's probability, to 1e-6, for each instance
    for response in (tabular, imaged):
        assert response.status_code == 200, response.text
        body = response.json()
        for prediction, item in zip(body["predictions"], body["shap"], strict=True):
            assert item["class"] == prediction["label"]
            probability = prediction["probabilities"][item["class"]]
            assert abs(item["base_value"] + sum(item["attributions"].values()) - probability) < 1e-6
    assert tabular.json()["samples"] == 2 * 30 + 2048
    assert imaged.json()["model"]["backend"] == "sagemaker:aimass-local-gpu"
    # And the CLI prints the same explanation's largest attributions
    body = stack.state_dir / "explain.json"
    body.write_text(json.dumps({"instances": rows[:1]}))
    printed = stack.cli("explain", "breast-cancer", "--version", "1", "--file", str(body), "--json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["shap"][0] == tabular.json()["shap"][0]
