"""The model registry in DynamoDB: immutable versions, movable aliases, an audit record per change.

One table, keys `pk`/`sk` (see RegistryTable in template.yaml):
  MODELS / <name>                 summary: latest_version, aliases, rules_version, quality_policy,
                                  archived (a number set), latest_active (the latest not archived;
                                  0: none; absent on models never archived: latest_version),
                                  traffic (+ traffic_version), rollout_plan (the rollout under way,
                                  written with the policy), last_rollout (how the last one ended)
  MODEL#<name> / V#<00000001>     an immutable version (the ModelVersion as JSON)
  MODEL#<name> / COUNTER          version numbers handed out (a failed upload leaves a gap)
  MODEL#<name> / RULES#<00000001> an immutable ruleset version (the RulesetVersion as JSON)
  MODEL#<name> / AUDIT#<at>#<id>  who changed what, when
  MODEL#<name> / RUN#<run id>     a retraining pipeline run: its execution, start time, trigger
  MODEL#<name> / RELEASE#<00000001>  a version's release (aimass.release): its state (pending_approval,
                                  scheduled with its time `at`, released, rejected, failed) and doc
  MODEL#<name> / CARD#<00000001>  the card fields a person supplied for a version (CardFields: owner,
                                  intended use, limits, ...), beside the immutable version record
  MODEL#<name> / RUNGATE          the run the API started last (run_id): one start wins at a time
  MODEL#<name> / LIVE#<policy>#V#<version>  a version's live counts under a traffic policy version
                                  (aimass.serving.live: atomic ADDs while a rollout is under way)
  FEEDBACK#<name> / LABEL#<prediction id>  a label given for a captured prediction (LabelRecord)
  FEEDBACK#<name> / ACCURACY#<00000001>    a version's live accuracy counters (atomic ADDs):
                                           labelled, correct, scored, abs_error; its task
Feedback has a partition of its own, so that the online function may write it and nothing else.
  SUBSCRIPTIONS / <id>                     a webhook subscription to registry events
                                           (SubscriptionCreated, its signing secret included)
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from aimass import aws
from aimass.contracts.common import utcnow
from aimass.contracts.events import SubscriptionCreated
from aimass.contracts.feedback import LabelRecord, VersionAccuracy
from aimass.contracts.quality import QualityPolicy
from aimass.contracts.registry import (
    Alias,
    AliasRemoved,
    AuditRecord,
    ModelSummary,
    ModelVersion,
    Release,
    ReleasePolicy,
    RolloutOutcome,
    RolloutPlan,
    Task,
    TrafficPolicy,
    VersionStanding,
)
from aimass.contracts.rules import Ruleset, RulesetVersion
from aimass.errors import (
    AwsUnavailable,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
    field_error,
)
from aimass.gateways.transient import RETRY_AFTER_S

if TYPE_CHECKING:  # the online function reads no card: their models load with the card methods
    from aimass.contracts.cards import CardFields, CardFieldsUpdate

CATALOG = "MODELS"
SUBSCRIPTIONS = "SUBSCRIPTIONS"
# The audit actions that write a model's traffic policy.
TrafficAction = Literal[
    "set_traffic_policy",
    "start_rollout",
    "promote_rollout",
    "abort_rollout",
    "rollout_step",
    "rollback_rollout",
]
RUN_GATE = "RUNGATE"
# DynamoDB refuses an item over 400 KB, its keys and attribute names included: a document stored in
# one item (a version, a ruleset) is held to less, leaving room for those and for the fields a
# version gets after it is checked (its artifact's and baseline's URIs and hashes).
MAX_DOCUMENT_BYTES = 350_000


class RunRecord(TypedDict):
    """A pipeline run as recorded when it started (aimass.pipeline.runs); a record without a
    `trigger` reads as manual."""

    run_id: str
    execution_arn: str
    started_at: str
    trigger: NotRequired[str]


def _model_pk(name: str) -> str:
    return f"MODEL#{name}"


def _version_sk(version: int) -> str:
    return f"V#{version:08d}"


def _feedback_pk(name: str) -> str:
    return f"FEEDBACK#{name}"


# Items in one TransactWriteItems: DynamoDB takes 100, moto (the local stack) 25.
TRANSACTION_ITEMS = 25
# Keys in one BatchGetItem: DynamoDB's limit; and how often keys it leaves unprocessed (throttled) are
# asked for, with back-offs of 0.1 to 0.8 s between: 1.5 s at most, well inside a restore's 10 s.
BATCH_GET_KEYS = 100
BATCH_GET_ATTEMPTS = 5

Labelled = tuple[LabelRecord, Task]  # a label, and the task of the version it scores


def _label_chunks(labels: list[Labelled]) -> list[list[Labelled]]:
    """Labels in groups whose markers and version counters fit in one transaction."""
    chunks: list[list[Labelled]] = [[]]
    for label in labels:
        versions = {record.version for record, _ in chunks[-1]} | {label[0].version}
        if len(chunks[-1]) + 1 + len(versions) > TRANSACTION_ITEMS:
            chunks.append([])
        chunks[-1].append(label)
    return [chunk for chunk in chunks if chunk]


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    next_token: str | None


def _page_token(sk: str) -> str:
    return base64.urlsafe_b64encode(sk.encode()).decode().rstrip("=")


def _audit_sk(token: str) -> str:
    """The sort key a page token stands for; a token that is not one of ours is a 422."""
    try:
        sk = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        sk = ""
    if not sk.startswith("AUDIT#"):
        raise ValidationFailed(
            "not a page token of this audit trail",
            [field_error(["query", "after"], "unknown page token", "bad_token")],
        )
    return sk


def fitting(document: str, what: str, loc: list[str | int]) -> str:
    """A JSON document that fits in one registry item, or PayloadTooLarge (413) naming the limit;
    checked before anything is written, as DynamoDB's own refusal would come after an upload."""
    size = len(document.encode())
    if size > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(
            f"{what} is {size} bytes as stored; the registry stores at most {MAX_DOCUMENT_BYTES}",
            [field_error(loc, f"{size} bytes, more than {MAX_DOCUMENT_BYTES}", "too_large")],
        )
    return document


