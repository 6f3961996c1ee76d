"""The online function's direct path (aimass.api.direct) answers every prediction request exactly as
Mangum + FastAPI answer it: the same status code, headers and body bytes. Each case is one API Gateway
event (HTTP API, payload format 2.0) run through both, each on a request pipeline of its own over the
same moto registry, so that neither is helped by what the other loaded."""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES

from aimass import aws, wiring
from aimass.api import app as api_app
from aimass.api import direct
from aimass.api.access import Access
from aimass.api.app import create_app
from aimass.api.blocking import serve_one_at_a_time
from aimass.config import settings
from aimass.contracts.graph import ComposeRequest
from aimass.contracts.rules import Ruleset
from aimass.graph import compose_version
from aimass.local.lambda_runtime import LambdaContext, load_handler
from aimass.registration import register_version
from gpu_endpoints.process import free_port
from tests.conftest import reset_caches
from tests.integration.test_sagemaker_routing import on_endpoint, throttling, use_runtime
from tests.support import binary_input, binary_request, event, retrained

__all__ = ["throttling"]  # the fixture, shared with test_sagemaker_routing

Event = dict[str, Any]
BREAST_CANCER = "/v1/models/breast-cancer:predict"


def both(incoming: Event) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The event answered by the direct path and by Mangum + FastAPI, built as the online function
    builds them (aimass.api.lambda_entry), each on a fresh request pipeline."""
    s = settings()
    fast = direct.DirectPath(Access.of(s.max_payload_bytes, s.api_key, s.admin_key))
    app = create_app(["online"])
    serve_one_at_a_time(app)
    framework = Mangum(app, lifespan="off")
    wiring.reset()
    by_direct = fast.answer(copy.deepcopy(incoming))
    wiring.reset()
    by_app = dict(framework(copy.deepcopy(incoming), LambdaContext()))  # type: ignore[arg-type]
    wiring.reset()
    return by_direct, by_app


# A captured request's id (aimass.capture), in its predictions' ids: drawn anew by each request.
CAPTURE_ID = re.compile(rb"[0-9a-f]{32}")


def comparable(response: dict[str, Any]) -> dict[str, Any]:
    """The response with its capture ids made equal (the same length, so the headers stay exact)."""
    raw = response["body"].encode()
    if response["isBase64Encoded"]:
        raw = base64.b64decode(raw)
    return {**response, "body": CAPTURE_ID.sub(b"0" * 32, raw)}


def assert_same(incoming: Event) -> dict[str, Any]:
    by_direct, by_app = both(incoming)
    assert by_direct is not None, "the direct path did not take the event"
    assert comparable(by_direct) == comparable(by_app)
    assert list(by_direct["headers"].items()) == list(by_app["headers"].items())  # in the same order
    return by_direct


def post(
    path: str,
    body: str | bytes,
    headers: dict[str, str] | None = None,
    encoded: bool = False,
    query: str = "",
) -> Event:
    """The sample V1 event as a POST to `path` with `body` (base64 when `encoded`) and `headers`."""
    sample = event("v1_predict_breast_cancer")
    raw = body.encode() if isinstance(body, str) else body
    sample["rawPath"] = sample["requestContext"]["http"]["path"] = path
    sample["rawQueryString"] = query
    sample["headers"] = {
        **{k: v for k, v in sample["headers"].items() if k != "content-type"},
        "content-type": "application/json",
        "content-length": str(len(raw)),
        **(headers or {}),
    }
    sample["body"] = base64.b64encode(raw).decode() if encoded else raw.decode()
    sample["isBase64Encoded"] = encoded
    return sample


def bc_body() -> str:
    return str(event("v1_predict_breast_cancer")["body"])


def v2_body() -> str:
    return str(event("v2_infer_digits")["body"])


def binary_body(output_binary: bool) -> tuple[bytes, dict[str, str]]:
    """The digits V2 request with its tensor as binary data, and its headers."""
    image = json.loads(v2_body())["inputs"][0]["data"]
    parameters = {"binary_data_output": True} if output_binary else {}
    header = {
        "id": "req-b",
        "inputs": [binary_input("image", [1, 8, 8], "FP32", 256)],
        "parameters": parameters,
    }
    return binary_request(header, np.asarray(image, dtype="<f4").tobytes())


def with_instance(change: dict[str, Any]) -> str:
    body = json.loads(bc_body())
    body["instances"][0].update(change)
    return json.dumps(body)


CASES: dict[str, Callable[[], Event]] = {
    "v1 champion": lambda: event("v1_predict_breast_cancer"),
    "v1 plain lists": lambda: event("v1_predict_breast_cancer_lists"),
    "v1 by version": lambda: event("v1_predict_version"),
    "v1 by alias": lambda: event("v1_predict_alias"),
    "v1 digits": lambda: event("v1_predict_digits"),
    "v1 query string and header case": lambda: post(
        BREAST_CANCER,
        bc_body(),
        {"Content-Type": "application/json; charset=utf-8", "X-Aimass-Routing-Key": "user-7"},
        query="explain=1&x=%20y",
    ),
    "v1 detail=steps on a version of one model": lambda: post(BREAST_CANCER, bc_body(), query="detail=steps"),
    "v1 a detail there is not": lambda: post(BREAST_CANCER, bc_body(), query="detail=everything"),
    "v1 detail twice, the last one read": lambda: post(
        BREAST_CANCER, bc_body(), query="detail=x&detail=steps"
    ),
    "v1 detail empty": lambda: post(BREAST_CANCER, bc_body(), query="detail="),
    "v1 a bad detail and a bad version": lambda: post(
        "/v1/models/breast-cancer/versions/one:predict", bc_body(), query="detail=x"
    ),
    "v2 detail steps in the parameters": lambda: post(
        "/v2/models/digits/infer", json.dumps({**json.loads(v2_body()), "parameters": {"detail": "steps"}})
    ),
    "v1 base64 body": lambda: post(BREAST_CANCER, bc_body(), encoded=True),
    "v1 no content type": lambda: {**post(BREAST_CANCER, bc_body()), "headers": {"host": "h.example"}},
    "v1 form-labelled JSON": lambda: post(
        BREAST_CANCER, bc_body(), {"content-type": "application/x-www-form-urlencoded"}
    ),
    "v1 form-labelled not JSON": lambda: post(
        BREAST_CANCER, "a=1&b=2", {"content-type": "application/x-www-form-urlencoded"}
    ),
    "v1 other content type": lambda: post(BREAST_CANCER, bc_body(), {"content-type": "text/csv"}),
    "v1 bad JSON": lambda: event("v1_predict_bad_json"),
    "v1 empty body": lambda: post(BREAST_CANCER, ""),
    "v1 instances not a list": lambda: post(BREAST_CANCER, '{"instances": 3}'),
    "v1 invalid instance": lambda: event("v1_predict_invalid_instance"),
    "v1 wrong type in a field": lambda: post(BREAST_CANCER, with_instance({"mean_texture": "high"})),
    "v1 NaN in a field": lambda: post(BREAST_CANCER, with_instance({"mean_texture": None})),
    "v1 unknown model": lambda: event("v1_predict_unknown_model"),
    "v1 unknown version": lambda: post("/v1/models/breast-cancer/versions/9:predict", bc_body()),
    "v1 unknown alias": lambda: post("/v1/models/breast-cancer/labels/nope:predict", bc_body()),
    "v1 version not an integer": lambda: post("/v1/models/breast-cancer/versions/one:predict", bc_body()),
    "v1 version with a sign": lambda: post("/v1/models/breast-cancer/versions/+1:predict", bc_body()),
    "v1 version not an integer, body not JSON": lambda: post(
        "/v1/models/breast-cancer/versions/1.5:predict", "{"
    ),
    "v2 JSON": lambda: event("v2_infer_digits"),
    "v2 by version": lambda: post("/v2/models/digits/versions/1/infer", v2_body()),
    "v2 binary in and out": lambda: post("/v2/models/digits/infer", *binary_body(True), encoded=True),
    "v2 binary in, JSON out": lambda: post("/v2/models/digits/infer", *binary_body(False), encoded=True),
    "v2 binary header too long": lambda: post(
        "/v2/models/digits/infer", v2_body(), {"inference-header-content-length": "99999"}
    ),
    "v2 binary header not a number": lambda: post(
        "/v2/models/digits/infer", v2_body(), {"Inference-Header-Content-Length": "abc"}
    ),
    "v2 bad JSON": lambda: post("/v2/models/digits/infer", "{nope"),
    "v2 no inputs": lambda: post("/v2/models/digits/infer", '{"id": "x"}'),
    "v2 wrong shape": lambda: post(
        "/v2/models/digits/infer",
        '{"inputs": [{"name": "image", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
    ),
    "v2 unknown model": lambda: post("/v2/models/nope/infer", v2_body()),
    "v2 version not an integer": lambda: post("/v2/models/digits/versions/x/infer", v2_body()),
    "v2 unknown output asked for": lambda: post(
        "/v2/models/digits/infer",
        json.dumps({**json.loads(v2_body()), "outputs": [{"name": "nope"}]}),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_direct_path_answers_as_mangum_and_fastapi_do(registered: Any, case: str) -> None:
    assert_same(CASES[case]())


def test_a_graph_versions_steps_are_answered_alike(registered: Any, demos: dict[str, Any]) -> None:
    # Given an ensemble of breast-cancer v1 and a retrained v2
    demo = demos["breast-cancer"]
    register_version(
        wiring.registry(), "aimass-test", "breast-cancer", retrained(demo.model), "t", demo.enrichment
    )
    spec = {"graph": {"kind": "ensemble", "members": ["breast-cancer@champion", "breast-cancer@2"]}}
    made = compose_version(wiring.registry(), "aimass-test", "breast-cancer", ComposeRequest(**spec), "t")
    path = f"/v1/models/breast-cancer/versions/{made.version}:predict"
    # Then its answer with and without its steps is the same on both paths
    answered = assert_same(post(path, bc_body(), query="detail=steps"))
    steps = json.loads(answered["body"])["steps"]
    assert [(step["model"]["name"], step["model"]["version"]) for step in steps] == [
        ("breast-cancer", 1),
        ("breast-cancer", 2),
    ]
    assert_same(post(path, bc_body()))


@pytest.fixture
def local_keys(registered: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local keys set, and a body limit a 100-instance body is over."""
    monkeypatch.setenv("AIMASS_API_KEY", "predict-key")
    monkeypatch.setenv("AIMASS_ADMIN_KEY", "admin-key")
    monkeypatch.setenv("AIMASS_MAX_PAYLOAD_BYTES", "3000")
    reset_caches()
    yield
    monkeypatch.undo()
    reset_caches()


