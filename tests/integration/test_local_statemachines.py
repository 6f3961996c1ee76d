"""In the local stack, the template's state machines run on moto's ASL interpreter and their Lambda
tasks run the real handlers in-process, synchronously.

This is also the guard on the seams aimass.local.notifications and aimass.local.statemachines rely
on (moto's Lambda Invoke API reaching `LambdaSimpleBackend.invoke`, its ASL interpreter calling
Lambda at localhost:$MOTO_PORT, what its interpreter supports): a moto upgrade that moves them fails
here.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from aimass import aws
from aimass.local import notifications, statemachines, template
from tests.conftest import running_stack
from tests.support import REPO

# The stand-in for a step function, loaded from its CodeUri as a real one is.
HANDLER = """
import os
import threading
import time
from pathlib import Path


class BadInput(Exception):
    pass


class TransientError(Exception):
    pass


def handler(event, context):
    action = event.get("action", "double")
    if action == "fail":
        raise BadInput(f"cannot take {event['n']}")
    attempts = None
    if action == "flaky":  # fails the first time it is called for this counter file
        counter = Path(event["counter"])
        attempts = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(attempts))
        if attempts == 1:
            raise TransientError("try again")
    started = time.monotonic()
    time.sleep(event.get("sleep", 0))
    return {
        "doubled": event["n"] * 2,
        "attempts": attempts,
        "function": context.function_name,
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "started": started,
        "ended": time.monotonic(),
    }
