"""Step Functions in the local stack: the template's state machines run on moto's ASL interpreter,
and their Lambda tasks run the real handlers in-process.

`configure` (before the embedded server takes requests) turns on moto's interpreter
(`stepfunctions.execute_state_machine`) and its Docker-free Lambda (`lambda.use_docker: False`),
and names an execution started without a name with a UUID as AWS does (the one seam here:
`moto.stepfunctions.parser.models.StepFunctionsParserBackend.start_execution(self,
state_machine_arn, name=None, execution_input=None, trace_header=None)` leaves it "None", so a
second unnamed execution of a machine clashes with the first).
`install` then creates every `AWS::Serverless::StateMachine` of the template in the embedded Step
Functions, from its `DefinitionUri` file (JSON or YAML, relative to the template's folder, as SAM
reads it) or its inline `Definition`, with its `DefinitionSubstitutions` resolved to what they are
locally:
- `!GetAtt Fn.Arn` / `!Ref Fn` of an `AWS::Serverless::Function`: the function, which is created in
  the embedded Lambda and wired to its real handler (aimass.local.notifications.wire), so that a
  `lambda:invoke` task (a `RequestResponse` Invoke API call) runs the handler synchronously and its
  result is the task's result, and a handler that raises fails the task with its exception's class
  name as the error (what Retry and Catch match, as in AWS);
- `!Ref`/`!GetAtt X.Arn` of a resource the stack made (the bucket, the tables: `names`) and any
  string equal to the physical name the template gives it (e.g. the bucket's
  `aimass-${Stage}-artifacts-...`): its local name (`aimass-local`) or ARN;
- `!Ref`/`!GetAtt X.Arn|Name` of another state machine, a parameter's `Default`, the pseudo
  parameters, and `!Sub` over all of these.
Anything else fails `install` with the state machine and substitution named: a definition that ran
with a wrong resource in it would fail later and far less clearly.

The ARNs are exposed by logical id (`arns()`), and set in the environment under the names the
template's functions read them from (an `Environment` variable whose value is `!Ref`/`!GetAtt .Arn`
of the state machine) and the names in `ENVIRONMENT`, so that code starts executions with
`stepfunctions.start_execution` as it does in AWS.

What moto's interpreter does (moto 5.2, checked by tests/integration/test_local_statemachines.py):
Task (`lambda:invoke` or the function's ARN as Resource), Retry, Catch on the handler's error type
or `States.TaskFailed`, `TimeoutSeconds` (`States.Timeout`), Map in `DISTRIBUTED` mode with an
`ItemReader` (`s3:getObject`, `InputType` JSON or CSV), `ItemSelector` and `MaxConcurrency`. Where
it falls short of AWS: its parser rejects `ItemBatcher` and `ExecutionType: EXPRESS` in a Map's
`ProcessorConfig` (`install` then raises UnsupportedDefinition, naming the state machine); it
ignores `ToleratedFailureCount`/`Percentage`, and a failed item is `null` in the Map's output
instead of failing the Map run; its `ResultWriter` (`s3:putObject`) writes only `manifest.json`,
with empty `ResultFiles` and no result files (the Map's output is `{"MapRunArn",
"ResultWriterDetails"}` as in AWS); SageMaker `.sync` tasks do not run.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

from aimass import aws
from aimass.config import settings
from aimass.local import notifications, template

ROLE_NAME = "aimass-local-states"

# Environment variables the application reads a state machine's ARN from, by logical id (besides
# those the template's functions are given).
ENVIRONMENT = {
    "BatchPredictStateMachine": "AIMASS_BATCH_STATE_MACHINE_ARN",
    "TrainingPipelineStateMachine": "AIMASS_PIPELINE_STATE_MACHINE_ARN",
}

# Where a resource's physical name is in its properties, by type: a substitution equal to the name
# the template gives it (resolved with the parameters' defaults) is the local resource's name.
_NAME_PROPERTY = {"AWS::S3::Bucket": "BucketName", "AWS::DynamoDB::Table": "TableName"}
# Resources whose Ref is the name the template gives them, and where that name is.
_REF_IS_NAME = {"AWS::Scheduler::ScheduleGroup": "Name", "AWS::Events::Rule": "Name"}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class UnresolvedSubstitution(ValueError):
    """A DefinitionSubstitution (or a ${Name} in a definition) the local stack cannot resolve."""


class UnsupportedDefinition(ValueError):
    """A definition moto's ASL parser rejects (it knows less ASL than AWS)."""


@dataclass(frozen=True)
class StateMachine:
    logical_id: str
    name: str
    arn: str


