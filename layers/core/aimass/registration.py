"""Registering model versions and moving aliases: the registry and the artifact store kept in step;
whether a model's default version is there to serve."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass import artifacts
from aimass.contracts.common import ALIAS_PATTERN, MODEL_NAME_PATTERN
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import (
    BACKEND_PATTERN,
    Alias,
    BaselineRef,
    ModelSummary,
    ModelVersion,
    Signature,
    SignatureEnrichment,
    TrafficPolicy,
)
from aimass.contracts.rules import Ruleset, RulesetVersion
from aimass.errors import Conflict, NotFound, ValidationFailed, field_error
from aimass.protocol.tensors import NUMPY_DTYPES
from aimass.quality import baseline
from aimass.quality.columns import columns_of
from aimass.registry import Registry, fitting, version_meant
from aimass.rules import compile_ruleset
from aimass.serving import codecs
from aimass.serving.backends.onnx import inspect
from aimass.signature import read

log = logging.getLogger(__name__)


def check_name(name: str) -> None:
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise ValidationFailed(
            f"invalid model name {name!r}",
            [field_error(["path", "name"], f"must match {MODEL_NAME_PATTERN}", "pattern")],
        )


def check_alias(alias: str) -> None:
    if not re.fullmatch(ALIAS_PATTERN, alias):
        raise ValidationFailed(
            f"invalid alias {alias!r}",
            [field_error(["path", "alias"], f"must match {ALIAS_PATTERN}", "pattern")],
        )


def choose_backend(
    requested: str | None, size_bytes: int, lambda_max_bytes: int, endpoint: str | None
) -> str:
    """Where a new version runs: the backend asked for, else the Lambda, else (a model too large for
    the Lambda) the stack's SageMaker endpoint. A model too large for the Lambda is refused there."""
    loc: list[str | int] = ["body", "backend"]
    if requested == "graph" or (requested is not None and not re.fullmatch(BACKEND_PATTERN, requested)):
        # A graph is not uploaded: it is composed of other versions (POST .../versions:compose).
        raise ValidationFailed(
            f"invalid backend {requested!r} for an ONNX file",
            [field_error(loc, "`lambda` or `sagemaker:<endpoint>[/<target model>]`", "pattern")],
        )
    too_large = size_bytes > lambda_max_bytes
    size = (
        f"the model is {size_bytes / 2**20:,.1f} MiB; "
        f"the Lambda serves models up to {lambda_max_bytes / 2**20:,.1f} MiB"
    )
    if requested == "lambda" and too_large:
        raise ValidationFailed(size, [field_error(loc, "too large for the Lambda", "too_large")])
    if requested is not None:
        return requested
    if not too_large:
        return "lambda"
    if endpoint:
        return f"sagemaker:{endpoint}"
    raise ValidationFailed(
        f"{size}, and this stack has no GPU endpoint (docs/gpu.md): "
        "name one with backend=sagemaker:<endpoint>",
        [
            field_error(
                ["body", "model"], "too large for the Lambda, and no endpoint to serve it", "too_large"
            )
        ],
    )


def ready(
    summary: ModelSummary,
    versions: list[ModelVersion],
    endpoint_up: Callable[[str], bool] = lambda _: True,
    member: Callable[[str, int], ModelVersion] | None = None,
) -> bool:
    """Whether `:predict` without a version can be served (KServe's `ready`): the version it means
    (champion, else the latest not archived) is registered, its model file is in S3, and, served by
    an endpoint, that endpoint is up as `endpoint_up` knows it (its circuit breaker is not open), as
    are a graph's members' endpoints when `member` reads their records.
    Decided from the records already read and one HeadObject: nothing is downloaded or loaded, the
    registry function serves no predictions."""
    try:
        meant = version_meant(summary, None)
    except NotFound:  # every version archived, and no champion
        return False
    record = next((v for v in versions if v.version == meant), None)
    return (
        record is not None and serves(record, endpoint_up, member) and artifacts.exists(record.artifact_uri)
    )