"""

INVOKE = {
    "Type": "Task",
    "Resource": "arn:aws:states:::lambda:invoke",
    "Parameters": {"FunctionName": "${FunctionArn}", "Payload.$": "$"},
    "OutputPath": "$.Payload",
}

DEFINITIONS: dict[str, dict[str, Any]] = {
    "double.asl.json": {"StartAt": "Double", "States": {"Double": INVOKE | {"End": True}}},
    # The short form: the function's ARN as the task's resource.
    "double-short.asl.yaml": {
        "StartAt": "Double",
        "States": {"Double": {"Type": "Task", "Resource": "${FunctionArn}", "End": True}},
    },
    "catch.asl.json": {
        "StartAt": "Fail",
        "States": {
            "Fail": INVOKE
            | {
                "Catch": [{"ErrorEquals": ["${CatchError}"], "ResultPath": "$.error", "Next": "Caught"}],
                "Next": "NotCaught",
            },
            "Caught": {"Type": "Pass", "Result": "caught", "ResultPath": "$.outcome", "End": True},
            "NotCaught": {"Type": "Pass", "End": True},
        },
    },
    "retry.asl.json": {
        "StartAt": "Flaky",
        "States": {
            "Flaky": INVOKE
            | {
                "Retry": [
                    {
                        "ErrorEquals": ["TransientError"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 2,
                        "BackoffRate": 1,
                    }
                ],
                "End": True,
            }
        },
    },
    "map.asl.json": {
        "StartAt": "EachItem",
        "States": {
            "EachItem": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket": "${Bucket}", "Key.$": "$.key"},
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Double",
                    "States": {"Double": INVOKE | {"End": True}},
                },
                "MaxConcurrency": 2,
                "End": True,
            }
        },
    },
}
# A CSV read with its header row, each row's cell made a number on the way to the task.
DEFINITIONS["map-csv.asl.json"] = copy.deepcopy(DEFINITIONS["map.asl.json"])
DEFINITIONS["map-csv.asl.json"]["States"]["EachItem"]["ItemReader"]["ReaderConfig"] = {
    "InputType": "CSV",
    "CSVHeaderLocation": "FIRST_ROW",
}
DEFINITIONS["map-csv.asl.json"]["States"]["EachItem"]["ItemSelector"] = {
    "n.$": "States.StringToJson($$.Map.Item.Value.n)",
    "row.$": "$$.Map.Item.Index",
}
DEFINITIONS["timeout.asl.json"] = {
    "StartAt": "Slow",
    "States": {
        "Slow": INVOKE
        | {
            "TimeoutSeconds": 1,
            "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "TimedOut"}],
            "End": True,
        },
        "TimedOut": {"Type": "Pass", "End": True},
    },
}
# The same Map, its results written to the bucket.
DEFINITIONS["map-writer.asl.json"] = copy.deepcopy(DEFINITIONS["map.asl.json"])
DEFINITIONS["map-writer.asl.json"]["States"]["EachItem"]["ResultWriter"] = {
    "Resource": "arn:aws:states:::s3:putObject",
    "Parameters": {"Bucket": "${Bucket}", "Prefix": "results/map"},
}

FUNCTION_ARN = {"FunctionArn": {"Fn::GetAtt": ["StepsFunction", "Arn"]}}
# The physical name template.yaml gives the bucket: locally it is the stack's bucket.
BUCKET_NAME = {"Fn::Sub": "aimass-${Stage}-artifacts-${AWS::AccountId}-${AWS::Region}"}


def machine(uri: str, **substitutions: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::Serverless::StateMachine",
        "Properties": {
            "DefinitionUri": f"statemachines/{uri}",
            "DefinitionSubstitutions": FUNCTION_ARN | substitutions,
        },
    }


MACHINES = {
    "DoubleStateMachine": machine("double.asl.json"),
    "DoubleShortStateMachine": machine("double-short.asl.yaml"),
    "CatchTypeStateMachine": machine("catch.asl.json", CatchError="BadInput"),
    "CatchTaskFailedStateMachine": machine("catch.asl.json", CatchError="States.TaskFailed"),
    "CatchOtherStateMachine": machine("catch.asl.json", CatchError="SomethingElse"),
    "RetryStateMachine": machine("retry.asl.json"),
    "BatchPredictStateMachine": machine("map.asl.json", Bucket={"Ref": "ArtifactsBucket"}),
    "MapWriterStateMachine": machine("map-writer.asl.json", Bucket=BUCKET_NAME),
    "MapCsvStateMachine": machine("map-csv.asl.json", Bucket={"Ref": "ArtifactsBucket"}),
    "TimeoutStateMachine": machine("timeout.asl.json"),
}


@dataclass
class Stack:
    root: Path
    bucket: str
    sfn: Any
    s3: Any
    arns: dict[str, str]

    def run(self, logical_id: str, payload: Any, timeout: float = 15) -> dict[str, Any]:
        """Start an execution and wait until it is no longer RUNNING."""
        arn = self.sfn.start_execution(stateMachineArn=self.arns[logical_id], input=json.dumps(payload))[
            "executionArn"
        ]
        deadline = time.monotonic() + timeout
        while (execution := self.sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, f"{logical_id} still running after {timeout} s"
            time.sleep(0.05)
        return execution  # type: ignore[no-any-return]


def write_template(root: Path, resources: dict[str, Any]) -> Path:
    """A template with the stack's own resources (from template.yaml) and `resources`."""
    real = template.load(REPO / "template.yaml")
    document = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Parameters": {"Stage": real["Parameters"]["Stage"]},
        "Resources": {
            logical_id: real["Resources"][logical_id]
            for logical_id in ("ArtifactsBucket", "RegistryTable", "IdempotencyTable")
        }
        | resources,
    }
    path = root / f"template-{len(list(root.glob('template*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def use_template(path: Path) -> None:
    os.environ["AIMASS_TEMPLATE"] = str(path)
    template.parsed.cache_clear()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("statemachines")
    (root / "functions" / "steps").mkdir(parents=True)
    (root / "functions" / "steps" / "app.py").write_text(HANDLER)
    (root / "statemachines").mkdir()
    for name, definition in DEFINITIONS.items():
        text = yaml.safe_dump(definition) if name.endswith(".yaml") else json.dumps(definition, indent=2)
        (root / "statemachines" / name).write_text(text)
    steps = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": "functions/steps/",
            "Handler": "app.handler",
            "Timeout": 30,
            "Environment": {"Variables": {"AIMASS_DOUBLE_MACHINE": {"Ref": "DoubleStateMachine"}}},
        },
    }
    with running_stack(
        root, "aimass-statemachines", write_template(root, {"StepsFunction": steps} | MACHINES)
    ) as local:
        yield Stack(root, local.bucket, aws.client("stepfunctions"), aws.client("s3"), statemachines.arns())


