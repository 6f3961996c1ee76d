"""The feature attributions' global summary of a version's card (docs/cards.md): mean |SHAP| per
feature over its baseline rows (aimass.serving.explanations.global_importance), computed once per
version, on the first card request that lacks it, and kept beside the version's files as
`models/<name>/<version>/card/attributions.json` (contracts.cards.AttributionsSummary); read
afterwards. A version that cannot be explained has a card without it, and a note saying why.

The parameters keep a first request to about a second on a busy 2-CPU machine for breast-cancer (30
features) and digits (64): ROWS x SAMPLES x the background's 100 rows = 2.6 million model rows."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aimass import artifacts
from aimass.contracts.cards import AttributionsSummary
from aimass.errors import BackendError, Conflict, NotFound
from aimass.serving.explanations import background_of, feature_names, global_importance
from aimass.serving.store import ModelStore

SAMPLES = 512  # coalitions per row explained (`:explain`'s default is 2 x features + 2048)
ROWS = 50  # background rows explained, each against the whole background
SEED = 0
FILE = "card/attributions.json"


@dataclass(frozen=True)
class CardAttributions:
    """What a card shows of its version's attributions: the summary, or why there is none."""

    summary: AttributionsSummary | None = None
    uri: str | None = None
    note: str | None = None


def summary_uri(bucket: str, name: str, version: int) -> str:
    return f"s3://{bucket}/{artifacts.version_prefix(name, version)}{FILE}"


def stored(bucket: str, name: str, version: int) -> AttributionsSummary | None:
    """The summary kept for a version, or None when none was computed yet."""
    try:
        return AttributionsSummary.model_validate_json(artifacts.get(summary_uri(bucket, name, version)))
    except NotFound:
        return None


def compute(store: ModelStore, name: str, version: int) -> AttributionsSummary:
    """The version's summary, through its runner (ONNX in process, a graph through its members) against
    its background; Conflict when it cannot be explained or does not run in this process (NotFound for
    an unknown version)."""
    model = store.load(name, version)
    record = model.version
    background = background_of(store, record, feature_names(record.signature))
    if not store.runs_locally(name, version):
        rows = min(ROWS, len(background.rows)) * SAMPLES * len(background.rows)
        raise Conflict(
            f"{record.backend!r} does not run in this function: its card's summary would cost {rows:,} model "
            "rows through a SageMaker endpoint, so it is not computed; `:explain` explains its predictions"
        )
    attributions = global_importance(store, model, samples=SAMPLES, seed=SEED, rows=ROWS)
    return AttributionsSummary(
        name=name,
        version=version,
        attributions=attributions,
        samples=SAMPLES,
        seed=SEED,
        rows=min(ROWS, len(background.rows)),
        background_rows=len(background.rows),
        background_source=background.source,
    )


def card_attributions(store: ModelStore, bucket: str, name: str, version: int) -> CardAttributions:
    """The summary a version's card shows: the one kept beside its files, else computed now and kept
    (two first requests at once both compute it, to the same numbers: the seed is fixed). A version
    that cannot be explained (no baseline, a non-numeric feature, several inputs, an endpoint, its
    artifact refused) gets a note instead; nothing is kept for it, so a cause that passes (an artifact
    put right) is not remembered. NotFound for an unknown version."""
    uri = summary_uri(bucket, name, version)
    found = stored(bucket, name, version)
    if found is not None:
        return CardAttributions(found, uri)
    try:
        summary = compute(store, name, version)
    except (Conflict, BackendError) as error:  # IntegrityError, a refused artifact, is a Conflict
        return CardAttributions(note=error.message)
    data = json.dumps(summary.model_dump(), separators=(",", ":")).encode()
    artifacts.put(bucket, f"{artifacts.version_prefix(name, version)}{FILE}", data, "application/json")
    return CardAttributions(summary, uri)