@dataclass
class _State:
    config: dict[str, Any]  # moto's config entries as they were before `configure`
    start_execution: Any  # moto's own StepFunctionsParserBackend.start_execution
    machines: dict[str, StateMachine]
    environment: list[str]  # variables `install` set


_lock = threading.Lock()
_state: _State | None = None


def configure() -> None:
    """Make moto execute state machines and run no Lambda in Docker. Call it before the embedded
    server starts, and before any function is created: moto keeps functions in one backend per
    `use_docker` value. Idempotent; `uninstall` puts moto's config back."""
    global _state
    from moto.core.config import default_user_config
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    config: dict[str, Any] = default_user_config  # type: ignore[assignment]
    with _lock:
        if _state is not None:
            return
        original = StepFunctionsParserBackend.start_execution
        _state = _State({key: config.get(key) for key in ("stepfunctions", "lambda")}, original, {}, [])
        # New dicts, not updates: mock_aws keeps (and restores) the nested ones it was given.
        config["stepfunctions"] = {**(config.get("stepfunctions") or {}), "execute_state_machine": True}
        config["lambda"] = {**(config.get("lambda") or {}), "use_docker": False}

        def start_execution(
            self: Any, state_machine_arn: str, name: str | None = None, *args: Any, **kwargs: Any
        ) -> Any:
            # An execution started without a name gets a UUID, as in AWS (and moto's other backend);
            # moto's interpreter names it "None", so a second one clashes with the first.
            return original(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

        StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign]


def install(names: Mapping[str, str] | None = None) -> dict[str, str]:
    """Create (or update) the template's state machines in the embedded Step Functions; returns
    their ARNs by logical id. `names`: the local name of each resource the stack made, by logical id
    (e.g. {"ArtifactsBucket": "aimass-local"})."""
    configure()
    path = template.template_path()
    document = template.load(path)
    resources = document["Resources"]
    logical_ids = [
        logical_id
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::Serverless::StateMachine"
    ]
    if not logical_ids:
        return {}
    sfn = aws.client("stepfunctions")
    resolver = Resolver.of(names)
    definitions = {logical_id: _definition(logical_id, path, resolver) for logical_id in logical_ids}
    role = notifications.service_role_arn(ROLE_NAME, "states.amazonaws.com")
    created = {}
    for logical_id, definition in definitions.items():
        properties = resources[logical_id].get("Properties", {})
        name = resolver.machines[logical_id]
        try:
            # moto answers a second create with the machine it has, unchanged: update it.
            arn = sfn.create_state_machine(
                name=name, definition=definition, roleArn=role, type=properties.get("Type", "STANDARD")
            )["stateMachineArn"]
            sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)
        except ClientError as error:
            # e.g. ItemBatcher, or ExecutionType EXPRESS in a distributed Map's ProcessorConfig
            message = error.response["Error"]["Message"]
            raise UnsupportedDefinition(
                f"{logical_id}: moto's Step Functions does not take its definition: "
                f"{message[:600]}{' ...' if len(message) > 600 else ''}"
            ) from None
        created[logical_id] = StateMachine(logical_id, name, arn)
    environment = _environment(document, created)
    os.environ.update(environment)
    settings.cache_clear()
    with _lock:
        assert _state is not None
        _state.machines.update(created)
        _state.environment += list(environment)
    return {logical_id: machine.arn for logical_id, machine in created.items()}


def uninstall() -> None:
    """Put moto's config back and forget the state machines (moto keeps them until it stops).
    The functions' wiring is notifications.uninstall's. Idempotent."""
    global _state
    from moto.core.config import default_user_config

    config: dict[str, Any] = default_user_config  # type: ignore[assignment]
    with _lock:
        state, _state = _state, None
    if state is None:
        return
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    StepFunctionsParserBackend.start_execution = state.start_execution  # type: ignore[method-assign]
    for key, value in state.config.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    for variable in state.environment:
        os.environ.pop(variable, None)
    settings.cache_clear()


def arns() -> dict[str, str]:
    """The ARN of each state machine `install` created, by the template's logical id."""
    with _lock:
        machines = _state.machines if _state else {}
        return {logical_id: machine.arn for logical_id, machine in machines.items()}


def _machine_name(logical_id: str, properties: dict[str, Any]) -> str:
    name = properties.get("Name")
    return name if isinstance(name, str) else logical_id