def _release_sk(version: int) -> str:
    return f"RELEASE#{version:08d}"


def _card_sk(version: int) -> str:
    return f"CARD#{version:08d}"


def _live_sk(policy_version: int, version: int) -> str:
    return f"LIVE#{policy_version:08d}#V#{version:08d}"


def _summary(item: dict[str, Any]) -> ModelSummary:
    return ModelSummary(
        name=item["sk"]["S"],
        latest_version=int(item["latest_version"]["N"]),
        aliases={k: int(v["N"]) for k, v in item.get("aliases", {}).get("M", {}).items()},
        rules_version=int(item["rules_version"]["N"]) if "rules_version" in item else None,
        quality_policy=(
            QualityPolicy.model_validate_json(item["quality_policy"]["S"])
            if "quality_policy" in item
            else QualityPolicy()
        ),
        traffic=(
            TrafficPolicy.model_validate_json(item["traffic"]["S"]) if "traffic" in item else TrafficPolicy()
        ),
        release_policy=(
            ReleasePolicy.model_validate_json(item["release_policy"]["S"])
            if "release_policy" in item
            else ReleasePolicy()
        ),
        archived_versions=sorted(int(v) for v in item.get("archived", {}).get("NS", [])),
        latest_active_version=(int(item["latest_active"]["N"]) or None) if "latest_active" in item else None,
        rollout_plan=(
            RolloutPlan.model_validate_json(item["rollout_plan"]["S"]) if "rollout_plan" in item else None
        ),
        last_rollout=(
            RolloutOutcome.model_validate_json(item["last_rollout"]["S"]) if "last_rollout" in item else None
        ),
        updated_at=item["updated_at"]["S"],
    )


def version_meant(summary: ModelSummary, alias: str | None) -> int:
    """The version number an alias (or, without one, `champion`, else the latest not archived)
    points at."""
    if alias is None:
        if "champion" in summary.aliases:
            return summary.aliases["champion"]
        if summary.latest_active_version is None:
            raise NotFound(
                f"model {summary.name!r} has no champion and every version is archived: ask for a "
                "version by number, or unarchive one",
                [{"loc": ["path", "name"], "message": "every version is archived", "type": "all_archived"}],
            )
        return summary.latest_active_version
    if alias not in summary.aliases:
        raise NotFound(
            f"model {summary.name!r} has no alias {alias!r}",
            [{"loc": ["path", "alias"], "message": "unknown alias", "type": "unknown_alias"}],
        )
    return summary.aliases[alias]