def serves(
    record: ModelVersion,
    endpoint_up: Callable[[str], bool],
    member: Callable[[str, int], ModelVersion] | None = None,
) -> bool:
    """False for a version served by an endpoint that `endpoint_up` says is down, or, given how to
    read a `member`, for a graph one of whose members is; else True."""
    if record.graph is not None and member is not None:
        return all(serves(member(m.name, m.version), endpoint_up) for m in record.graph.members)
    endpoint = record.runs_on.endpoint
    return endpoint is None or endpoint_up(endpoint)


def baseline_files(record: ModelVersion) -> dict[str, Any]:
    """The version's statistics.json and constraints.json, each checked against its registered
    sha256; NotFound when the version was registered without a reference dataset."""
    ref = record.baseline
    if ref is None:
        raise NotFound(
            f"model {record.name!r} version {record.version} has no baseline: it was registered "
            "without a reference dataset"
        )
    return {
        "version": record.version,
        "statistics": json.loads(artifacts.verified(ref.statistics_uri, ref.sha256["statistics.json"])),
        "constraints": json.loads(artifacts.verified(ref.constraints_uri, ref.sha256["constraints.json"])),
    }


@dataclass(frozen=True)
class Reference:
    """A reference dataset (CSV or Parquet bytes) to compute a version's baseline from."""

    data: bytes
    filename: str
    source: str


def _store_baseline(bucket: str, prefix: str, computed: baseline.Baseline, source: str) -> BaselineRef:
    documents = {"statistics.json": computed.statistics, "constraints.json": computed.constraints}
    if computed.anomaly is not None:
        documents["anomaly.json"] = computed.anomaly
    if computed.background is not None:
        documents["background.json"] = computed.background
    uris: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for filename, document in documents.items():
        data = json.dumps(document, indent=1).encode()
        uris[filename] = artifacts.put(bucket, f"{prefix}baseline/{filename}", data, "application/json")
        hashes[filename] = artifacts.sha256(data)
    return BaselineRef(
        statistics_uri=uris["statistics.json"],
        constraints_uri=uris["constraints.json"],
        anomaly_uri=uris.get("anomaly.json"),
        background_uri=uris.get("background.json"),
        sha256=hashes,
        item_count=computed.statistics["dataset"]["item_count"],
        source=source,
    )


# The most reference rows the model is run on for the baseline's predictions (a seeded sample).
PREDICTION_ROWS = 20_000


def _reference_predictions(session: Any, signature: Signature, matrix: np.ndarray) -> list[Any]:
    """What the model predicts on (a sample of) the reference: the baseline's predictions, which a
    monitor run's prediction drift compares the captured answers with. Only a model with one 2-D
    numeric input is run; nothing (logged) when it cannot be, or fails on the reference."""
    if len(signature.inputs) != 1 or signature.inputs[0].dtype in ("string", "bool"):
        return []
    spec = signature.inputs[0]
    if len(matrix) > PREDICTION_ROWS:
        rows = np.random.default_rng(0).choice(len(matrix), PREDICTION_ROWS, replace=False)
        matrix = matrix[np.sort(rows)]
    cells = [d or 0 for d in spec.shape[1:]]
    if len(cells) > 1 and int(np.prod(cells)) != matrix.shape[1]:  # no fixed cell shape to fill
        return []
    try:
        # A model of one tensor (an image) takes the matrix's rows in its cell shape
        tensor = matrix.reshape(len(matrix), *cells) if len(cells) > 1 else matrix
        feeds = {spec.name: np.ascontiguousarray(tensor, dtype=NUMPY_DTYPES[spec.dtype])}
        names = [o.name for o in signature.outputs]
        outputs = dict(zip(names, session.run(names, feeds), strict=True))
        answers = codecs.v1_predictions(signature, outputs, len(matrix))
    except Exception as error:  # whatever the model raises on the reference's rows
        log.warning("the baseline holds no predictions: the model failed on the reference: %s", error)
        return []
    return [baseline.prediction_value(answer) for answer in answers]