def test_every_state_machine_of_the_template_is_created_and_its_arn_exposed(stack: Stack) -> None:
    assert set(stack.arns) == set(MACHINES)
    listed = {m["name"]: m["stateMachineArn"] for m in stack.sfn.list_state_machines()["stateMachines"]}
    assert listed == stack.arns  # named by logical id
    # The batch one under the name the application reads, the others under the template's own.
    assert os.environ["AIMASS_BATCH_STATE_MACHINE_ARN"] == stack.arns["BatchPredictStateMachine"]
    assert os.environ["AIMASS_DOUBLE_MACHINE"] == stack.arns["DoubleStateMachine"]


def test_substitutions_are_resolved_to_the_local_function_and_bucket(stack: Stack) -> None:
    function_arn = aws.client("lambda").get_function(FunctionName="StepsFunction")["Configuration"][
        "FunctionArn"
    ]

    double = json.loads(
        stack.sfn.describe_state_machine(stateMachineArn=stack.arns["DoubleStateMachine"])["definition"]
    )
    writer = json.loads(
        stack.sfn.describe_state_machine(stateMachineArn=stack.arns["MapWriterStateMachine"])["definition"]
    )

    assert double["States"]["Double"]["Parameters"]["FunctionName"] == function_arn
    # !Ref ArtifactsBucket and the template's !Sub aimass-${Stage}-artifacts-... are both the local bucket
    each = writer["States"]["EachItem"]
    assert each["ItemReader"]["Parameters"]["Bucket"] == stack.bucket
    assert each["ResultWriter"]["Parameters"]["Bucket"] == stack.bucket


@pytest.mark.parametrize("logical_id", ["DoubleStateMachine", "DoubleShortStateMachine"])
def test_a_lambda_task_runs_the_handler_in_process_and_its_result_is_the_output(
    stack: Stack, logical_id: str
) -> None:
    execution = stack.run(logical_id, {"n": 21})

    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert output["doubled"] == 42
    assert output["function"] == "StepsFunction"
    assert output["pid"] == os.getpid()  # this process, not a container
    [invocation] = [
        i for i in notifications.invocations() if i.result and i.result["started"] == output["started"]
    ]
    assert invocation.invocation_type == "RequestResponse"
    assert invocation.event == {"n": 21}


def test_executions_started_without_a_name_get_one_each_as_in_aws(stack: Stack) -> None:
    first = stack.run("DoubleStateMachine", {"n": 1})
    second = stack.run("DoubleStateMachine", {"n": 1})

    assert first["executionArn"] != second["executionArn"]
    assert first["status"] == second["status"] == "SUCCEEDED"
    assert json.loads(first["output"])["started"] != json.loads(second["output"])["started"]  # both ran


@pytest.mark.parametrize("logical_id", ["CatchTypeStateMachine", "CatchTaskFailedStateMachine"])
def test_a_handler_that_raises_is_caught_by_its_error_type_or_states_task_failed(
    stack: Stack, logical_id: str
) -> None:
    execution = stack.run(logical_id, {"action": "fail", "n": 7})

    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert output["outcome"] == "caught"
    assert output["error"]["Error"] == "BadInput"
    cause = json.loads(output["error"]["Cause"])  # Lambda's error payload
    assert cause["errorType"] == "BadInput"
    assert cause["errorMessage"] == "cannot take 7"
    assert any("app.py" in line for line in cause["stackTrace"])  # the handler's frames only
    assert not any("notifications.py" in line for line in cause["stackTrace"])


def test_a_handler_error_no_catch_matches_fails_the_execution_with_it(stack: Stack) -> None:
    execution = stack.run("CatchOtherStateMachine", {"action": "fail", "n": 7})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "BadInput"
    assert json.loads(execution["cause"])["errorMessage"] == "cannot take 7"