class Registry:
    def __init__(self, table: str) -> None:
        self.table = table

    @property
    def _ddb(self) -> Any:
        return aws.client("dynamodb")

    def _query(self, pk: str, sk_prefix: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s(pk)},
        }
        if sk_prefix:
            kwargs["KeyConditionExpression"] += " AND begins_with(sk, :prefix)"
            kwargs["ExpressionAttributeValues"][":prefix"] = _s(sk_prefix)
        while True:
            page = self._ddb.query(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- reads -----------------------------------------------------------------------------------

    def list_models(self) -> list[ModelSummary]:
        return [_summary(item) for item in self._query(CATALOG)]

    def get_model(self, name: str) -> ModelSummary:
        item = self._ddb.get_item(
            TableName=self.table, Key={"pk": _s(CATALOG), "sk": _s(name)}, ConsistentRead=True
        ).get("Item")
        if item is None:
            raise NotFound(
                f"model {name!r} is not registered",
                [{"loc": ["path", "name"], "message": "unknown model", "type": "unknown_model"}],
            )
        return _summary(item)

    def get_models(self, names: Sequence[str]) -> dict[str, ModelSummary]:
        """The summaries of the named models that are registered, by name, read together: one
        strongly consistent BatchGetItem per 100 names rather than a GetItem each (a SnapStart restore
        reads every held model's summary again while its first caller waits). Keys DynamoDB leaves
        unprocessed (throttled) are asked again after a back-off, as its documentation asks."""
        found: dict[str, ModelSummary] = {}
        unique = list(dict.fromkeys(names))
        for start in range(0, len(unique), BATCH_GET_KEYS):
            keys = [{"pk": _s(CATALOG), "sk": _s(name)} for name in unique[start : start + BATCH_GET_KEYS]]
            request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            for attempt in range(BATCH_GET_ATTEMPTS):
                if attempt:
                    time.sleep(0.05 * 2**attempt)
                page = self._ddb.batch_get_item(RequestItems=request)
                for item in page["Responses"].get(self.table, []):
                    summary = _summary(item)
                    found[summary.name] = summary
                request = page.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                left = len(request[self.table]["Keys"])
                raise AwsUnavailable(
                    f"DynamoDB left {left} of the models' summaries unread after {BATCH_GET_ATTEMPTS} tries",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
        return found

    def get_version(self, name: str, version: int) -> ModelVersion:
        item = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": _s(_model_pk(name)), "sk": _s(_version_sk(version))},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            self.get_model(name)  # 404 for the model first, when it is the model that is unknown
            raise NotFound(
                f"model {name!r} has no version {version}",
                [{"loc": ["path", "version"], "message": "unknown version", "type": "unknown_version"}],
            )
        return ModelVersion.model_validate_json(item["doc"]["S"])

    def list_versions(self, name: str) -> list[ModelVersion]:
        return [ModelVersion.model_validate_json(i["doc"]["S"]) for i in self._query(_model_pk(name), "V#")]

    def get_ruleset(self, name: str, version: int) -> RulesetVersion:
        item = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": _s(_model_pk(name)), "sk": _s(f"RULES#{version:08d}")},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            raise NotFound(f"model {name!r} has no ruleset version {version}")
        return RulesetVersion.model_validate_json(item["doc"]["S"])

    def list_runs(self, name: str) -> list[RunRecord]:
        """The model's pipeline runs as recorded when they started, newest first."""
        runs: list[RunRecord] = [
            json.loads(item["doc"]["S"]) for item in self._query(_model_pk(name), "RUN#")
        ]
        return sorted(runs, key=lambda run: run["started_at"], reverse=True)

    def get_run(self, name: str, run_id: str) -> RunRecord:
        item = self._ddb.get_item(
            TableName=self.table, Key={"pk": _s(_model_pk(name)), "sk": _s(f"RUN#{run_id}")}
        ).get("Item")
        if item is None:
            self.get_model(name)
            raise NotFound(
                f"model {name!r} has no pipeline run {run_id!r}",
                [{"loc": ["path", "run_id"], "message": "unknown run", "type": "unknown_run"}],
            )
        run: RunRecord = json.loads(item["doc"]["S"])
        return run

    def get_release(self, name: str, version: int) -> Release | None:
        item = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": _s(_model_pk(name)), "sk": _s(_release_sk(version))},
            ConsistentRead=True,
        ).get("Item")
        return None if item is None else Release.model_validate_json(item["doc"]["S"])

    def list_releases(self, name: str) -> list[Release]:
        """The model's releases, newest version first."""
        items = self._query(_model_pk(name), "RELEASE#")
        return sorted(
            (Release.model_validate_json(i["doc"]["S"]) for i in items), key=lambda r: r.version, reverse=True
        )

    def get_card_fields(self, name: str, version: int) -> CardFields | None:
        """The card fields supplied for a version, or None when none ever were."""
        item = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": _s(_model_pk(name)), "sk": _s(_card_sk(version))},
            ConsistentRead=True,
        ).get("Item")
        from aimass.contracts.cards import CardFields

        return None if item is None else CardFields.model_validate_json(item["doc"]["S"])

    def audit_page(self, name: str, limit: int, after: str | None = None) -> AuditPage:
        """Up to `limit` audit records, oldest first, from just after the record whose page token is
        `after`; the next page's token, or None after the last record."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": _s(_model_pk(name)), ":prefix": _s("AUDIT#")},
            "Limit": limit,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {"pk": _s(_model_pk(name)), "sk": _s(_audit_sk(after))}
        page = self._ddb.query(**kwargs)
        records = [AuditRecord.model_validate_json(i["doc"]["S"]) for i in page["Items"]]
        last = page.get("LastEvaluatedKey")
        return AuditPage(records, _page_token(last["sk"]["S"]) if last else None)

    def live_accuracy(self, name: str) -> list[VersionAccuracy]:
        """Each version's labelled predictions so far (versions without any are left out)."""
        versions = []
        for item in self._query(_feedback_pk(name), "ACCURACY#"):
            labelled, task = int(item["labelled"]["N"]), item["task"]["S"]
            correct, scored = int(item["correct"]["N"]), int(item["scored"]["N"])
            if not labelled:  # all its labels were taken back
                continue
            classifier = task == "classification"
            versions.append(
                VersionAccuracy(
                    version=int(item["version"]["N"]),
                    task=task,
                    labelled=labelled,
                    correct=correct if classifier else None,
                    accuracy=correct / labelled if classifier and labelled else None,
                    mae=float(item["abs_error"]["N"]) / scored if task == "regression" and scored else None,
                )
            )
        return versions

    def resolve(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """The version a request means: explicit (archived or not), by alias, else `champion`, else
        the latest not archived."""
        if version is None:
            version = version_meant(self.get_model(name), alias)
        return self.get_version(name, version)

    def list_subscriptions(self) -> list[SubscriptionCreated]:
        """The webhook subscriptions, with their secrets (for delivery), oldest first."""
        found = [SubscriptionCreated.model_validate_json(i["doc"]["S"]) for i in self._query(SUBSCRIPTIONS)]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    # --- writes ----------------------------------------------------------------------------------

    def reserve_version(self, name: str) -> int:
        result = self._ddb.update_item(
            TableName=self.table,
            Key={"pk": _s(_model_pk(name)), "sk": _s("COUNTER")},
            UpdateExpression="ADD next_version :one",
            ExpressionAttributeValues={":one": _n(1)},
            ReturnValues="UPDATED_NEW",
        )
        return int(result["Attributes"]["next_version"]["N"])

    def _audit_put(self, record: AuditRecord) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.table,
                "Item": {
                    "pk": _s(_model_pk(record.model)),
                    "sk": _s(f"AUDIT#{record.at}#{uuid.uuid4().hex[:8]}"),
                    "doc": _s(record.model_dump_json()),
                },
            }
        }

    def _update_summary(
        self,
        name: str,
        expression: str,
        values: dict[str, Any],
        audit: AuditRecord,
        names: dict[str, str] | None = None,
        condition: str | None = None,
    ) -> None:
        """Change an existing model's summary and record who did it, atomically; `condition` (on the
        summary) must hold too, else Conflict: it changed since it was read."""
        update: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": _s(CATALOG), "sk": _s(name)},
            "ConditionExpression": "attribute_exists(pk)" + (f" AND ({condition})" if condition else ""),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
        }
        if names:
            update["ExpressionAttributeNames"] = names
        try:
            self._ddb.transact_write_items(TransactItems=[{"Update": update}, self._audit_put(audit)])
        except self._ddb.exceptions.TransactionCanceledException as error:
            if condition is None:
                raise
            raise Conflict(f"model {name!r} changed meanwhile; read it again and retry") from error

    def commit_version(self, record: ModelVersion, note: str | None = None) -> ModelVersion:
        """Store a version (never overwriting one) and move `latest_version` forward, atomically."""
        now = utcnow()
        audit = AuditRecord(
            actor=record.created_by,
            note=note,
            action="register_version",
            model=record.name,
            details={"version": record.version, "sha256": record.sha256, "artifact_uri": record.artifact_uri},
        )
        put_version = {
            "Put": {
                "TableName": self.table,
                "ConditionExpression": "attribute_not_exists(pk)",
                "Item": {
                    "pk": _s(_model_pk(record.name)),
                    "sk": _s(_version_sk(record.version)),
                    "version": _n(record.version),
                    "doc": _s(fitting(record.model_dump_json(), "the version", ["body", "metadata"])),
                },
            }
        }
        values = {":v": _n(record.version), ":t": _s(now), ":empty": {"M": {}}}
        set_summary = (
            "SET updated_at = :t, aliases = if_not_exists(aliases, :empty), "
            "created_at = if_not_exists(created_at, :t)"
        )
        # A concurrent upload may already have committed a higher version: then only the version lands.
        for move_latest in (True, False):
            update: dict[str, Any] = {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": _s(CATALOG), "sk": _s(record.name)},
                    "UpdateExpression": set_summary
                    + (", latest_version = :v, latest_active = :v" if move_latest else ""),
                    "ExpressionAttributeValues": values,
                }
            }
            if move_latest:
                update["Update"]["ConditionExpression"] = (
                    "attribute_not_exists(latest_version) OR latest_version < :v"
                )
            try:
                self._ddb.transact_write_items(TransactItems=[put_version, update, self._audit_put(audit)])
                return record
            except self._ddb.exceptions.TransactionCanceledException as error:
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
                if not (move_latest and reasons[:2] == ["None", "ConditionalCheckFailed"]):
                    raise
        raise AssertionError("unreachable")

    def put_ruleset(self, name: str, ruleset: Ruleset, actor: str, note: str | None = None) -> RulesetVersion:
        """Store the next ruleset version and make it the model's, atomically; never overwrites one."""
        summary = self.get_model(name)
        record = RulesetVersion(
            name=name, version=(summary.rules_version or 0) + 1, ruleset=ruleset, created_by=actor
        )
        document = fitting(record.model_dump_json(), "the ruleset", ["body", "rules"])
        audit = AuditRecord(
            actor=actor,
            note=note,
            action="set_rules",
            model=name,
            details={"rules_version": record.version, "rules": len(ruleset.rules)},
        )
        previous = (
            "attribute_not_exists(rules_version)"
            if summary.rules_version is None
            else "rules_version = :previous"
        )
        values = {":v": _n(record.version), ":t": _s(record.created_at)}
        if summary.rules_version is not None:
            values[":previous"] = _n(summary.rules_version)
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "ConditionExpression": "attribute_not_exists(pk)",
                            "Item": {
                                "pk": _s(_model_pk(name)),
                                "sk": _s(f"RULES#{record.version:08d}"),
                                "doc": _s(document),
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": _s(CATALOG), "sk": _s(name)},
                            "ConditionExpression": f"attribute_exists(pk) AND {previous}",
                            "UpdateExpression": "SET rules_version = :v, updated_at = :t",
                            "ExpressionAttributeValues": values,
                        }
                    },
                    self._audit_put(audit),
                ]
            )
        except self._ddb.exceptions.TransactionCanceledException as error:
            raise Conflict(
                f"the rules of {name!r} changed while saving; read them again and retry"
            ) from error
        return record

    def record_run(self, name: str, run: RunRecord) -> None:
        """Remember a pipeline run (`run_id`, `execution_arn`, `started_at`, `trigger`) once: the API
        records the runs it starts, Ingest every run, so scheduled and drift-started ones are listed."""
        with contextlib.suppress(self._ddb.exceptions.ConditionalCheckFailedException):
            self._ddb.put_item(
                TableName=self.table,
                Item={
                    "pk": _s(_model_pk(name)),
                    "sk": _s(f"RUN#{run['run_id']}"),
                    "doc": _s(json.dumps(run, sort_keys=True)),
                },
                ConditionExpression="attribute_not_exists(pk)",
            )

    def add_live_counts(self, name: str, policy_version: int, version: int, counters: dict[str, int]) -> None:
        """Add a process's counts of one version's traffic under one traffic policy version."""
        if not counters:
            return
        names = {f"#c{i}": counter for i, counter in enumerate(counters)}
        self._ddb.update_item(
            TableName=self.table,
            Key={"pk": _s(_model_pk(name)), "sk": _s(_live_sk(policy_version, version))},
            UpdateExpression="ADD " + ", ".join(f"{n} :v{n[2:]}" for n in names),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                f":v{n[2:]}": _n(v) for n, v in zip(names, counters.values(), strict=True)
            },
        )

    def live_counts(self, name: str, policy_version: int) -> dict[int, dict[str, int]]:
        """Each version's live counts under a traffic policy version, by version."""
        counts = {}
        for item in self._query(_model_pk(name), f"LIVE#{policy_version:08d}#V#"):
            version = int(item["sk"]["S"].rsplit("#", 1)[1])
            counts[version] = {k: int(v["N"]) for k, v in item.items() if "N" in v}
        return counts

    def last_started_run(self, name: str) -> RunRecord | None:
        """The run the API started last for the model (its run gate), or None."""
        item = self._ddb.get_item(
            TableName=self.table, Key={"pk": _s(_model_pk(name)), "sk": _s(RUN_GATE)}, ConsistentRead=True
        ).get("Item")
        return None if item is None else json.loads(item["doc"]["S"])

    def claim_run_gate(self, name: str, run: RunRecord, seen: RunRecord | None) -> None:
        """Name `run` the model's last started run, on the condition that the last started run is still
        `seen` (None: there was none): of two starts that read the same gate, one wins, the other is
        a Conflict."""
        condition = "attribute_not_exists(pk)" if seen is None else "run_id = :seen"
        values = {} if seen is None else {":seen": _s(seen["run_id"])}
        try:
            self._ddb.put_item(
                TableName=self.table,
                Item={
                    "pk": _s(_model_pk(name)),
                    "sk": _s(RUN_GATE),
                    "run_id": _s(run["run_id"]),
                    "doc": _s(json.dumps(run, sort_keys=True)),
                },
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except self._ddb.exceptions.ConditionalCheckFailedException as error:
            raise Conflict(
                f"another run of {name!r} was started meanwhile; see its runs",
                [field_error(["path", "name"], "a run was just started", "run_in_progress")],
            ) from error

    def release_run_gate(self, name: str, run: RunRecord, previous: RunRecord | None) -> None:
        """Give the gate back to `previous` after `run` could not be started (only if it still names it)."""
        key = {"pk": _s(_model_pk(name)), "sk": _s(RUN_GATE)}
        with contextlib.suppress(self._ddb.exceptions.ConditionalCheckFailedException):
            if previous is None:
                self._ddb.delete_item(
                    TableName=self.table,
                    Key=key,
                    ConditionExpression="run_id = :mine",
                    ExpressionAttributeValues={":mine": _s(run["run_id"])},
                )
            else:
                self._ddb.put_item(
                    TableName=self.table,
                    Item={
                        **key,
                        "run_id": _s(previous["run_id"]),
                        "doc": _s(json.dumps(previous, sort_keys=True)),
                    },
                    ConditionExpression="run_id = :mine",
                    ExpressionAttributeValues={":mine": _s(run["run_id"])},
                )

    def _counters(self, name: str, labels: list[Labelled], sign: int) -> list[dict[str, Any]]:
        """ADD updates of each version's live accuracy counters for these labels (sign -1: undo)."""
        totals: dict[int, tuple[Task, int, int, int, float]] = {}
        for record, task in labels:
            _, n, correct, scored, error = totals.get(record.version, (task, 0, 0, 0, 0.0))
            totals[record.version] = (
                task,
                n + 1,
                correct + bool(record.correct),
                scored + (record.abs_error is not None),
                error + (record.abs_error or 0.0),
            )
        return [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": _s(_feedback_pk(name)), "sk": _s(f"ACCURACY#{version:08d}")},
                    "UpdateExpression": "ADD labelled :n, correct :c, scored :s, abs_error :e "
                    "SET version = :v, task = :task, updated_at = :t",
                    "ExpressionAttributeValues": {
                        ":n": _n(sign * n),
                        ":c": _n(sign * correct),
                        ":s": _n(sign * scored),
                        ":e": {"N": format(sign * error, ".12g")},
                        ":v": _n(version),
                        ":task": _s(task),
                        ":t": _s(utcnow()),
                    },
                }
            }
            for version, (task, n, correct, scored, error) in totals.items()
        ]

    def record_labels(self, name: str, labels: list[Labelled]) -> list[str]:
        """Store each label and add it to its version's live accuracy, atomically (per transaction
        of up to TRANSACTION_ITEMS items). A prediction keeps its first label: the ids that already
        had one are left out, and returned."""
        refused: list[str] = []
        for chunk in _label_chunks(labels):
            conflicts = 0
            while chunk:
                markers = [
                    {
                        "Put": {
                            "TableName": self.table,
                            "ConditionExpression": "attribute_not_exists(pk)",
                            "Item": {
                                "pk": _s(_feedback_pk(name)),
                                "sk": _s(f"LABEL#{record.prediction_id}"),
                                "doc": _s(record.model_dump_json()),
                            },
                        }
                    }
                    for record, _ in chunk
                ]
                try:
                    self._ddb.transact_write_items(TransactItems=markers + self._counters(name, chunk, 1))
                    break
                except self._ddb.exceptions.TransactionCanceledException as error:
                    reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
                    taken = {
                        record.prediction_id
                        for (record, _), code in zip(chunk, reasons, strict=False)
                        if code == "ConditionalCheckFailed"
                    }
                    conflicts += not taken
                    if conflicts > 3:  # other writers of the same counters, again and again
                        raise
                    refused += sorted(taken)
                    chunk = [label for label in chunk if label[0].prediction_id not in taken]
        return refused

    def unrecord_labels(self, name: str, labels: list[Labelled]) -> None:
        """Undo record_labels (the labelled rows could not be written)."""
        for chunk in _label_chunks(labels):
            deletes = [
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": {"pk": _s(_feedback_pk(name)), "sk": _s(f"LABEL#{record.prediction_id}")},
                    }
                }
                for record, _ in chunk
            ]
            self._ddb.transact_write_items(TransactItems=deletes + self._counters(name, chunk, -1))

    def set_alias(self, name: str, alias: str, version: int, actor: str, note: str | None = None) -> Alias:
        summary = self.get_model(name)
        self.get_version(name, version)
        if version in summary.archived_versions:
            raise Conflict(
                f"version {version} of {name!r} is archived and takes no alias; unarchive it first",
                [field_error(["body", "version"], "archived", "archived")],
            )
        previous = summary.aliases.get(alias)
        now = utcnow()
        audit = AuditRecord(
            actor=actor,
            note=note,
            action="set_alias",
            model=name,
            details={"alias": alias, "version": version, "previous_version": previous},
        )
        self._update_summary(
            name,
            "SET aliases.#alias = :v, updated_at = :t",
            {":v": _n(version), ":t": _s(now)},
            audit,
            names={"#alias": alias},
            condition="attribute_not_exists(archived) OR NOT contains(archived, :v)",
        )
        return Alias(name=name, alias=alias, version=version, previous_version=previous, updated_at=now)

    def remove_alias(self, name: str, alias: str, actor: str, note: str | None = None) -> AliasRemoved:
        """Take an alias away. Without `champion`, requests without a version get the latest version
        not archived."""
        summary = self.get_model(name)
        previous = version_meant(summary, alias)  # 404 when there is no such alias
        now = utcnow()
        audit = AuditRecord(
            actor=actor,
            note=note,
            action="remove_alias",
            model=name,
            details={"alias": alias, "previous_version": previous},
        )
        self._update_summary(
            name,
            "REMOVE aliases.#alias SET updated_at = :t",
            {":t": _s(now), ":v": _n(previous)},
            audit,
            names={"#alias": alias},
            condition="aliases.#alias = :v",
        )
        return AliasRemoved(name=name, alias=alias, previous_version=previous, updated_at=now)

    def set_archived(
        self, name: str, version: int, archived: bool, actor: str, note: str | None = None
    ) -> VersionStanding:
        """Archive a version (no alias may point at it: they are named in the Conflict) or bring it
        back. The version record itself is never changed; the summary's archived set and latest
        version not archived are, checked against the summary as read (a concurrent change: Conflict)."""
        summary = self.get_model(name)
        self.get_version(name, version)
        if archived == (version in summary.archived_versions):
            state = "archived" if archived else "not archived"
            raise Conflict(
                f"version {version} of {name!r} is already {state}",
                [field_error(["body", "archived"], f"already {state}", "unchanged")],
            )
        pointing = sorted(a for a, v in summary.aliases.items() if v == version)
        if archived and pointing:
            raise Conflict(
                f"version {version} of {name!r} is what {', '.join(pointing)} point(s) at: remove or move "
                "those aliases first",
                [field_error(["path", "version"], f"alias {a!r} points at it", "aliased") for a in pointing],
            )
        now_archived = set(summary.archived_versions) ^ {version}
        active = [v.version for v in self.list_versions(name) if v.version not in now_archived]
        latest_active = max(active, default=0)
        now = utcnow()
        audit = AuditRecord(
            actor=actor,
            note=note,
            action="archive_version" if archived else "unarchive_version",
            model=name,
            details={"version": version, "latest_active_version": latest_active or None},
        )
        self._update_summary(
            name,
            f"{'ADD' if archived else 'DELETE'} archived :set SET latest_active = :a, updated_at = :t",
            {
                ":set": {"NS": [str(version)]},
                ":a": _n(latest_active),
                ":t": _s(now),
                ":seen": _s(summary.updated_at),
            },
            audit,
            condition="updated_at = :seen",
        )
        return VersionStanding(
            name=name,
            version=version,
            archived=archived,
            latest_active_version=latest_active or None,
            updated_at=now,
        )

    def set_traffic_policy(
        self,
        name: str,
        policy: TrafficPolicy,
        actor: str,
        note: str | None = None,
        action: TrafficAction = "set_traffic_policy",
        *,
        plan: RolloutPlan | None = None,
        outcome: RolloutOutcome | None = None,
        previous: TrafficPolicy | None = None,
        details: dict[str, Any] | None = None,
    ) -> TrafficPolicy:
        """Store the model's next traffic policy version with its rollout plan (None: the policy
        belongs to no rollout, and a plan kept is removed) and how a rollout ended (`outcome`), on the
        condition that the policy it replaces is still `previous` (default: the one read now; a
        concurrent change: Conflict). `details` go into the audit record."""
        seen = previous if previous is not None else self.get_model(name).traffic
        return self._next_traffic(name, seen, policy, actor, note, action, plan, outcome, details=details)

    def promote_canary(
        self,
        name: str,
        actor: str,
        note: str | None = None,
        *,
        outcome: RolloutOutcome | None = None,
        previous: TrafficPolicy | None = None,
        details: dict[str, Any] | None = None,
    ) -> TrafficPolicy:
        """Make the canary (else, in a shadow phase, the shadow) the champion and send every request to
        it, in one write: `champion` moves and the traffic policy empties together (its rollout plan
        removed, `outcome` recorded), or neither (the policy is no longer `previous`, default the one
        read now: Conflict)."""
        previous = previous if previous is not None else self.get_model(name).traffic
        canary = previous.canary or previous.shadow
        if canary is None:
            raise Conflict(f"model {name!r} has no canary or shadow to promote")
        return self._next_traffic(
            name,
            previous,
            TrafficPolicy(),
            actor,
            note,
            "promote_rollout",
            None,
            outcome,
            details=details,
            extra=(
                "aliases.#champion = :champion",
                {":champion": _n(canary.version)},
                {"#champion": "champion"},
            ),
        )

    def _next_traffic(
        self,
        name: str,
        previous: TrafficPolicy,
        policy: TrafficPolicy,
        actor: str,
        note: str | None,
        action: TrafficAction,
        plan: RolloutPlan | None = None,
        outcome: RolloutOutcome | None = None,
        *,
        details: dict[str, Any] | None = None,
        extra: tuple[str, dict[str, Any], dict[str, str]] | None = None,
    ) -> TrafficPolicy:
        """The traffic policy's next version written with its audit record, its rollout plan (the
        policy's `rollout` is the plan's id; None: the policy belongs to no rollout and a plan kept is
        removed), how a rollout ended (`outcome`) and `extra` (one more SET clause with its values and
        names), if `previous`, as read, is still the model's policy."""
        saved = policy.model_copy(
            update={"version": previous.version + 1, "rollout": plan.id if plan is not None else None}
        )
        audit = AuditRecord(
            actor=actor,
            note=note,
            action=action,
            model=name,
            details={
                **(details or {}),
                "policy": saved.model_dump(),
                "previous_policy": previous.model_dump(),
            },
        )
        clause, values, names = extra or ("", {}, {})
        values = {**values, ":p": _s(saved.model_dump_json()), ":t": _s(utcnow()), ":v": _n(saved.version)}
        sets = ["traffic = :p", "traffic_version = :v", "updated_at = :t"] + ([clause] if clause else [])
        if plan is not None:
            sets.append("rollout_plan = :plan")
            values[":plan"] = _s(plan.model_dump_json())
        if outcome is not None:
            sets.append("last_rollout = :outcome")
            values[":outcome"] = _s(outcome.model_dump_json())
        if previous.version:
            values[":seen"] = _n(previous.version)
        self._update_summary(
            name,
            "SET " + ", ".join(sets) + ("" if plan is not None else " REMOVE rollout_plan"),
            values,
            audit,
            names=names or None,
            condition="traffic_version = :seen"
            if previous.version
            else "attribute_not_exists(traffic_version)",
        )
        return saved

    def set_release_policy(
        self, name: str, policy: ReleasePolicy, actor: str, note: str | None = None
    ) -> ReleasePolicy:
        """Store the model's next release policy version, on the condition that the one it replaces is
        still the one read (a concurrent change: Conflict)."""
        previous = self.get_model(name).release_policy
        saved = policy.model_copy(update={"version": previous.version + 1})
        audit = AuditRecord(
            actor=actor,
            note=note,
            action="set_release_policy",
            model=name,
            details={"policy": saved.model_dump(), "previous_policy": previous.model_dump()},
        )
        values = {":p": _s(saved.model_dump_json()), ":t": _s(utcnow()), ":v": _n(saved.version)}
        if previous.version:
            values[":seen"] = _n(previous.version)
        self._update_summary(
            name,
            "SET release_policy = :p, release_policy_version = :v, updated_at = :t",
            values,
            audit,
            condition="release_policy_version = :seen"
            if previous.version
            else "attribute_not_exists(release_policy_version)",
        )
        return saved

    def save_release(
        self, release: Release, audit: AuditRecord | None, replacing: tuple[str, ...]
    ) -> Release:
        """Write a version's release with its audit record (if any), atomically, on the condition that the
        release it replaces is in one of the `replacing` states (`"none"` among them: or there is
        none); else Conflict, and nothing is written. Of two writers that read the same release (two
        approvers, two tickers starting one scheduled release), one wins."""
        allowed = [state for state in replacing if state != "none"]
        conditions = ["attribute_not_exists(pk)"] if "none" in replacing else []
        values: dict[str, Any] = {f":r{i}": _s(state) for i, state in enumerate(allowed)}
        if allowed:
            conditions.append(f"#state IN ({', '.join(values)})")
        item = {
            "pk": _s(_model_pk(release.name)),
            "sk": _s(_release_sk(release.version)),
            "state": _s(release.state),
            "doc": _s(release.model_dump_json()),
        }
        if release.at is not None:
            item["at"] = _s(release.at)
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": " OR ".join(conditions),
        }
        if allowed:
            put["ExpressionAttributeNames"] = {"#state": "state"}
            put["ExpressionAttributeValues"] = values
        try:
            self._ddb.transact_write_items(
                TransactItems=[{"Put": put}, *([self._audit_put(audit)] if audit else [])]
            )
        except self._ddb.exceptions.TransactionCanceledException as error:
            raise Conflict(
                f"the release of v{release.version} of {release.name!r} changed meanwhile; read it again"
            ) from error
        return release

    def set_card_fields(
        self, name: str, version: int, update: CardFieldsUpdate, actor: str, note: str | None = None
    ) -> CardFields:
        """Set the card fields `update` gives (a `null` clears one) for a registered version, keeping the
        others, with an audit record, atomically; on the condition that the fields are still those read
        (a concurrent change: Conflict) and the version is still there. The version record itself is
        never changed."""
        from aimass.contracts.cards import CardFields

        self.get_version(name, version)  # 404 for an unknown model or version
        previous = self.get_card_fields(name, version)
        given = update.model_dump(exclude_unset=True)
        saved = CardFields(
            **{**(previous.supplied() if previous else {}), **given},
            name=name,
            version=version,
            revision=(previous.revision if previous else 0) + 1,
            updated_by=actor,
        )
        audit = AuditRecord(
            actor=actor,
            note=note,
            action="set_card",
            model=name,
            details={"version": version, "revision": saved.revision, "fields": given},
        )
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                "pk": _s(_model_pk(name)),
                "sk": _s(_card_sk(version)),
                "revision": _n(saved.revision),
                "doc": _s(fitting(saved.model_dump_json(), "the card's fields", ["body"])),
            },
            "ConditionExpression": "attribute_not_exists(pk)" if previous is None else "revision = :seen",
        }
        if previous is not None:
            put["ExpressionAttributeValues"] = {":seen": _n(previous.revision)}
        version_there = {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": {"pk": _s(_model_pk(name)), "sk": _s(_version_sk(version))},
                "ConditionExpression": "attribute_exists(pk)",
            }
        }
        try:
            self._ddb.transact_write_items(
                TransactItems=[{"Put": put}, version_there, self._audit_put(audit)]
            )
        except self._ddb.exceptions.TransactionCanceledException as error:
            raise Conflict(
                f"the card of v{version} of {name!r} changed meanwhile; read it again and retry"
            ) from error
        return saved

    def set_quality_policy(
        self, name: str, policy: QualityPolicy, actor: str, note: str | None = None
    ) -> QualityPolicy:
        previous = self.get_model(name).quality_policy
        now = utcnow()
        audit = AuditRecord(
            actor=actor,
            note=note,
            action="set_quality_policy",
            model=name,
            details={"policy": policy.model_dump(), "previous_policy": previous.model_dump()},
        )
        self._update_summary(
            name,
            "SET quality_policy = :p, updated_at = :t",
            {":p": _s(policy.model_dump_json()), ":t": _s(now)},
            audit,
        )
        return policy

    def put_subscription(self, subscription: SubscriptionCreated) -> None:
        self._ddb.put_item(
            TableName=self.table,
            Item={
                "pk": _s(SUBSCRIPTIONS),
                "sk": _s(subscription.id),
                "doc": _s(subscription.model_dump_json()),
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    def delete_subscription(self, subscription_id: str) -> None:
        try:
            self._ddb.delete_item(
                TableName=self.table,
                Key={"pk": _s(SUBSCRIPTIONS), "sk": _s(subscription_id)},
                ConditionExpression="attribute_exists(pk)",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException as error:
            raise NotFound(
                f"no subscription {subscription_id!r}",
                [field_error(["path", "id"], "unknown subscription", "unknown_subscription")],
            ) from error