def register_version(
    registry: Registry,
    bucket: str,
    name: str,
    model: bytes,
    actor: str,
    enrichment: SignatureEnrichment | None = None,
    metrics: dict[str, float] | None = None,
    reference: Reference | None = None,
    lineage: dict[str, Any] | None = None,
    backend: str = "lambda",
    note: str | None = None,
    baseline_ref: BaselineRef | None = None,
) -> ModelVersion:
    """Read the signature from the graph (and, for a classifier, from one probe row: the classes it
    outputs), compute the baseline of the reference data if given, store the artifacts, then record
    the immutable version. `baseline_ref`, without a reference: another version's baseline, shared
    (a compressed copy of a version judges its traffic against the same reference)."""
    check_name(name)
    session = inspect(model)
    signature = read(session, enrichment)
    computed = None
    if reference is not None:
        columns = columns_of(signature)
        if columns is None:
            raise ValidationFailed(
                "this model's input has no columns to compute a baseline over (several inputs, or a "
                "dynamic cell shape)",
                [field_error(["reference"], "not supported for this signature", "no_columns")],
            )
        matrix = baseline.read_reference(reference.data, reference.filename, columns)
        computed = baseline.compute(columns, matrix)
        predicted = baseline.prediction_statistics(_reference_predictions(session, signature, matrix))
        if predicted is not None:
            computed.statistics["aimass"] = {"prediction": predicted}
    described: dict[str, Any] = {
        "signature": signature,
        "backend": backend,
        "description": enrichment.description if enrichment else None,
        "metrics": metrics or {},
        "lineage": lineage or {},
        "created_by": actor,
    }
    return record_version(
        registry,
        bucket,
        name,
        described,
        StoredFile("model.onnx", model),
        ("the version's signature and metadata", ["body", "metadata"]),
        note,
        lambda prefix: (
            _store_baseline(bucket, prefix, computed, reference.source)
            if computed and reference
            else baseline_ref
        ),
    )


@dataclass(frozen=True)
class StoredFile:
    """A version's artifact as it is stored under the version's folder."""

    name: str
    data: bytes
    content_type: str = "application/octet-stream"


def record_version(
    registry: Registry,
    bucket: str,
    name: str,
    described: dict[str, Any],
    artifact: StoredFile,
    fits: tuple[str, list[Any]],
    note: str | None,
    baseline: Callable[[str], BaselineRef | None] | None = None,
) -> ModelVersion:
    """Register the next version of `name` from its `described` fields (signature, backend, ...):
    checked to fit a registry record (`fits`: what it is, and where in the request), then given a
    version number, its artifact and signature.json stored, its `baseline` stored under the version's
    folder (a function of that folder) when there is one, and committed with an audit record."""
    # A bad model or reference, or a version too large to record, fails before a version number is
    # taken; what is added after this check (URIs, hashes) is far below the limit's headroom.
    fitting(
        ModelVersion(
            name=name, version=0, artifact_uri="", sha256="", size_bytes=0, **described
        ).model_dump_json(),
        *fits,
    )
    version = registry.reserve_version(name)
    prefix = artifacts.version_prefix(name, version)
    stored: dict[str, Any] = {} if baseline is None else {"baseline": baseline(prefix)}
    record = ModelVersion(
        name=name,
        version=version,
        artifact_uri=artifacts.put(bucket, prefix + artifact.name, artifact.data, artifact.content_type),
        sha256=artifacts.sha256(artifact.data),
        size_bytes=len(artifact.data),
        **described,
        **stored,
    )
    signature = described["signature"]
    artifacts.put(
        bucket, prefix + "signature.json", signature.model_dump_json(indent=2).encode(), "application/json"
    )
    return registry.commit_version(record, note)


def set_alias(
    registry: Registry, name: str, alias: str, version: int, actor: str, note: str | None = None
) -> Alias:
    """Point an alias at a version whose artifact still has the bytes it was registered with, and
    whose signature the model's rules fit."""
    check_alias(alias)
    record = registry.get_version(name, version)
    artifacts.verified(record.artifact_uri, record.sha256)
    summary = registry.get_model(name)
    if summary.rules_version is not None:
        compile_ruleset(registry.get_ruleset(name, summary.rules_version).ruleset, record.signature)
    return registry.set_alias(name, alias, version, actor, note)


