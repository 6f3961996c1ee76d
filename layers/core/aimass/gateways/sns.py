"""SNS: a notice on a topic (the pipeline's, which people subscribe to)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from aimass import aws
from aimass.gateways import AwsCallFailed


def publish(topic_arn: str, subject: str, message: str) -> str:
    """Publish one notice; its message id. AwsCallFailed when the topic did not take it."""
    try:
        answer = aws.client("sns").publish(TopicArn=topic_arn, Subject=subject, Message=message)
    except (BotoCoreError, ClientError) as error:
        raise AwsCallFailed(f"{type(error).__name__}: {error}") from error
    return str(answer["MessageId"])
