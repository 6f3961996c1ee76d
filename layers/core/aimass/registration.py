"""Registering model versions and moving aliases: the registry and the artifact store kept in step."""

from __future__ import annotations

import re

from aimass import artifacts
from aimass.contracts import (
    ALIAS_PATTERN,
    MODEL_NAME_PATTERN,
    Alias,
    ModelVersion,
    Ruleset,
    RulesetVersion,
    SignatureEnrichment,
)
from aimass.errors import ValidationFailed, field_error
from aimass.inference.onnx import inspect
from aimass.registry import Registry
from aimass.rules import compile_ruleset
from aimass.signature import enrich, from_session


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


def model_card(record: ModelVersion) -> str:
    signature = record.signature
    lines = [
        f"# {record.name} v{record.version}",
        "",
        record.description or "",
        "",
        f"- registered: {record.created_at} by {record.created_by}",
        f"- artifact: {record.artifact_uri} (sha256 {record.sha256})",
        f"- task: {signature.task}",
        "- inputs: " + ", ".join(f"{i.name} {i.dtype}{i.shape}" for i in signature.inputs),
        "- outputs: " + ", ".join(f"{o.name} {o.dtype}{o.shape}" for o in signature.outputs),
    ]
    if signature.features:
        lines.append("- features: " + ", ".join(f.name for f in signature.features))
    if signature.class_labels:
        lines.append("- classes: " + ", ".join(signature.class_labels))
    if record.metrics:
        lines.append("- metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(record.metrics.items())))
    return "\n".join(lines) + "\n"


def register_version(
    registry: Registry,
    bucket: str,
    name: str,
    model: bytes,
    actor: str,
    enrichment: SignatureEnrichment | None = None,
    metrics: dict[str, float] | None = None,
) -> ModelVersion:
    """Read the signature from the graph, store the artifact, then record the immutable version."""
    check_name(name)
    signature = enrich(from_session(inspect(model)), enrichment)
    version = registry.reserve_version(name)
    prefix = artifacts.version_prefix(name, version)
    record = ModelVersion(
        name=name,
        version=version,
        artifact_uri=artifacts.put(bucket, prefix + "model.onnx", model),
        sha256=artifacts.sha256(model),
        size_bytes=len(model),
        signature=signature,
        description=enrichment.description if enrichment else None,
        metrics=metrics or {},
        created_by=actor,
    )
    artifacts.put(
        bucket, prefix + "signature.json", signature.model_dump_json(indent=2).encode(), "application/json"
    )
    artifacts.put(bucket, prefix + "model_card.md", model_card(record).encode(), "text/markdown")
    return registry.commit_version(record)


def set_alias(registry: Registry, name: str, alias: str, version: int, actor: str) -> Alias:
    """Point an alias at a version whose artifact still has the bytes it was registered with, and
    whose signature the model's rules fit."""
    check_alias(alias)
    record = registry.get_version(name, version)
    artifacts.verified(record.artifact_uri, record.sha256)
    summary = registry.get_model(name)
    if summary.rules_version is not None:
        compile_ruleset(registry.get_ruleset(name, summary.rules_version).ruleset, record.signature)
    return registry.set_alias(name, alias, version, actor)


def save_ruleset(registry: Registry, name: str, ruleset: Ruleset, actor: str) -> RulesetVersion:
    """Check the rules against every version an alias or `latest` serves, then store them."""
    summary = registry.get_model(name)
    for version in sorted({*summary.aliases.values(), summary.latest_version}):
        compile_ruleset(ruleset, registry.get_version(name, version).signature)
    return registry.put_ruleset(name, ruleset, actor)
