"""The pipeline routes in template.yaml: served by the registry function, which may start the
training pipeline and read its executions, and nothing else in Step Functions."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.infra

ROUTES = {
    ("POST", "/v1/models/{name}/pipeline:run"),
    ("GET", "/v1/models/{name}/pipeline/runs"),
    ("GET", "/v1/models/{name}/pipeline/runs/{run_id}"),
}


def registry_function(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["RegistryFunction"]["Properties"]  # type: ignore[no-any-return]


def test_the_registry_function_serves_the_pipeline_routes(template: dict[str, Any]) -> None:
    events = registry_function(template)["Events"].values()
    served = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events if e["Type"] == "HttpApi"}
    assert served >= ROUTES
    assert registry_function(template)["Environment"]["Variables"]["AIMASS_PIPELINE_STATE_MACHINE_ARN"] == {
        "Ref": "TrainingPipelineStateMachine"
    }


def test_it_may_start_the_pipeline_and_read_its_runs_only(template: dict[str, Any]) -> None:
    policies = registry_function(template)["Policies"]
    assert {
        "StepFunctionsExecutionPolicy": {
            "StateMachineName": {"Fn::GetAtt": ["TrainingPipelineStateMachine", "Name"]}
        }
    } in policies
    states = [
        s
        for p in policies
        if "Statement" in p
        for s in p["Statement"]
        if any(a.startswith("states:") for a in s["Action"])
    ]
    assert len(states) == 1
    assert sorted(states[0]["Action"]) == ["states:DescribeExecution", "states:GetExecutionHistory"]
    resource = states[0]["Resource"]["Fn::Sub"]
    assert resource.endswith(":execution:aimass-${Stage}-training-pipeline:*")


def test_it_writes_only_under_models_and_monitoring(template: dict[str, Any]) -> None:
    # The registry writes a version's files (models/<name>/<version>/) and the runs of
    # POST .../monitor:run (monitoring/); a bug or a stolen role must not be able to overwrite
    # predictions, captured traffic or training data.
    policies = registry_function(template)["Policies"]
    assert not [p for p in policies if {"S3WritePolicy", "S3CrudPolicy", "S3FullAccessPolicy"} & set(p)]
    writes = [
        s
        for p in policies
        if "Statement" in p
        for s in p["Statement"]
        if any(a.startswith("s3:Put") or a.startswith("s3:Delete") for a in _actions(s))
    ]
    assert [(s["Action"], [r["Fn::Sub"].rsplit("}", 1)[1] for r in s["Resource"]]) for s in writes] == [
        ("s3:PutObject", ["/models/*", "/monitoring/*"])
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)
