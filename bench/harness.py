"""What the benchmarks share: the embedded AWS, the Lambda function and context, events and rows."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from aimass.local.stack import FAKE_CREDENTIALS
from bench.environment import REPO
from gpu_endpoints.process import free_port

EVENTS = REPO / "events"
# Demo models and the server's state, kept between runs so only the first run trains (gitignored).
STATE_DIR = REPO / ".aimass" / "bench"
# What the SAM template gives every function; the tracer is off because no X-Ray daemon runs here.
FUNCTION_ENV = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "aimass",
    "POWERTOOLS_SERVICE_NAME": "aimass",
    # numpy's BLAS on one thread, as the template's Globals set it: its thread pool, started at numpy's
    # import, spent about 70 ms of CPU in each fresh process here, which no deployed function spends.
    "OPENBLAS_NUM_THREADS": "1",
    # Data capture off: its S3 PUT would go to the moto server inside this very process (about 8 ms of
    # CPU here), which says nothing of S3. Its cost is measured on its own (docs/deploy.md).
    "AIMASS_CAPTURE_ENABLED": "false",
}
# The API Gateway sample event each model's requests are made from.
EVENT_TEMPLATES = {"breast-cancer": "v1_predict_breast_cancer.json", "digits": "v1_predict_digits.json"}


@contextmanager
def local_aws() -> Iterator[Any]:
    """The embedded stack's moto server in this process, both demos registered as champion.

    Its model cache is pointed at an empty folder, so the first request of a benchmark really
    resolves the version in DynamoDB and downloads the artifact from S3.
    """
    from aimass.local.stack import LocalStack

    os.environ.update(FUNCTION_ENV)
    # With a key set, every request would need the x-api-key header: the events from events/ have none.
    os.environ.pop("AIMASS_API_KEY", None)
    stack = LocalStack(aws_port=free_port(), state_dir=STATE_DIR)
    stack.start()
    try:
        stack.register_demos()
        with tempfile.TemporaryDirectory(prefix="aimass-bench-cache-") as cache:
            os.environ["AIMASS_MODEL_CACHE_DIR"] = cache
            reset_service_caches()
            yield stack
    finally:
        stack.stop()


def reset_service_caches() -> None:
    """Make the service read its settings again and forget clients, registry answers and sessions."""
    from aimass import aws, wiring
    from aimass.config import settings

    settings.cache_clear()
    aws.reset()
    wiring.reset()


def function_file(tree: Path, function: str) -> Path:
    """functions/<function>/app.py of a checkout (this one, or the one `--tree` names)."""
    return tree / "functions" / function / "app.py"


def layer_env(tree: Path) -> dict[str, str]:
    """A function process's package from a checkout's layer source, as Lambda puts the layer on
    sys.path, whatever the venv installed: the figures are that checkout's."""
    return {"PYTHONPATH": str(tree / "layers" / "core")}


def aws_env(stack: Any, model_cache_dir: Path) -> dict[str, str]:
    """The environment a function process needs to reach the embedded AWS (and nothing else)."""
    return {
        **FAKE_CREDENTIALS,
        **FUNCTION_ENV,
        "AIMASS_AWS_ENDPOINT_URL": stack.aws_endpoint,
        "AIMASS_BUCKET": stack.bucket,
        "AIMASS_REGISTRY_TABLE": stack.table,
        "AIMASS_MODEL_CACHE_DIR": str(model_cache_dir),
    }


@dataclass(frozen=True)
class Rows:
    """The same held-out rows two ways: the JSON instances a client sends, the tensor the floor runs."""

    model: str
    instances: list[Any]
    tensor: np.ndarray

    @property
    def body(self) -> dict[str, Any]:
        return {"instances": self.instances}


@cache
def demo(model: str) -> Any:
    """A demo model and its held-out rows (trained into STATE_DIR on the very first run)."""
    from aimass.local.demo import load_or_train

    return load_or_train(model, STATE_DIR)


def demo_rows(model: str, count: int) -> Rows:
    """The first `count` held-out rows of a demo model (objects keyed by feature name when it has them)."""
    held_out = demo(model).holdout
    if len(held_out) < count:
        raise ValueError(f"{model} has only {len(held_out)} held-out rows")
    tensor = np.ascontiguousarray(held_out[:count], dtype=np.float32)
    features = demo(model).enrichment.features
    if features:
        names = [f if isinstance(f, str) else f.name for f in features]
        instances: list[Any] = [dict(zip(names, row.tolist(), strict=True)) for row in tensor]
    else:
        instances = tensor.tolist()
    return Rows(model, instances, tensor)


def demo_model(model: str) -> bytes:
    model_bytes: bytes = demo(model).model
    return model_bytes


def predict_event(rows: Rows) -> dict[str, Any]:
    """The model's API Gateway HTTP API (v2) sample event with its body replaced by these rows."""
    event: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / EVENT_TEMPLATES[rows.model]).read_text()))
    body = json.dumps(rows.body)
    event["body"] = body
    event["headers"]["content-length"] = str(len(body.encode()))
    return event
