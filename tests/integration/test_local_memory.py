"""The local stack's DynamoDB seam (aimass.local.dynamodb): registry writes leave no copies of the
table behind, and a cancelled transaction still leaves every item as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aimass import aws, wiring
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import ModelVersion, Signature, TensorSpec
from aimass.local import dynamodb
from aimass.registry import CATALOG
from tests.conftest import mocked_aws

WRITES = 1000
# What each write may leave behind, in multiples of the one item it adds (its audit record, as JSON):
# that item as moto holds it (a few Python objects per attribute) and the allocator's slack.
ITEM_MULTIPLE = 20
SIGNATURE = Signature(
    inputs=[TensorSpec(name="x", dtype="float32", shape=[None, 2])],
    outputs=[TensorSpec(name="y", dtype="float32", shape=[None, 1])],
)


@pytest.fixture
def seam(tmp_path: Path) -> Iterator[None]:
    with mocked_aws(tmp_path / "model-cache"):
        dynamodb.install()
        try:
            yield
        finally:
            dynamodb.uninstall()


def commit(version: int) -> ModelVersion:
    record = ModelVersion(
        name="m",
        version=version,
        artifact_uri=f"s3://aimass-test/models/m/{version}/model.onnx",
        sha256="0" * 64,
        size_bytes=1,
        signature=SIGNATURE,
    )
    return wiring.registry().commit_version(record)


def rss_bytes() -> int:
    """This process's resident memory (Linux's /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def items() -> list[dict[str, Any]]:
    return aws.client("dynamodb").scan(TableName="aimass-test")["Items"]  # type: ignore[no-any-return]


def test_a_thousand_registry_writes_grow_memory_by_their_items_not_by_the_table(seam: None) -> None:
    from moto.dynamodb.models.dynamo_type import Item

    registry = wiring.registry()
    commit(1), commit(2)
    policies = [QualityPolicy(violations="reject"), QualityPolicy()]
    for warm in range(20):  # clients, parsers and caches made before measuring
        registry.set_alias("m", "champion", 1 + warm % 2, "tester")
    before = rss_bytes()
    # Mostly policy changes: one read and the transaction, where an alias move reads twice.
    for write in range(WRITES):
        if write % 10:
            registry.set_quality_policy("m", policies[write % 2], "tester")
        else:
            registry.set_alias("m", "champion", 1 + write % 4 // 2, "tester")
    grown = rss_bytes() - before
    audits = [item for item in items() if item["sk"]["S"].startswith("AUDIT#")]
    assert len(audits) == 2 + 20 + WRITES  # every write happened, with its audit record
    item_size = max(len(json.dumps(item)) for item in audits)
    assert grown < WRITES * ITEM_MULTIPLE * item_size, (
        f"{WRITES} writes grew memory by {grown / 1e6:.1f} MB ({grown / WRITES / 1e3:.1f} kB a write, "
        f"items of {item_size} B)"
    )
    assert Item.instances_tracked == []  # moto keeps no list of every item it made


def test_a_cancelled_transaction_leaves_every_item_as_it_was(seam: None) -> None:
    commit(1)
    ddb = aws.client("dynamodb")
    ddb.put_item(TableName="aimass-test", Item={"pk": {"S": "x"}, "sk": {"S": "deleted"}})
    before = sorted(items(), key=json.dumps)
    # An update and a delete of existing items and a put of a new one, then a check that fails.
    transaction = [
        {
            "Update": {
                "TableName": "aimass-test",
                "Key": {"pk": {"S": CATALOG}, "sk": {"S": "m"}},
                "UpdateExpression": "SET latest_version = :v",
                "ExpressionAttributeValues": {":v": {"N": "9"}},
            }
        },
        {"Delete": {"TableName": "aimass-test", "Key": {"pk": {"S": "x"}, "sk": {"S": "deleted"}}}},
        {"Put": {"TableName": "aimass-test", "Item": {"pk": {"S": "x"}, "sk": {"S": "new"}}}},
        {
            "ConditionCheck": {
                "TableName": "aimass-test",
                "Key": {"pk": {"S": "x"}, "sk": {"S": "absent"}},
                "ConditionExpression": "attribute_exists(pk)",
            }
        },
    ]
    with pytest.raises(ddb.exceptions.TransactionCanceledException) as cancelled:
        ddb.transact_write_items(TransactItems=transaction)
    reasons = [reason["Code"] for reason in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
    assert sorted(items(), key=json.dumps) == before
    # The registry's own: a version is never overwritten, and the refused commit leaves no audit.
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        wiring.registry().commit_version(commit(1).model_copy(update={"sha256": "1" * 64}))
    assert sorted(items(), key=json.dumps) == before
    # Committed, the same transaction writes all of it.
    transaction[3]["ConditionCheck"]["ConditionExpression"] = "attribute_not_exists(pk)"
    ddb.transact_write_items(TransactItems=transaction)
    keys = {(item["pk"]["S"], item["sk"]["S"]) for item in items()}
    assert ("x", "new") in keys and ("x", "deleted") not in keys
    summary = ddb.get_item(TableName="aimass-test", Key={"pk": {"S": CATALOG}, "sk": {"S": "m"}})["Item"]
    assert summary["latest_version"] == {"N": "9"}


def test_uninstall_gives_moto_its_own_dynamodb_back(seam: None) -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import Item

    dynamodb.uninstall()
    assert "__new__" not in vars(Item)
    assert DynamoDBBackend.transact_write_items.__module__ == "moto.dynamodb.models"
    commit(1)
    assert Item.instances_tracked  # moto's own tracking again
    dynamodb.install()
    assert vars(Item)["__new__"] is not None
