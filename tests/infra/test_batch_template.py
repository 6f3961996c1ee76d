"""S3 drop-to-predict in template.yaml: what triggers the batch function, what it may touch, where
its failures go, and the idempotency table the local stack builds from the same properties."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import REPO, resource_references, sub_strings

pytestmark = pytest.mark.infra

READ_PREFIXES = {"incoming/", "models/"}
WRITE_PREFIXES = {"predictions/", "rejected/", "reports/"}
BUCKET_ARN = "arn:${AWS::Partition}:s3:::aimass-${Stage}-artifacts-${AWS::AccountId}-${AWS::Region}"


def batch(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["BatchFunction"]["Properties"]


def s3_statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    statements = [s for p in function["Policies"] if "Statement" in p for s in p["Statement"]]
    return [s for s in statements if any(a.startswith("s3:") for a in s["Action"])]


def prefixes(resources: list[Any]) -> set[str]:
    """The key prefixes of object ARNs under the artifacts bucket (`.../models/*` -> `models/`)."""
    found = set()
    for text in sub_strings(resources):
        assert text.startswith(f"{BUCKET_ARN}/") and text.endswith("*"), text
        found.add(text.removeprefix(f"{BUCKET_ARN}/").removesuffix("*"))
    return found


def test_a_file_dropped_under_incoming_triggers_the_batch_function_whatever_its_name(
    template: dict[str, Any],
) -> None:
    events = batch(template)["Events"]

    [(event_id, event)] = events.items()
    assert event["Type"] == "S3", event_id
    props = event["Properties"]
    assert props["Bucket"] == {"Ref": "ArtifactsBucket"}
    assert props["Events"] == "s3:ObjectCreated:*"
    # The prefix only: a suffix rule is case-sensitive and one per event, and a file it missed got
    # no report at all; the job itself refuses a name it cannot read, in a failed report.
    assert props["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]


def s3_matches(rules: list[dict[str, str]], key: str) -> bool:
    """Whether S3 sends an object's event through a filter: its prefix and suffix rules, as written."""
    found = {rule["Name"]: rule["Value"] for rule in rules}
    return key.startswith(found.get("prefix", "")) and key.endswith(found.get("suffix", ""))


@pytest.mark.parametrize(
    "name",
    ["rows.csv", "ROWS.CSV", "rows.Csv.GZ", "rows.jsonl", "rows.ndjson", "rows.parquet", "rows.txt", "rows"],
)
def test_every_object_dropped_under_incoming_reaches_the_batch_function(
    template: dict[str, Any], name: str
) -> None:
    key = f"incoming/breast-cancer/2026/{name}"
    assert any(
        s3_matches(event["Properties"]["Filter"]["S3Key"]["Rules"], key)
        for event in batch(template)["Events"].values()
    )


def test_batch_function_reads_and_writes_only_its_prefixes(template: dict[str, Any]) -> None:
    function = batch(template)
    statements = s3_statements(function)
    reads = [s for s in statements if s["Sid"] == "ReadDroppedFilesAndModels"]
    writes = [s for s in statements if s["Sid"] == "WriteResults"]

    # No bucket-wide SAM policy template (S3ReadPolicy, S3CrudPolicy, ...) and no other statement
    assert not [p for p in function["Policies"] if any(str(k).startswith("S3") for k in p)]
    assert len(reads) == len(writes) == 1
    assert len(statements) == 2
    assert all(s["Effect"] == "Allow" for s in statements)
    assert sorted(reads[0]["Action"]) == ["s3:GetObject", "s3:GetObjectVersion"]
    assert prefixes(reads[0]["Resource"]) == READ_PREFIXES
    assert sorted(writes[0]["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert prefixes(writes[0]["Resource"]) == WRITE_PREFIXES


def test_batch_outputs_can_never_trigger_the_batch_function_again(template: dict[str, Any]) -> None:
    triggers = {
        rule["Value"]
        for event in batch(template)["Events"].values()
        for rule in event["Properties"]["Filter"]["S3Key"]["Rules"]
        if rule["Name"] == "prefix"
    }

    assert not [(w, t) for w in WRITE_PREFIXES for t in triggers if w.startswith(t) or t.startswith(w)]


def test_batch_function_uses_the_registry_and_its_idempotency_table(template: dict[str, Any]) -> None:
    function = batch(template)
    # (the GPU endpoint's statement, under Fn::If, is test_gpu_endpoint_template.py's)
    templates = [p for p in function["Policies"] if "Statement" not in p and "Fn::If" not in p]

    assert function["Environment"]["Variables"]["AIMASS_IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}
    assert {"DynamoDBReadPolicy": {"TableName": {"Ref": "RegistryTable"}}} in templates
    assert {"DynamoDBCrudPolicy": {"TableName": {"Ref": "IdempotencyTable"}}} in templates
    # and the state machine's (test_batch_state_machine.py), the personal-data key's
    # (test_privacy_template.py)
    assert len(templates) == 4


def test_batch_function_has_the_time_memory_and_disk_for_a_whole_file(template: dict[str, Any]) -> None:
    function = batch(template)

    assert function["CodeUri"] == "functions/batch/"
    assert function["Handler"] == "app.handler"
    assert function["Timeout"] == 900
    assert function["MemorySize"] == 2048
    assert function["EphemeralStorage"] == {"Size": 10240}
    assert function["Layers"] == [{"Ref": "CoreLayer"}, {"Ref": "RuntimeLayer"}, {"Ref": "ArrowLayer"}]


def test_batch_concurrency_is_an_option_off_by_default(template: dict[str, Any]) -> None:
    function = batch(template)

    assert template["Parameters"]["BatchConcurrency"]["Default"] == 0
    assert template["Conditions"]["HasBatchConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "BatchConcurrency"}, "0"]}]
    }
    assert function["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasBatchConcurrency", {"Ref": "BatchConcurrency"}, {"Ref": "AWS::NoValue"}]
    }


def test_a_file_that_fails_every_retry_lands_in_the_failure_queue(template: dict[str, Any]) -> None:
    invoke = batch(template)["EventInvokeConfig"]
    queue = template["Resources"]["BatchFailureQueue"]

    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["BatchFailureQueue", "Arn"]},
    }
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_a_message_in_the_failure_queue_raises_an_alarm(template: dict[str, Any]) -> None:
    alarms = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and "BatchFailureQueue" in resource_references(r)
    ]

    (alarm,) = alarms
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["BatchFailureQueue", "QueueName"]}}
    ]
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }


def test_batch_function_errors_raise_an_alarm(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["BatchFunctionErrorsAlarm"]["Properties"]

    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm["MetricName"] == "Errors"
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "BatchFunction"}}]
    assert alarm["Threshold"] == 1
    assert alarm["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }


def test_idempotency_table_keys_and_ttl_are_literal_for_the_local_stack(template: dict[str, Any]) -> None:
    # Powertools idempotency's DynamoDB persistence layer with its default attribute names
    table = template["Resources"]["IdempotencyTable"]

    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["Properties"] == {
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
        "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
    }


def test_a_failed_report_raises_an_alarm_on_the_metric_the_function_emits(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["BatchFilesFailedAlarm"]["Properties"]
    powertools = template["Globals"]["Function"]["Environment"]["Variables"]

    # The namespace and service dimension Powertools gives the function's EMF metrics
    assert alarm["Namespace"] == powertools["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": powertools["POWERTOOLS_SERVICE_NAME"]}]
    assert f'name="{alarm["MetricName"]}"' in (REPO / "functions" / "batch" / "app.py").read_text()
    assert alarm["Statistic"] == "Sum" and alarm["Threshold"] == 1
