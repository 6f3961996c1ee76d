"""The package an endpoint serves: the version's ONNX bytes (checked against their registered
sha256) and a `config.json` for the inference server, as `model.tar.gz` with the single-model layout at
its root, under `models/<name>/<version>/sagemaker/`."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from aimass import artifacts
from aimass.contracts.registry import ModelVersion
from aimass.deploy.request import Batching

PACKAGE_KEY = "sagemaker/model.tar.gz"


@dataclass(frozen=True)
class Package:
    uri: str
    sha256: str
    size_bytes: int
    config: dict[str, Any]


def model_config(version: ModelVersion, batching: Batching) -> dict[str, Any]:
    """The server's config.json for this version: batching, and the feature names if it has any."""
    config: dict[str, Any] = {
        "batching": batching.enabled,
        "max_batch_size": batching.max_batch_size,
        "max_queue_delay_ms": batching.max_queue_delay_ms,
    }
    if version.signature.features:
        config["features"] = [f.name for f in version.signature.features]
    if batching.memory_mb is not None:
        config["memory_mb"] = batching.memory_mb
    return config


def archive(onnx: bytes, config: dict[str, Any]) -> bytes:
    """`model.tar.gz` with model.onnx and config.json at its root, which SageMaker extracts into
    /opt/ml/model. The same inputs give the same bytes (no times, owners or names of this machine)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in (("model.onnx", onnx), ("config.json", json.dumps(config, indent=2).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def package(version: ModelVersion, batching: Batching) -> Package:
    """The version's checked ONNX bytes and its config.json as model.tar.gz, uploaded next to them."""
    onnx = artifacts.verified(version.artifact_uri, version.sha256)
    config = model_config(version, batching)
    data = archive(onnx, config)
    bucket, _ = artifacts.parse_uri(version.artifact_uri)
    key = artifacts.version_prefix(version.name, version.version) + PACKAGE_KEY
    uri = artifacts.put(bucket, key, data, "application/gzip")
    return Package(uri, artifacts.sha256(data), len(data), config)