def save_ruleset(
    registry: Registry, name: str, ruleset: Ruleset, actor: str, note: str | None = None
) -> RulesetVersion:
    """Check the rules against every version an alias or `latest` serves, then store them."""
    summary = registry.get_model(name)
    for version in sorted({*summary.aliases.values(), summary.latest_version}):
        compile_ruleset(ruleset, registry.get_version(name, version).signature)
    return registry.put_ruleset(name, ruleset, actor, note)


def set_quality_policy(
    registry: Registry, name: str, policy: QualityPolicy, actor: str, note: str | None = None
) -> QualityPolicy:
    """Check that the features the policy marks personal are features of the model's versions (a
    misspelt name would leave the real feature's values stored raw), then store it."""
    if policy.pii_features:
        registry.get_model(name)  # 404 for an unknown model, not a 422 for its features
        known = {f.name for v in registry.list_versions(name) for f in v.signature.features or []}
        unknown = [
            field_error(
                ["body", "pii_features", i], f"not a feature of any version of {name!r}", "unknown_feature"
            )
            for i, feature in enumerate(policy.pii_features)
            if feature not in known
        ]
        if unknown:
            raise ValidationFailed(f"pii_features names features {name!r} does not have", unknown)
    return registry.set_quality_policy(name, policy, actor, note)


def set_traffic_policy(
    registry: Registry, name: str, policy: TrafficPolicy, actor: str, note: str | None = None
) -> TrafficPolicy:
    """Check a traffic policy against the model as it stands (check_traffic_policy), then store it.
    A policy that still brings in the version of the rollout under way (its canary widened or
    narrowed by hand) stays in that rollout: its plan, guards and live figures go on; any other
    policy ends it."""
    check_traffic_policy(registry, name, policy)
    model = registry.get_model(name)
    plan = model.rollout_plan
    brings = {split.version for split in (policy.canary, policy.shadow) if split is not None}
    if plan is None or model.traffic.rollout != plan.id or plan.version not in brings:
        plan = None
    return registry.set_traffic_policy(name, policy, actor, note, plan=plan, previous=model.traffic)


def check_traffic_policy(
    registry: Registry, name: str, policy: TrafficPolicy, loc: list[str | int] | None = None
) -> None:
    """A policy's canary and shadow are registered versions, not archived, not the stable one, whose
    artifacts still have their bytes and whose signatures the model's rules fit; a `feature:` routing
    key is a feature of both the stable version and the canary."""
    summary = registry.get_model(name)
    stable = version_meant(summary, None) if policy.under_way else None
    for role, split in (("canary", policy.canary), ("shadow", policy.shadow)):
        if split is None:
            continue
        where = loc or ["body", role, "version"]
        record = registry.get_version(name, split.version)  # 404 when there is no such version
        if split.version == stable:
            raise ValidationFailed(
                f"version {split.version} is the stable version of {name!r}; a {role} is another version",
                [field_error(where, "the stable version", "same_as_stable")],
            )
        if split.version in summary.archived_versions:
            raise Conflict(
                f"version {split.version} of {name!r} is archived and takes no traffic; unarchive it first",
                [field_error(where, "archived", "archived")],
            )
        artifacts.verified(record.artifact_uri, record.sha256)
        if summary.rules_version is not None:
            compile_ruleset(registry.get_ruleset(name, summary.rules_version).ruleset, record.signature)
    if policy.canary is not None and policy.sticky_by is not None and policy.sticky_by.startswith("feature:"):
        feature = policy.sticky_by.removeprefix("feature:")
        for version in (stable, policy.canary.version):
            assert version is not None
            features = registry.get_version(name, version).signature.features or []
            if feature not in [f.name for f in features]:
                raise ValidationFailed(
                    f"version {version} of {name!r} has no feature {feature!r} to route by",
                    [
                        field_error(
                            ["body", "sticky_by"], f"not a feature of version {version}", "unknown_feature"
                        )
                    ],
                )
