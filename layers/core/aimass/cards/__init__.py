"""Model cards (docs/cards.md): every version's card, as SageMaker Model Card content (`content`) and
as an HTML page with plots (`page`), made from what the registry knows of the version and the fields a
person supplied for it (stored beside the version, audited as `set_card`).

`inputs_for` reads what a card is made of; the card is built when it is asked for, so that the rules
and quality policy it shows are the ones in force now."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aimass.cards.attributions import CardAttributions, card_attributions
from aimass.cards.content import CardInputs, build
from aimass.contracts.cards import CardFieldsUpdate, ModelCardContent
from aimass.registration import baseline_files
from aimass.registry import Registry
from aimass.serving.store import ModelStore

__all__ = [
    "CardAttributions",
    "CardInputs",
    "build",
    "card",
    "card_attributions",
    "explained_inputs",
    "inherit_fields",
    "inputs_for",
]


def inputs_for(
    registry: Registry,
    name: str,
    version: int,
    attributions: Mapping[str, float] | None = None,
) -> CardInputs:
    """What the card of a version is made of, as the registry and the artifact store have it now
    (NotFound for an unknown model or version). `attributions`: the feature attributions' global
    summary, when the caller has it (mean |SHAP| per feature over the baseline); `explained_inputs`
    adds the one kept for the version."""
    record = registry.get_version(name, version)
    summary = registry.get_model(name)
    statistics = baseline_files(record)["statistics"] if record.baseline is not None else None
    ruleset = registry.get_ruleset(name, summary.rules_version) if summary.rules_version is not None else None
    return CardInputs(
        record=record,
        fields=registry.get_card_fields(name, version),
        statistics=statistics,
        ruleset=ruleset,
        quality_policy=summary.quality_policy,
        aliases=tuple(sorted(a for a, v in summary.aliases.items() if v == version)),
        archived=version in summary.archived_versions,
        attributions=attributions,
    )


def _explained(explained: CardAttributions) -> dict[str, Any]:
    """The card inputs a version's attributions make: the summary and how it was computed, or a note."""
    summary = explained.summary
    if summary is None:
        return {"attributions_note": explained.note}
    metadata = {
        "method": summary.method,
        "samples": str(summary.samples),
        "seed": str(summary.seed),
        "rows": f"the first {summary.rows} of {summary.background_rows} background rows "
        f"({summary.background_source}), each against them all",
        "computed_at": summary.computed_at,
    }
    if explained.uri:
        metadata["summary"] = explained.uri
    return {"attributions": summary.attributions, "attributions_metadata": metadata}


def explained_inputs(
    registry: Registry, store: ModelStore, bucket: str, name: str, version: int
) -> CardInputs:
    """What the card of a version is made of, its attributions' summary included: kept beside its files,
    else computed now through the store and kept (aimass.cards.attributions.card_attributions)."""
    inputs = inputs_for(registry, name, version)  # NotFound first, before anything is computed
    return replace(inputs, **_explained(card_attributions(store, bucket, name, version)))


def card(
    registry: Registry, name: str, version: int, attributions: Mapping[str, float] | None = None
) -> ModelCardContent:
    return build(inputs_for(registry, name, version, attributions))


def inherit_fields(registry: Registry, name: str, parent: int, version: int, actor: str) -> list[str]:
    """Start a retrained version's card with the fields a person supplied for the version it retrains
    (owner, intended use, limits, risk rating, ...): what a model is for does not change with its
    weights. Audited like any card write; the names of the fields copied (none: nothing written)."""
    found = registry.get_card_fields(name, parent)
    supplied = found.supplied() if found else {}
    if supplied:
        registry.set_card_fields(name, version, CardFieldsUpdate(**supplied), actor, f"from v{parent}'s card")
    return sorted(supplied)