def hundred_instances() -> str:
    body = json.loads(bc_body())
    return json.dumps({"instances": body["instances"] * 50})


KEY_CASES: dict[str, Callable[[], Event]] = {
    "no key": lambda: post(BREAST_CANCER, bc_body()),
    "a wrong key": lambda: post(BREAST_CANCER, bc_body(), {"x-api-key": "guess"}),
    "the API key": lambda: post(BREAST_CANCER, bc_body(), {"x-api-key": "predict-key"}),
    "the admin key, header case": lambda: post(BREAST_CANCER, bc_body(), {"X-Api-Key": "admin-key"}),
    "no key on V2": lambda: post("/v2/models/digits/infer", v2_body()),
    "a declared body over the limit": lambda: post(
        BREAST_CANCER, hundred_instances(), {"x-api-key": "predict-key"}
    ),
    "a body over the limit, declared smaller": lambda: post(
        BREAST_CANCER, hundred_instances(), {"x-api-key": "predict-key", "content-length": "10"}
    ),
    "a V2 body over the limit, undeclared": lambda: {
        **(
            sample := post(
                "/v2/models/digits/infer", json.dumps({"pad": "x" * 4000, **json.loads(v2_body())})
            )
        ),
        "headers": {k: v for k, v in sample["headers"].items() if k != "content-length"}
        | {"x-api-key": "predict-key"},
    },
    "a body over the limit, the content type wrong first": lambda: post(
        BREAST_CANCER,
        hundred_instances(),
        {"x-api-key": "predict-key", "content-type": "text/csv", "content-length": "10"},
    ),
}


