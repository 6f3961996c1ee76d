"""Secrets Manager: a secret's text (the key personal data is tokenised with, aimass.privacy)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from aimass import aws
from aimass.gateways import AwsCallFailed


def secret_text(secret_id: str) -> str:
    """The secret's current string value. AwsCallFailed when it cannot be read."""
    try:
        answer = aws.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except (BotoCoreError, ClientError) as error:
        raise AwsCallFailed(f"{type(error).__name__}: {error}") from error
    return str(answer["SecretString"])
