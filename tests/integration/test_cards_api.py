"""Model cards through the API on moto: the card as SageMaker Model Card content and as a page, the
fields a person supplies set, validated and audited, and 404s for what is not there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aimass import wiring
from aimass.api.app import create_app
from aimass.contracts.cards import ModelCardContent
from aimass.contracts.rules import Ruleset

CARD = "/v1/models/breast-cancer/versions/1/card"


@pytest.fixture
def client(registered: Any) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


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
    assert "feature_attributions" not in custom


def test_a_browser_gets_the_card_as_a_page_with_plots(client: TestClient) -> None:
    response = client.get(CARD, headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    for section in ("overview", "intended-use", "training", "evaluation", "baseline", "in-force", "limits"):
        assert f'<section id="{section}">' in page
    assert page.count("<svg") == 1  # the baseline's histograms: the demo has no registered metrics
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