def _definition(logical_id: str, path: Path, resolver: Resolver) -> str:
    """The state machine's definition as a JSON string, its ${Name}s substituted as SAM does."""
    properties = resolver.resources[logical_id].get("Properties", {})
    if "Definition" in properties:
        definition = properties["Definition"]
    elif isinstance(uri := properties.get("DefinitionUri"), str):
        # SAM reads a relative DefinitionUri from the template's folder; JSON is YAML too.
        definition = yaml.safe_load((path.parent / uri).read_text())
    else:
        raise UnresolvedSubstitution(
            f"{logical_id}: the local stack needs a Definition or a DefinitionUri file, not {uri!r}"
        )
    text = json.dumps(definition)
    substitutions = properties.get("DefinitionSubstitutions")
    if not substitutions:
        return text
    # SAM hands the definition to CloudFormation as an Fn::Sub with the substitutions as its
    # variables: any other ${Name} is a Ref (or ${Name.Attribute} a GetAtt), and ${!Name} a literal.
    values = {
        key: resolver.resolve(value, f"{logical_id}.DefinitionSubstitutions.{key}")
        for key, value in substitutions.items()
    }

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            try:
                values[name] = resolver.resolve({"Fn::Sub": match.group(0)}, f"{logical_id}.Definition")
            except UnresolvedSubstitution as error:
                raise UnresolvedSubstitution(
                    f"{logical_id}: its definition uses ${{{name}}}, which is not in its "
                    f"DefinitionSubstitutions and not a value the local stack can resolve ({error})"
                ) from None
        return json.dumps(values[name])[1:-1]  # inside a JSON string

    return _SUB_VARIABLE.sub(substitute, text).replace("${!", "${")


