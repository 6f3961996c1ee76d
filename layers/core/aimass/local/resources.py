"""The tables and the artifacts bucket, made in the embedded AWS from template.yaml's properties."""

from __future__ import annotations

from typing import Any

from aimass import aws
from aimass.local.template import resource_properties

TABLE_PROPERTIES = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "ProvisionedThroughput",
)


def create_table(name: str, logical_id: str = "RegistryTable") -> None:
    properties = resource_properties(logical_id)
    ddb = aws.client("dynamodb")
    kwargs: dict[str, Any] = {k: properties[k] for k in TABLE_PROPERTIES if k in properties}
    if properties.get("SSESpecification", {}).get("SSEEnabled"):
        kwargs["SSESpecification"] = {"Enabled": True}
    try:
        ddb.create_table(TableName=name, **kwargs)
    except ddb.exceptions.ResourceInUseException:
        return
    ddb.get_waiter("table_exists").wait(TableName=name)
    if properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        ddb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    ttl = properties.get("TimeToLiveSpecification", {})
    if ttl.get("Enabled"):
        ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )


def create_bucket(name: str, logical_id: str = "ArtifactsBucket") -> None:
    properties = resource_properties(logical_id)
    s3 = aws.client("s3")
    try:
        s3.create_bucket(Bucket=name)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        return
    if "VersioningConfiguration" in properties:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=properties["VersioningConfiguration"])
    if "BucketEncryption" in properties:
        # CloudFormation spells the rules differently from the S3 API; same meaning.
        rules = [
            {
                ("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v
                for k, v in _without_kms_key(rule).items()
            }
            for rule in properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in properties:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
        )
    if "OwnershipControls" in properties:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=properties["OwnershipControls"])


def _without_kms_key(rule: dict[str, Any]) -> dict[str, Any]:
    """An encryption rule as it is without a customer key (KmsKeyArn empty, its default): the local
    stack has no KMS key of the user's to encrypt with."""
    if set(rule) == {"Fn::If"}:
        condition, _, otherwise = rule["Fn::If"]
        if condition != "HasKmsKey":
            raise ValueError(
                f"the bucket's encryption depends on {condition}, which the local stack cannot tell"
            )
        return dict(otherwise)
    return rule


def create_topic(name: str) -> str:
    """An SNS topic (the pipeline's notifications); its ARN, what `!Ref` of a topic gives."""
    arn: str = aws.client("sns").create_topic(Name=name)["TopicArn"]
    return arn
