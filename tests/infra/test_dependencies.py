"""CloudFormation can order the generated template: no resource waits, through others, on itself.

SAM turns the batch function's S3 events into the bucket's NotificationConfiguration and makes the
bucket depend on the function's invoke permissions, so a function that referred to the bucket would
close a cycle. cfn-lint does not see it in template.yaml (it reports E3004 only on the translated
template), hence this walk over what the SAM translator generates.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import resource_references

pytestmark = pytest.mark.infra


def dependencies(cfn: dict[str, Any]) -> dict[str, set[str]]:
    """Each resource's logical id -> the resources it waits for: DependsOn, Ref, GetAtt, Sub."""
    resources = cfn["Resources"]
    graph = {}
    for logical_id, resource in resources.items():
        depends_on = resource.get("DependsOn", [])
        named = {depends_on} if isinstance(depends_on, str) else set(depends_on)
        named |= resource_references(resource.get("Properties", {}))
        graph[logical_id] = {name for name in named if name in resources}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One dependency cycle as a path that ends where it starts, or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored

    def visit(path: list[str]) -> list[str] | None:
        node = path[-1]
        state[node] = "open"
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                return [*path[path.index(child) :], child]
            if child not in state and (cycle := visit([*path, child])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit([start])):
            return cycle
    return None


def test_the_cycle_check_finds_a_bucket_waiting_on_a_function_that_names_it() -> None:
    # Given what SAM generates when the function refers to the bucket with Ref
    cfn = {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", "DependsOn": ["FnPermission"]},
            "FnPermission": {
                "Type": "AWS::Lambda::Permission",
                "Properties": {"FunctionName": {"Ref": "Fn"}},
            },
            "Fn": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Role": {"Fn::GetAtt": ["FnRole", "Arn"]}},
            },
            "FnRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {"Policies": [{"Resource": {"Fn::Sub": "${Bucket.Arn}/incoming/*"}}]},
            },
            "Other": {"Type": "AWS::SQS::Queue", "Properties": {"Name": {"Fn::Sub": "${AWS::StackName}"}}},
        }
    }

    # Then the walk reports the loop, and nothing once the role names the bucket instead
    assert find_cycle(dependencies(cfn)) == ["Bucket", "FnPermission", "Fn", "FnRole", "Bucket"]
    cfn["Resources"]["FnRole"]["Properties"] = {"Resource": {"Fn::Sub": "arn:aws:s3:::aimass-${Stage}/*"}}
    assert find_cycle(dependencies(cfn)) is None


@pytest.mark.parametrize("case", ["iam", "jwt"])
def test_generated_template_has_no_dependency_cycle(translated: dict[str, dict[str, Any]], case: str) -> None:
    graph = dependencies(translated[case])

    # The edge that makes the cycle possible is there: the bucket waits for the batch function
    assert any(d.startswith("BatchFunction") for d in graph["ArtifactsBucket"])
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