class Resolver:
    """CloudFormation values (Ref, GetAtt, Sub, Select, Split, Join) and conditions as they are in
    the local stack. A parameter is its value in `parameters`, else its Default."""

    def __init__(
        self,
        document: dict[str, Any],
        path: Path,
        names: dict[str, str],
        *,
        region: str,
        account: str,
        machines: dict[str, str],
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.document, self.path, self.names = document, path, names
        self.resources: dict[str, Any] = document["Resources"]
        self.region, self.account, self.machines = region, account, machines
        self.parameters = dict(parameters or {})
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "aimass-local",
        }
        self.functions: dict[str, notifications.Function] = {}
        # The physical names the template gives the stack's resources, resolved as if deployed with
        # the parameters' defaults (only those that can be), mapped to the local names.
        self.physical: dict[str, str] = {}
        for logical_id, local_name in names.items():
            resource = self.resources.get(logical_id, {})
            expression = resource.get("Properties", {}).get(_NAME_PROPERTY.get(resource.get("Type"), ""))
            if expression is None:
                continue
            try:
                self.physical[self._value(expression, logical_id, local=False)] = local_name
            except UnresolvedSubstitution:
                continue

    @classmethod
    def of(
        cls, names: Mapping[str, str] | None = None, parameters: Mapping[str, str] | None = None
    ) -> Resolver:
        """A resolver for the template (template.template_path()) in the embedded AWS: `names` as
        for `install`, `parameters` the values that are not the template's Defaults."""
        path = template.template_path()
        document = template.load(path)
        resources = document["Resources"]
        return cls(
            document,
            path,
            dict(names or {}),
            region=aws.client("stepfunctions").meta.region_name,
            account=aws.client("sts").get_caller_identity()["Account"],
            machines={
                logical_id: _machine_name(logical_id, resource.get("Properties", {}))
                for logical_id, resource in resources.items()
                if resource.get("Type") == "AWS::Serverless::StateMachine"
            },
            parameters=parameters,
        )

    def resolve(self, value: Any, where: str) -> str:
        resolved = self._value(value, where, local=True)
        for physical, local_name in self.physical.items():
            resolved = resolved.replace(physical, local_name)
        return resolved

    def condition(self, name: str) -> bool:
        """Whether the template's condition `name` holds with these parameters."""
        return self._holds({"Condition": name}, f"Conditions.{name}")

    def _holds(self, value: Any, where: str) -> bool:
        kind, argument = (
            next(iter(value.items())) if isinstance(value, dict) and len(value) == 1 else ("", [])
        )
        if kind == "Condition" and isinstance(argument, str):
            return self._holds(self.document.get("Conditions", {})[argument], f"Conditions.{argument}")
        if kind == "Fn::Not":
            return not self._holds(argument[0], where)
        if kind == "Fn::And":
            return all(self._holds(item, where) for item in argument)
        if kind == "Fn::Or":
            return any(self._holds(item, where) for item in argument)
        if kind == "Fn::Equals":
            left, right = (self._value(item, where, local=False) for item in argument)
            return left == right
        raise UnresolvedSubstitution(f"{where}: cannot evaluate the condition {value!r} in the local stack")

    def machine_arn(self, logical_id: str) -> str:
        return f"arn:aws:states:{self.region}:{self.account}:stateMachine:{self.machines[logical_id]}"

    def _value(self, value: Any, where: str, *, local: bool) -> str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            [(kind, argument)] = value.items()
            if kind == "Ref" and isinstance(argument, str):
                return self._ref(argument, where, local=local)
            if kind == "Fn::GetAtt":
                target, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                return self._get_att(target, attribute, where, local=local)
            if kind == "Fn::Sub":
                return self._sub(argument, where, local=local)
            if kind == "Fn::Select":
                index, items = argument
                return self._list(items, where, local=local)[int(self._value(index, where, local=local))]
            if kind == "Fn::Join":
                delimiter, items = argument
                return str(delimiter).join(self._list(items, where, local=local))
        raise UnresolvedSubstitution(f"{where}: cannot resolve {value!r} in the local stack")

    def _list(self, value: Any, where: str, *, local: bool) -> list[str]:
        if isinstance(value, list):
            return [self._value(item, where, local=local) for item in value]
        if isinstance(value, dict) and set(value) == {"Fn::Split"}:
            delimiter, text = value["Fn::Split"]
            return self._value(text, where, local=local).split(str(delimiter))
        if isinstance(value, dict) and isinstance(value.get("Ref"), str):
            parameter = self.document.get("Parameters", {}).get(value["Ref"], {})
            if parameter.get("Type") == "CommaDelimitedList":
                text = self._ref(value["Ref"], where, local=local)
                return text.split(",") if text else []
        raise UnresolvedSubstitution(f"{where}: cannot resolve the list {value!r} in the local stack")

    def _ref(self, name: str, where: str, *, local: bool) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        if local and name in self.names:
            return self.names[name]
        if name in self.machines:
            return self.machine_arn(name)  # a state machine's Ref is its ARN
        if self._type(name) == "AWS::Serverless::Function":
            return self._function(name).logical_id  # a function's Ref is its name
        if (attribute := _REF_IS_NAME.get(self._type(name) or "")) is not None:
            return self._value(self.resources[name]["Properties"][attribute], where, local=local)
        parameter = self.document.get("Parameters", {}).get(name)
        if parameter is not None and name in self.parameters:
            return self.parameters[name]
        if parameter is not None and "Default" in parameter:
            return str(parameter["Default"])
        raise UnresolvedSubstitution(f"{where}: cannot resolve !Ref {name} in the local stack")

    def _get_att(self, name: str, attribute: str, where: str, *, local: bool) -> str:
        kind = self._type(name)
        if name in self.machines and attribute in ("Arn", "Name"):
            return self.machine_arn(name) if attribute == "Arn" else self.machines[name]
        if kind == "AWS::Serverless::Function" and attribute == "Arn":
            return self._function(name).arn
        if local and name in self.names and attribute == "Arn":
            if kind == "AWS::S3::Bucket":
                return f"arn:aws:s3:::{self.names[name]}"
            if kind == "AWS::DynamoDB::Table":
                return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{self.names[name]}"
        raise UnresolvedSubstitution(f"{where}: cannot resolve !GetAtt {name}.{attribute} in the local stack")

    def _sub(self, argument: Any, where: str, *, local: bool) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return self._value(variables[name], where, local=local)
            if "." in name and not name.startswith("AWS::"):
                target, attribute = name.split(".", 1)
                return self._get_att(target, attribute, where, local=local)
            return self._ref(name, where, local=local)

        return _SUB_VARIABLE.sub(substitute, text).replace("${!", "${")

    def _type(self, name: str) -> str | None:
        return self.resources.get(name, {}).get("Type")

    def _function(self, logical_id: str) -> notifications.Function:
        if logical_id not in self.functions:
            function = notifications.template_function(logical_id, self.path)
            [self.functions[logical_id]] = notifications.wire([function])
        return self.functions[logical_id]


def _environment(document: dict[str, Any], machines: dict[str, StateMachine]) -> dict[str, str]:
    """The variables code reads the state machines' ARNs from: the template functions' own (a value
    that is !Ref or !GetAtt .Arn of a state machine) and ENVIRONMENT's."""
    environment = {ENVIRONMENT[i]: machine.arn for i, machine in machines.items() if i in ENVIRONMENT}
    functions = [document.get("Globals", {}).get("Function", {})] + [
        resource.get("Properties", {})
        for resource in document["Resources"].values()
        if resource.get("Type") == "AWS::Serverless::Function"
    ]
    for properties in functions:
        for variable, value in ((properties.get("Environment") or {}).get("Variables") or {}).items():
            if not isinstance(value, dict) or len(value) != 1:
                continue
            [(kind, argument)] = value.items()
            if kind == "Fn::GetAtt":
                target, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                if attribute != "Arn":
                    continue
            elif kind == "Ref":
                target = argument
            else:
                continue
            if target in machines:
                environment[variable] = machines[target].arn
    return environment
