"""Model cards (docs/cards.md): every version's card, as SageMaker Model Card content (`content`) and
as an HTML page with plots (`page`), made from what the registry knows of the version and the fields a
person supplied for it (stored beside the version, audited as `set_card`).

`inputs_for` reads what a card is made of; the card is built when it is asked for, so that the rules
and quality policy it shows are the ones in force now."""

from __future__ import annotations

from collections.abc import Mapping

from aimass.cards.content import CardInputs, build
from aimass.contracts.cards import CardFieldsUpdate, ModelCardContent
from aimass.registration import baseline_files
from aimass.registry import Registry

__all__ = ["CardInputs", "build", "card", "inherit_fields", "inputs_for"]


def inputs_for(
    registry: Registry, name: str, version: int, attributions: Mapping[str, float] | None = None
) -> CardInputs:
    """What the card of a version is made of, as the registry and the artifact store have it now
    (NotFound for an unknown model or version). `attributions`: the feature attributions' global
    summary, when the caller has it (mean |SHAP| per feature over the baseline)."""
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