def test_a_transient_error_is_retried_and_the_second_attempt_succeeds(stack: Stack) -> None:
    counter = stack.root / "flaky-counter"

    execution = stack.run("RetryStateMachine", {"action": "flaky", "n": 5, "counter": str(counter)})

    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["doubled"] == 10
    assert json.loads(execution["output"])["attempts"] == 2
    assert counter.read_text() == "2"


def put_items(stack: Stack, key: str, items: list[dict[str, Any]]) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=json.dumps(items).encode())


def test_a_distributed_map_reads_its_items_from_the_bucket_and_runs_the_task_on_each(stack: Stack) -> None:
    items = [{"n": n, "sleep": 0.3} for n in range(6)]
    put_items(stack, "maps/items.json", items)

    execution = stack.run("BatchPredictStateMachine", {"key": "maps/items.json"})

    assert execution["status"] == "SUCCEEDED"
    results = json.loads(execution["output"])
    assert [result["doubled"] for result in results] == [2 * n for n in range(6)]  # in the items' order
    # MaxConcurrency 2: never more than two items at once, and two at once at some point
    events = sorted([(r["started"], 1) for r in results] + [(r["ended"], -1) for r in results])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most == 2


def test_a_distributed_map_reads_csv_rows_with_their_header(stack: Stack) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key="maps/rows.csv", Body=b"n,label\n4,a\n5,b\n")

    execution = stack.run("MapCsvStateMachine", {"key": "maps/rows.csv"})

    assert execution["status"] == "SUCCEEDED"
    assert [result["doubled"] for result in json.loads(execution["output"])] == [8, 10]


def test_a_task_over_its_timeout_fails_with_states_timeout(stack: Stack) -> None:
    execution = stack.run("TimeoutStateMachine", {"n": 1, "sleep": 1.5})

    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["error"]["Error"] == "States.Timeout"


def test_a_failing_item_of_a_distributed_map_is_null_in_its_output_in_moto(stack: Stack) -> None:
    put_items(stack, "maps/one-bad.json", [{"n": 1}, {"action": "fail", "n": 2}, {"n": 3}])

    execution = stack.run("BatchPredictStateMachine", {"key": "maps/one-bad.json"})

    # In AWS the Map run fails (States.ExceedToleratedFailureThreshold: no failure is tolerated by
    # default); moto 5.2 gives the item null and goes on, and ignores ToleratedFailure*.
    assert execution["status"] == "SUCCEEDED"
    results = json.loads(execution["output"])
    assert [result and result["doubled"] for result in results] == [2, None, 6]


def test_a_distributed_map_with_a_result_writer_writes_only_a_manifest_in_moto(stack: Stack) -> None:
    put_items(stack, "maps/three.json", [{"n": 1}, {"n": 2}, {"n": 3}])

    execution = stack.run("MapWriterStateMachine", {"key": "maps/three.json"})

    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert output["ResultWriterDetails"]["Bucket"] == stack.bucket
    assert output["MapRunArn"].startswith("arn:aws:states:")
    manifest = json.loads(
        stack.s3.get_object(Bucket=stack.bucket, Key=output["ResultWriterDetails"]["Key"])["Body"].read()
    )
    assert manifest["DestinationBucket"] == stack.bucket
    # moto 5.2 writes no SUCCEEDED_0.json (AWS does): the items ran, their results are not written.
    assert manifest["ResultFiles"] == {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    keys = [
        o["Key"] for o in stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="results/map/")["Contents"]
    ]
    assert keys == [output["ResultWriterDetails"]["Key"]]


def test_an_invoke_api_call_is_answered_as_lambda_answers_it(stack: Stack) -> None:
    lam = aws.client("lambda")

    answered = lam.invoke(FunctionName="StepsFunction", Payload=json.dumps({"n": 2}))
    failed = lam.invoke(FunctionName="StepsFunction", Payload=json.dumps({"action": "fail", "n": 2}))
    queued = lam.invoke(
        FunctionName="StepsFunction", InvocationType="Event", Payload=json.dumps({"n": 3, "queued": True})
    )
    notifications.drain(timeout=5)

    assert answered["StatusCode"] == 200 and "FunctionError" not in answered
    assert json.loads(answered["Payload"].read())["doubled"] == 4
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "BadInput"
    assert queued["StatusCode"] == 202
    [event] = [i for i in notifications.invocations() if i.event == {"n": 3, "queued": True}]
    assert event.invocation_type == "Event" and event.result["doubled"] == 6
    assert event.result["thread"].startswith("aimass-s3-lambda")  # the background worker


