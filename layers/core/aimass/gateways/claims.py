"""Claims that expire: an item per claimed key in a DynamoDB table keyed by `id`, with DynamoDB's
TTL on `expiration` (the idempotency table, which Powertools' records share). A conditional put
makes the claim, so one of any number of concurrent claimants wins; until TTL removes an expired
claim, the condition treats it as absent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from aimass import aws
from aimass.gateways import AwsCallFailed


class ClaimTable:
    def __init__(self, table: str) -> None:
        self.table = table

    def claim(self, key: str, now: float, until: float) -> tuple[str | None, float]:
        """Claim `key` from `now` until `until`: (a token to give it back with, `until`); or (None,
        when the standing claim expires) when one still stands. AwsCallFailed when the table
        cannot be reached."""
        ddb = aws.client("dynamodb")
        token = uuid.uuid4().hex
        try:
            ddb.put_item(
                TableName=self.table,
                Item={
                    "id": {"S": key},
                    "expiration": {"N": str(int(until))},
                    "claimed_at": {"S": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")},
                    "token": {"S": token},
                },
                ConditionExpression="attribute_not_exists(id) OR expiration < :now",
                ExpressionAttributeValues={":now": {"N": str(int(now))}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise AwsCallFailed(f"{type(error).__name__}: {error}") from error
            standing = error.response.get("Item", {}).get("expiration", {}).get("N")
            return None, float(standing) if standing else until
        except BotoCoreError as error:
            raise AwsCallFailed(f"{type(error).__name__}: {error}") from error
        return token, until

    def give_back(self, key: str, token: str) -> None:
        """Remove the claim on `key` if it is still the one `token` made. AwsCallFailed when the
        table cannot be reached."""
        try:
            aws.client("dynamodb").delete_item(
                TableName=self.table,
                Key={"id": {"S": key}},
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={":token": {"S": token}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise AwsCallFailed(f"{type(error).__name__}: {error}") from error
        except BotoCoreError as error:
            raise AwsCallFailed(f"{type(error).__name__}: {error}") from error
