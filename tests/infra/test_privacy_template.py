"""Privacy in template.yaml: captured traffic, rejected rows and monitoring files expire after their
retention parameters; the bucket is SSE-S3, or SSE-KMS with a bucket key when KmsKeyArn is given, and
then every role that reads or writes it may use that key (through S3 and Secrets Manager only); the
key personal features are tokenised with is a generated secret that only the writers of captured and
rejected rows may read (docs/privacy.md)."""

from __future__ import annotations

from typing import Any

import pytest

from .test_gpu_endpoint_template import deployed
from .test_retraining_triggers_template import evaluate, parameters

pytestmark = pytest.mark.infra

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_USE = {"Fn::If": ["HasKmsKey", {"Ref": "ArtifactsKeyAccess"}, {"Ref": "AWS::NoValue"}]}
# Every function or role whose IAM reaches the artifacts bucket
BUCKET_USERS = {
    "OnlineFunction",
    "RegistryFunction",
    "BatchFunction",
    "BatchStepsFunction",
    "PipelineFunction",
    "RolloutFunction",
    "MonitorFunction",
    "SageMakerTrainingRole",
    "GpuEndpointRole",
}
# The functions that write captured requests or rejected batch rows
PII_WRITERS = {"OnlineFunction", "BatchFunction", "BatchStepsFunction"}


def rules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    bucket = template["Resources"]["ArtifactsBucket"]["Properties"]
    return {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}


def reaches_bucket(properties: dict[str, Any]) -> bool:
    return "artifacts-${AWS::AccountId}" in str(properties.get("Policies", "")) or "S3ReadPolicy" in str(
        properties.get("Policies", "")
    )


@pytest.mark.parametrize(
    ("rule", "prefix", "parameter", "default"),
    [
        ("ExpireCapture", "capture/", "CaptureRetentionDays", 30),
        ("ExpireRejectedRows", "rejected/", "RejectedRetentionDays", 30),
        ("ExpireMonitoring", "monitoring/", "MonitoringRetentionDays", 90),
    ],
)
def test_captured_rejected_and_monitoring_data_expire_after_their_retention(
    template: dict[str, Any], rule: str, prefix: str, parameter: str, default: int
) -> None:
    found = rules(template)[rule]
    assert found["Status"] == "Enabled" and found["Prefix"] == prefix
    assert found["ExpirationInDays"] == {"Ref": parameter}
    # An expired object's version (the bucket is versioned) goes a day later, not in 90 days
    assert found["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert template["Parameters"][parameter]["Default"] == default
    assert template["Parameters"][parameter]["MinValue"] == 1


def test_without_a_key_the_bucket_is_sse_s3_and_nothing_refers_to_a_kms_key(template: dict[str, Any]) -> None:
    resources = deployed(template)
    [encryption] = resources["ArtifactsBucket"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    assert "ArtifactsKeyAccess" not in resources
    assert "KmsKeyId" not in resources["PiiKeySecret"]
    for name in BUCKET_USERS - {"GpuEndpointRole"}:
        assert "ArtifactsKeyAccess" not in str(resources[name]), name


def test_with_a_key_the_bucket_is_sse_kms_with_a_bucket_key_and_the_secret_uses_it(
    template: dict[str, Any],
) -> None:
    resources = deployed(template, KmsKeyArn=KEY)
    [encryption] = resources["ArtifactsBucket"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption == {
        "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY},
        "BucketKeyEnabled": True,
    }
    assert resources["PiiKeySecret"]["KmsKeyId"] == KEY


def test_with_a_key_only_its_use_through_s3_and_secrets_manager_is_granted(template: dict[str, Any]) -> None:
    resources = deployed(template, KmsKeyArn=KEY)
    [statement] = resources["ArtifactsKeyAccess"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert statement["Resource"] == KEY
    assert statement["Condition"] == {
        "StringEquals": {
            "kms:ViaService": [
                "s3.${AWS::Region}.amazonaws.com",
                "secretsmanager.${AWS::Region}.amazonaws.com",
            ]
        }
    }


def test_every_role_that_reaches_the_bucket_may_use_its_key(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    users = {
        name
        for name, resource in resources.items()
        if resource["Type"] in ("AWS::Serverless::Function", "AWS::IAM::Role")
        and reaches_bucket(resource["Properties"])
    }
    assert users == BUCKET_USERS
    for name in BUCKET_USERS:
        properties = resources[name]["Properties"]
        granted = properties.get("ManagedPolicyArns", []) + properties.get("Policies", [])
        assert KEY_USE in granted, name


def test_the_personal_data_key_is_generated_and_only_its_writers_read_it(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    secret = resources["PiiKeySecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret" and secret["DeletionPolicy"] == "Retain"
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32 and "SecretString" not in secret["Properties"]
    readers = {
        name
        for name, resource in resources.items()
        if "PiiKeySecret" in str(resource.get("Properties", {}).get("Policies", ""))
    }
    assert readers == PII_WRITERS
    for name in PII_WRITERS:
        properties = resources[name]["Properties"]
        assert properties["Environment"]["Variables"]["AIMASS_PII_KEY_SECRET"] == {"Ref": "PiiKeySecret"}
        assert {
            "AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "PiiKeySecret"}}
        } in properties["Policies"]


def test_the_key_parameter_takes_only_a_kms_key_arn_or_nothing(template: dict[str, Any]) -> None:
    import re

    pattern = template["Parameters"]["KmsKeyArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, KEY) and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "alias/aws/s3")
    assert evaluate({"Condition": "HasKmsKey"}, template, parameters(template, KmsKeyArn=KEY))
    assert not evaluate({"Condition": "HasKmsKey"}, template, parameters(template))