@pytest.mark.parametrize("case", list(KEY_CASES))
def test_the_request_guard_answers_alike_on_both_paths(local_keys: None, case: str) -> None:
    assert_same(KEY_CASES[case]())


def test_a_rule_rejection_is_answered_alike(registered: Any) -> None:
    rule = {
        "id": "huge",
        "stage": "pre",
        "when": "input.mean_radius > 1000.0",
        "then": {"reject": "implausible"},
    }
    wiring.registry().put_ruleset("breast-cancer", Ruleset.model_validate({"rules": [rule]}), "test")

    answer = assert_same(post(BREAST_CANCER, with_instance({"mean_radius": 5000.0})))

    assert answer["statusCode"] == 422 and json.loads(answer["body"])["error"]["code"] == "rule_rejected"


def test_aws_out_of_reach_is_a_503_with_retry_after_on_both_paths(
    registered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMASS_AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    settings.cache_clear()
    aws.reset()

    v1 = assert_same(event("v1_predict_digits"))
    v2 = assert_same(event("v2_infer_digits"))

    assert v1["statusCode"] == v2["statusCode"] == 503 and v1["headers"]["retry-after"]
    monkeypatch.undo()
    reset_caches()


def test_a_throttled_endpoint_is_a_429_with_retry_after_on_both_paths(
    registered: Any, demos: dict[str, Any], throttling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_runtime(monkeypatch, throttling, sagemaker_max_attempts="1")
    version = on_endpoint(demos["breast-cancer"])

    answer = assert_same(post(f"/v1/models/breast-cancer/versions/{version}:predict", bc_body()))

    assert answer["statusCode"] == 429 and answer["headers"]["retry-after"]


def test_a_tampered_artifact_is_a_409_on_both_paths(registered: Any) -> None:
    shutil.rmtree(settings().model_cache_dir, ignore_errors=True)
    aws.client("s3").put_object(Bucket="aimass-test", Key="models/digits/1/model.onnx", Body=b"not the model")

    answer = assert_same(event("v1_predict_digits"))

    assert answer["statusCode"] == 409, answer["body"]


def test_an_unexpected_error_is_the_same_500_and_no_traceback(registered: Any) -> None:
    # A real fault: a stored version whose document is no longer JSON.
    aws.client("dynamodb").put_item(
        TableName="aimass-test",
        Item={"pk": {"S": "MODEL#breast-cancer"}, "sk": {"S": "V#00000001"}, "doc": {"S": "{broken"}},
    )

    answer = assert_same(event("v1_predict_version"))

    assert answer["statusCode"] == 500 and "Traceback" not in answer["body"]
    assert json.loads(answer["body"])["error"]["code"] == "internal_error"


@pytest.mark.parametrize(
    "change",
    [
        {"version": "1.0"},  # the REST API's payload format
        {"requestContext": {"http": {"method": "GET", "path": BREAST_CANCER, "sourceIp": "1.2.3.4"}}},
        {"rawPath": "/v1/models/b%2Dc:predict"},
        {"headers": {"host": "a/b", "content-type": "application/json"}},
        {"headers": {"host": "h.example", "x-forwarded-proto": "ftp"}},
        {"body": "not base64 ~", "isBase64Encoded": True},
        {"headers": {"x-forwarded-port": "eighty"}},
    ],
    ids=["rest api", "get", "percent-encoded", "odd host", "odd scheme", "bad base64", "bad port"],
)
def test_what_the_direct_path_does_not_fully_recognise_is_left_to_the_app(change: dict[str, Any]) -> None:
    sample = event("v1_predict_breast_cancer") | change
    if "rawPath" in change:
        sample["requestContext"]["http"]["path"] = change["rawPath"]

    assert direct.call_of(sample) is None


def test_the_text_types_are_mangums() -> None:
    assert list(direct.TEXT_TYPES) == DEFAULT_TEXT_MIME_TYPES


def test_the_online_function_builds_fastapi_only_for_what_the_direct_path_does_not_take(
    registered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []

    def counted(parts: Any = ("online", "registry", "metrics")) -> Any:
        built.append("app")
        return create_app(parts)

    monkeypatch.setattr(api_app, "create_app", counted)
    handler = load_handler("online")

    prediction = handler(event("v1_predict_breast_cancer"), LambdaContext())
    assert prediction["statusCode"] == 200 and built == []

    health = handler(event("health"), LambdaContext())
    again = handler(event("health"), LambdaContext())
    assert health["statusCode"] == again["statusCode"] == 200 and built == ["app"]
