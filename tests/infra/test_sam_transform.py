"""What SAM generates from template.yaml, through the SAM translator as CloudFormation runs it."""

from __future__ import annotations

from typing import Any

import pytest

from aimass.api.scopes import scopes

from .conftest import Route
from .test_template_contents import resolve_if

pytestmark = pytest.mark.infra


def generated_api(cfn: dict[str, Any]) -> dict[str, Any]:
    (api,) = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    return api["Properties"]["Body"]


def online_versions(cfn: dict[str, Any]) -> set[str]:
    return {
        logical_id
        for logical_id, r in cfn["Resources"].items()
        if r["Type"] == "AWS::Lambda::Version"
        and r["Properties"]["FunctionName"] == {"Ref": "OnlineFunction"}
    }


@pytest.mark.parametrize("auth_mode", ["iam", "jwt"])
def test_generated_api_authenticates_every_route_but_health(
    translated: dict[str, dict[str, Any]], routes: list[Route], auth_mode: str
) -> None:
    paths = generated_api(translated[auth_mode])["paths"]

    for route in routes:
        operation = paths[route.path][route.openapi_method]
        assert "x-amazon-apigateway-integration" in operation, f"{route} has no integration"
        if (route.method, route.path) == ("GET", "/health"):
            assert "security" not in operation
        else:
            # The SAM transform keeps each route's Fn::If for CloudFormation: IAM takes no scopes,
            # a JWT needs the route's (aimass.api.scopes).
            security = resolve_if(operation["security"], {"UseJwt": auth_mode == "jwt"})
            wanted = scopes(route.method, route.path) if auth_mode == "jwt" else []
            assert security == [{"caller": wanted}], f"{route} lost its security"


def test_api_calls_the_online_function_through_its_live_alias(
    translated: dict[str, dict[str, Any]], routes: list[Route]
) -> None:
    # SnapStart and provisioned concurrency live on published versions, reached through the alias.
    paths = generated_api(translated["iam"])["paths"]

    for route in (r for r in routes if r.function == "OnlineFunction"):
        uri = paths[route.path][route.openapi_method]["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        assert "${OnlineFunctionAliaslive}" in uri, route


def test_a_new_build_of_the_layers_publishes_a_new_online_function_version(
    translated: dict[str, dict[str, Any]],
) -> None:
    # Given the same template built twice with different code (as after a change in aimass),
    before, after = online_versions(translated["iam"]), online_versions(translated["rebuilt"])

    # Then the live alias moves to a new version instead of keeping the old layers.
    assert len(before) == len(after) == 1
    assert before != after


def test_batch_function_gets_the_shared_layers_then_arrow(translated: dict[str, dict[str, Any]]) -> None:
    # (the logical ids gain a content hash)
    layers = translated["iam"]["Resources"]["BatchFunction"]["Properties"]["Layers"]

    assert [ref["Ref"].rstrip("0123456789abcdef") for ref in layers] == [
        "CoreLayer",
        "RuntimeLayer",
        "ArrowLayer",
    ]


def test_the_bucket_notifies_the_batch_function_of_files_dropped_under_incoming(
    translated: dict[str, dict[str, Any]],
) -> None:
    bucket = translated["iam"]["Resources"]["ArtifactsBucket"]
    notifications = bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]

    # its live alias, which CodeDeploy moves to new code (test_code_deploy.py)
    assert [n["Function"] for n in notifications] == [{"Ref": "BatchFunctionAliaslive"}]
    assert {n["Event"] for n in notifications} == {"s3:ObjectCreated:*"}
    # Every object under incoming/, whatever its suffix (test_batch_template.py)
    assert [n["Filter"]["S3Key"]["Rules"] for n in notifications] == [
        [{"Name": "prefix", "Value": "incoming/"}]
    ]
    # S3 checks it may invoke the function when the configuration is put: the permissions come first
    assert len(bucket["DependsOn"]) == 1
