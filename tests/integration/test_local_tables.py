"""The local stack's tables, made in moto from template.yaml's own properties (TTL included)."""

from __future__ import annotations

from aimass import aws
from aimass.local.resources import create_table


def test_idempotency_table_is_made_from_the_template_with_its_key_and_ttl(moto_aws: None) -> None:
    # When the local stack creates the batch function's idempotency table
    create_table("aimass-idempotency", "IdempotencyTable")

    # Then it has Powertools' default key, and records expire on `expiration` as in AWS
    ddb = aws.client("dynamodb")
    table = ddb.describe_table(TableName="aimass-idempotency")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert ddb.describe_time_to_live(TableName="aimass-idempotency")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expiration",
    }


def test_a_second_start_keeps_the_existing_idempotency_table(moto_aws: None) -> None:
    ddb = aws.client("dynamodb")
    create_table("aimass-idempotency", "IdempotencyTable")
    ddb.put_item(TableName="aimass-idempotency", Item={"id": {"S": "aimass#seen"}})

    create_table("aimass-idempotency", "IdempotencyTable")

    assert ddb.get_item(TableName="aimass-idempotency", Key={"id": {"S": "aimass#seen"}})["Item"]


def test_registry_table_has_no_ttl(moto_aws: None) -> None:
    # The fixture made it from RegistryTable's properties, which ask for none
    description = aws.client("dynamodb").describe_time_to_live(TableName="aimass-test")

    assert description["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"
