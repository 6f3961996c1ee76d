"""Model cards through the API on moto: the card as SageMaker Model Card content and as a page, the
fields a person supplies set, validated and audited, and 404s for what is not there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import artifacts, wiring
from aimass.api.app import create_app
from aimass.cards.attributions import ROWS, SAMPLES, summary_uri
from aimass.contracts.cards import AttributionsSummary, ModelCardContent
from aimass.contracts.rules import Ruleset
from aimass.registration import Reference, register_version
from tests.support import retrained

CARD = "/v1/models/breast-cancer/versions/1/card"


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def overview_features(client: TestClient) -> list[dict[str, Any]]:
    features: list[dict[str, Any]] = client.get("/v1/models/breast-cancer/versions/1").json()["signature"][
        "features"
    ]
    return features


def card_audits(client: TestClient) -> list[dict[str, Any]]:
    trail = client.get("/v1/models/breast-cancer/audit").json()
    return [r for r in trail if r["action"] == "set_card"]


def test_a_registered_version_has_a_card_in_sagemaker_content_schema(client: TestClient) -> None:
    # Given breast-cancer v1, registered with its reference data, with rules in force
    rules = Ruleset.model_validate(
        {"rules": [{"id": "low-radius", "when": "mean_radius < 7.0", "then": {"flag": "small"}}]}
    )
    wiring.registry().put_ruleset("breast-cancer", rules, "tester")

    # When its card is asked for as JSON
    response = client.get(CARD)

    # Then it is SageMaker Model Card content, filled from what the registry knows
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    card = response.json()
    ModelCardContent.model_validate(card)
    overview = card["model_overview"]
    assert (overview["model_name"], overview["model_version"]) == ("breast-cancer", 1)
    assert overview["problem_type"] == "Binary Classification"
    assert overview["model_artifact"] == ["s3://aimass-test/models/breast-cancer/1/model.onnx"]
    assert card["intended_uses"]["risk_rating"] == "Unknown"
    baseline = next(d for d in card["evaluation_details"] if d["name"] == "baseline")
    assert len(baseline["metric_groups"]) == 30 and baseline["metric_groups"][0]["name"] == "mean_radius"
    assert baseline["evaluation_observation"] == "426 rows of breast-cancer demo training data"
    custom = card["additional_information"]["custom_details"]
    assert custom["rules"] == "v1 (first hit), 1 rules; post: low-radius"
    assert custom["aliases"] == "champion"
    assert '"violations":"flag"' in custom["quality_policy"]
    assert set(json.loads(custom["feature_attributions"])) <= {f["name"] for f in overview_features(client)}


def test_a_browser_gets_the_card_as_a_page_with_plots(client: TestClient) -> None:
    response = client.get(CARD, headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    sections = ("overview", "intended-use", "training", "evaluation", "baseline", "attributions", "in-force")
    for section in (*sections, "limits"):
        assert f'<section id="{section}">' in page
    # the baseline's histograms and the attributions' bars: the demo has no registered metrics
    assert page.count("<svg") == 2 and "Bar plot of the mean |SHAP| per feature" in page
    assert "No metrics were registered with this version." in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched


def test_card_fields_are_set_validated_and_audited(client: TestClient) -> None:
    # When an admin sets the owner, intended use, limits and risk rating
    fields = {
        "owner": "oncology-ml@example.com",
        "intended_use": "triage before a pathologist's review",
        "limits": "one hospital's data; not for screening",
        "risk_rating": "Medium",
    }
    saved = client.patch(CARD, json=fields, headers={"x-aimass-note": "TICKET-7"})

    # Then they are stored beside the version, audited, and in the card where the schema puts them
    assert saved.status_code == 200, saved.text
    assert saved.json()["revision"] == 1 and saved.json()["owner"] == fields["owner"]
    [audit] = card_audits(client)
    assert audit["details"] == {"version": 1, "revision": 1, "fields": fields} and audit["note"] == "TICKET-7"
    card = client.get(CARD).json()
    assert card["model_overview"]["model_owner"] == fields["owner"]
    assert card["intended_uses"]["intended_uses"] == fields["intended_use"]
    assert card["intended_uses"]["risk_rating"] == "Medium"
    assert card["additional_information"]["caveats_and_recommendations"] == fields["limits"]

    # And a later write sets what it gives (null clears), leaving the rest
    again = client.patch(CARD, json={"owner": None, "risk_rating": "Low"}).json()
    assert again["revision"] == 2 and again["owner"] is None
    assert (again["limits"], again["risk_rating"]) == (fields["limits"], "Low")


def test_the_version_record_is_unchanged_by_its_card(client: TestClient) -> None:
    before = client.get("/v1/models/breast-cancer/versions/1").json()
    client.patch(CARD, json={"owner": "someone"})
    assert client.get("/v1/models/breast-cancer/versions/1").json() == before


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"colour": "blue"}, ["body", "colour"], "extra_forbidden"),
        ({"risk_rating": "Severe"}, ["body", "risk_rating"], "literal_error"),
        ({"owner": "x" * 1025}, ["body", "owner"], "string_too_long"),
    ],
)
def test_bad_card_fields_are_refused_with_their_field_and_change_nothing(
    client: TestClient, body: dict[str, Any], loc: list[str], kind: str
) -> None:
    response = client.patch(CARD, json=body)

    assert response.status_code == 422
    [detail] = response.json()["error"]["details"]
    assert (detail["loc"], detail["type"]) == (loc, kind)
    assert card_audits(client) == []
    assert wiring.registry().get_card_fields("breast-cancer", 1) is None


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("/v1/models/nope/versions/1/card", ["path", "name"]),
        ("/v1/models/breast-cancer/versions/99/card", ["path", "version"]),
    ],
)
def test_a_card_of_an_unknown_model_or_version_is_a_404(
    client: TestClient, path: str, loc: list[str]
) -> None:
    for response in (client.get(path), client.patch(path, json={"owner": "x"})):
        assert response.status_code == 404
        assert response.json()["error"]["details"][0]["loc"] == loc
    assert card_audits(client) == []


def stored_summary(version: int = 1) -> AttributionsSummary | None:
    uri = summary_uri("aimass-test", "breast-cancer", version)
    return AttributionsSummary.model_validate_json(artifacts.get(uri)) if artifacts.exists(uri) else None


def test_the_cards_attributions_are_computed_on_the_first_request_and_kept_beside_the_version(
    client: TestClient,
) -> None:
    # Given breast-cancer v1, whose card was never asked for: no summary is kept
    assert stored_summary() is None
    # When its card is asked for
    card = client.get(CARD).json()
    # Then the summary was computed over its reference sample and kept beside its files, with how
    kept = stored_summary()
    assert kept is not None
    assert (kept.samples, kept.seed, kept.rows, kept.background_rows) == (SAMPLES, 0, ROWS, 100)
    assert kept.background_source == "reference sample" and len(kept.attributions) == 30
    # and the card shows it: the bar chart, largest first, and the custom detail
    [detail] = [d for d in card["evaluation_details"] if d["name"] == "feature attributions"]
    [bars] = detail["metric_groups"][0]["metric_data"]
    ranked = sorted(kept.attributions.items(), key=lambda kv: -kv[1])
    assert bars["x_axis_name"] == [k for k, _ in ranked] and bars["value"] == [v for _, v in ranked]
    assert detail["metadata"]["samples"] == str(SAMPLES)
    assert detail["metadata"]["summary"] == "s3://aimass-test/models/breast-cancer/1/card/attributions.json"
    custom = card["additional_information"]["custom_details"]
    assert next(iter(json.loads(custom["feature_attributions"]))) == ranked[0][0]
    assert "feature_attributions_note" not in custom

    # When the kept document says otherwise, the next card reads it rather than computing again
    marked = kept.model_copy(update={"attributions": {**kept.attributions, "mean_radius": 42.0}})
    artifacts.put(
        "aimass-test", "models/breast-cancer/1/card/attributions.json", marked.model_dump_json().encode()
    )
    again = client.get(CARD).json()
    [detail] = [d for d in again["evaluation_details"] if d["name"] == "feature attributions"]
    assert detail["metric_groups"][0]["metric_data"][0]["x_axis_name"][0] == "mean_radius"
    page = client.get(CARD, headers={"accept": "text/html"}).text
    assert "42" in page.split('<section id="attributions">')[1].split("</section>")[0]


def test_a_version_without_a_baseline_has_a_card_with_a_note_instead_of_attributions(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given a version registered without a reference dataset
    demo = demos["breast-cancer"]
    record = register_version(wiring.registry(), "aimass-test", "breast-cancer", retrained(demo.model), "t")
    path = f"/v1/models/breast-cancer/versions/{record.version}/card"
    # When its card is asked for, as JSON and as a page
    card = client.get(path)
    page = client.get(path, headers={"accept": "text/html"})
    # Then it has a card, without the section, and a note that says why; nothing is kept
    assert card.status_code == 200 and page.status_code == 200
    assert all(d["name"] != "feature attributions" for d in card.json()["evaluation_details"])
    note = card.json()["additional_information"]["custom_details"]["feature_attributions_note"]
    assert "has no baseline to explain against" in note
    assert "No summary for this version: " in page.text and "has no baseline to explain against" in page.text
    assert stored_summary(record.version) is None


def test_a_version_on_a_sagemaker_endpoint_has_a_card_with_a_note(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given a version an endpoint serves, with its baseline
    demo = demos["breast-cancer"]
    reference = Reference(demo.reference_csv, "reference.csv", "demo")
    record = register_version(
        wiring.registry(),
        "aimass-test",
        "breast-cancer",
        retrained(demo.model),
        "t",
        demo.enrichment,
        reference=reference,
        backend="sagemaker:bc-endpoint",
    )
    # When its card is asked for
    card = client.get(f"/v1/models/breast-cancer/versions/{record.version}/card")
    # Then it is answered, the summary not computed (the endpoint is never called), and the note says why
    assert card.status_code == 200
    note = card.json()["additional_information"]["custom_details"]["feature_attributions_note"]
    assert "'sagemaker:bc-endpoint' does not run in this function" in note
    assert stored_summary(record.version) is None


def test_a_graph_versions_card_names_its_members_and_has_attributions_through_its_runner(
    client: TestClient, demos: dict[str, Any]
) -> None:
    # Given an ensemble v3 of the champion (v1) and a retrained v2
    demo = demos["breast-cancer"]
    register_version(
        wiring.registry(), "aimass-test", "breast-cancer", retrained(demo.model), "t", demo.enrichment
    )
    graph = {"kind": "ensemble", "members": ["breast-cancer@champion", "breast-cancer@2"]}
    assert client.post("/v1/models/breast-cancer/versions:compose", json={"graph": graph}).status_code == 201
    # When its card is asked for
    card = client.get("/v1/models/breast-cancer/versions/3/card").json()
    # Then its custom details name its kind and members, as given and resolved
    custom = card["additional_information"]["custom_details"]
    assert custom["graph.kind"] == "ensemble"
    assert custom["graph.members"] == "breast-cancer@champion = breast-cancer@1, breast-cancer@2"
    # and its summary was computed through its runner, against its first member's background
    kept = stored_summary(3)
    assert kept is not None and kept.background_source == "reference sample"
    assert any(d["name"] == "feature attributions" for d in card["evaluation_details"])
    page = client.get("/v1/models/breast-cancer/versions/3/card", headers={"accept": "text/html"}).text
    assert "<code>breast-cancer@champion</code>" in page and "<code>breast-cancer@1</code>" in page
