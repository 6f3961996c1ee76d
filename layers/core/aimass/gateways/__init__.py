"""The AWS services the domain uses, each behind a small gateway: S3 (`s3.Bucket`), Step Functions
(`stepfunctions`), EventBridge (`events`), SNS (`sns`) and the claims in the idempotency table (`claims`);
`transient` tells which SDK errors may pass.

A gateway turns boto3's requests and answers into the values the domain needs, and the errors the
domain acts on into exceptions of its own; any other SDK error passes through unchanged (the
pipeline's tasks tell a transient one by its code). Clients come from aimass.aws, at each call, so
a test or the local stack that moves the endpoint is followed."""


class AwsCallFailed(Exception):
    """A call that the caller carries on without failed (throttled, refused, unreachable). Its text
    is the SDK error's class name and message, as a batch report keeps it."""