def test_a_dry_run_runs_nothing_and_a_function_the_stack_did_not_wire_is_left_to_moto(stack: Stack) -> None:
    lam = aws.client("lambda")
    before = len(notifications.invocations())

    checked = lam.invoke(FunctionName="StepsFunction", InvocationType="DryRun", Payload=json.dumps({"n": 1}))
    unwired = lam.invoke(FunctionName="NoSuchFunction", Payload=json.dumps({"n": 1}))
    notifications.drain(timeout=5)

    assert checked["StatusCode"] == 204 and "FunctionError" not in checked
    # moto's simple Lambda answers a function it does not run with the payload it was given
    assert json.loads(unwired["Payload"].read()) == {"n": 1}
    assert len(notifications.invocations()) == before


def install_with(stack: Stack, resources: dict[str, Any]) -> None:
    """Install the state machines of a template with `resources`, then go back to the module's."""
    use_template(write_template(stack.root, resources))
    try:
        statemachines.install({"ArtifactsBucket": stack.bucket})
    finally:
        use_template(stack.root / "template-0.yaml")


def test_a_substitution_the_local_stack_cannot_resolve_fails_loudly(stack: Stack) -> None:
    bad = machine("double.asl.json", FunctionArn={"Fn::GetAtt": ["TrainingRole", "Arn"]})

    with pytest.raises(statemachines.UnresolvedSubstitution) as raised:
        install_with(stack, {"BadStateMachine": bad})

    # The message names the state machine, the substitution and what could not be resolved
    assert str(raised.value) == (
        "BadStateMachine.DefinitionSubstitutions.FunctionArn: "
        "cannot resolve !GetAtt TrainingRole.Arn in the local stack"
    )


def test_a_definition_moto_cannot_parse_fails_loudly_naming_it(stack: Stack) -> None:
    # moto 5.2's ASL grammar has no ItemBatcher (nor ExecutionType EXPRESS for a distributed Map)
    batched = copy.deepcopy(DEFINITIONS["map.asl.json"])
    batched["States"]["EachItem"]["ItemBatcher"] = {"MaxItemsPerBatch": 2}
    (stack.root / "statemachines" / "batched.asl.json").write_text(json.dumps(batched))

    with pytest.raises(statemachines.UnsupportedDefinition) as raised:
        install_with(
            stack, {"BatchedStateMachine": machine("batched.asl.json", FunctionArn="arn:fn", Bucket="b")}
        )

    assert str(raised.value).startswith(
        "BatchedStateMachine: moto's Step Functions does not take its definition"
    )
    assert '"ItemBatcher"' in str(raised.value)


def test_uninstalling_gives_moto_its_config_and_invoke_back(stack: Stack) -> None:
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.core.config import default_user_config

    assert default_user_config["stepfunctions"]["execute_state_machine"] is True
    assert default_user_config["lambda"]["use_docker"] is False
    wired_simple = LambdaSimpleBackend.invoke

    notifications.uninstall()
    statemachines.uninstall()
    try:
        assert default_user_config["stepfunctions"]["execute_state_machine"] is False
        assert default_user_config["lambda"]["use_docker"] is True
        assert LambdaBackend.invoke.__module__ == "moto.awslambda.models"
        assert LambdaSimpleBackend.invoke.__module__ == "moto.awslambda_simple.models"
        assert wired_simple.__module__ == "aimass.local.notifications"
        assert "AIMASS_BATCH_STATE_MACHINE_ARN" not in os.environ
    finally:
        statemachines.configure()
        notifications.install(stack.bucket)
        statemachines.install({"ArtifactsBucket": stack.bucket})
