"""What template.yaml promises, read as data: auth on every route, storage settings, wiring."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from aimass.api.scopes import ADMIN, scopes

from .conftest import REPO, Route, resource_references, sub_strings

pytestmark = pytest.mark.infra

PUBLIC_ROUTES = {("GET", "/health")}
ARTIFACTS_BUCKET_NAME = "aimass-${Stage}-artifacts-${AWS::AccountId}-${AWS::Region}"
ARTIFACTS_BUCKET_ARN = f"arn:${{AWS::Partition}}:s3:::{ARTIFACTS_BUCKET_NAME}"


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def resolve_if(value: Any, conditions: dict[str, bool]) -> Any:
    """Evaluate Fn::If with the given condition values, as CloudFormation does at deploy time."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        condition, when_true, when_false = value["Fn::If"]
        return resolve_if(when_true if conditions[condition] else when_false, conditions)
    if isinstance(value, dict):
        return {k: resolve_if(v, conditions) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_if(v, conditions) for v in value]
    return value


def substitute(text: str, **values: str) -> str:
    """Fn::Sub's ${Name} / ${AWS::Name} with the given values; AccountId defaults to 12 digits."""
    values = {"AccountId": "123456789012", **values}
    return re.sub(r"\$\{(?:AWS::)?([^}]+)\}", lambda m: values[m.group(1)], text)


def api_body(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["Api"]["Properties"]["DefinitionBody"]


def test_every_route_but_health_requires_auth(template: dict[str, Any], routes: list[Route]) -> None:
    paths = api_body(template)["paths"]
    assert {(r.method, r.path) for r in routes} >= PUBLIC_ROUTES

    for route in routes:
        operation = paths.get(route.path, {}).get(route.openapi_method)
        assert operation is not None, f"{route} is missing from the Api's OpenAPI body"
        if (route.method, route.path) in PUBLIC_ROUTES:
            assert not operation.get("security"), f"{route} must stay public"
        else:
            # With IAM the scheme takes no scopes (the split is by route ARN: docs/deploy.md).
            iam = resolve_if(operation.get("security"), {"UseJwt": False})
            assert iam == [{"caller": []}], f"{route} is not authenticated"


def test_with_jwt_each_route_needs_its_scope_and_registry_writes_only_admin(
    template: dict[str, Any], routes: list[Route]
) -> None:
    # Given AuthMode=jwt, when CloudFormation resolves each route's security
    paths = api_body(template)["paths"]
    admin_routes = set()
    for route in routes:
        if (route.method, route.path) in PUBLIC_ROUTES:
            continue
        jwt = resolve_if(paths[route.path][route.openapi_method]["security"], {"UseJwt": True})
        # Then the token needs one of the route's scopes: admin alone on the registry's writes
        assert jwt == [{"caller": scopes(route.method, route.path)}], f"{route} has the wrong scopes"
        if jwt == [{"caller": [ADMIN]}]:
            admin_routes.add((route.method, route.path))
    assert admin_routes == {
        ("POST", "/v1/models/{name}/versions"),
        ("PATCH", "/v1/models/{name}/versions/{version}"),
        ("POST", "/v1/models/{name}/versions/{version}/quantize"),
        ("PATCH", "/v1/models/{name}/versions/{version}/card"),
        ("POST", "/v1/models/{name}/versions:compose"),
        ("PUT", "/v1/models/{name}/aliases/{alias}"),
        ("DELETE", "/v1/models/{name}/aliases/{alias}"),
        ("PUT", "/v1/models/{name}/rules"),
        ("PUT", "/v1/models/{name}/quality"),
        ("PUT", "/v1/models/{name}/traffic"),
        ("PUT", "/v1/models/{name}/rollout"),
        ("POST", "/v1/models/{name}/rollout/promote"),
        ("POST", "/v1/models/{name}/rollout/abort"),
        ("PUT", "/v1/models/{name}/release-policy"),
        ("POST", "/v1/models/{name}/versions/{version}/release"),
        ("POST", "/v1/models/{name}/versions/{version}/approve"),
        ("POST", "/v1/models/{name}/versions/{version}/reject"),
        ("POST", "/v1/models/{name}/rollout/tick"),
        ("POST", "/v1/models/{name}/pipeline:run"),
        ("POST", "/v1/models/{name}/monitor:run"),
        ("GET", "/v1/subscriptions"),
        ("POST", "/v1/subscriptions"),
        ("DELETE", "/v1/subscriptions/{subscription_id}"),
    }


def test_api_body_lists_exactly_the_routes_the_functions_serve(
    template: dict[str, Any], routes: list[Route]
) -> None:
    # An operation in the body with no function behind it would be a route without integration.
    in_body = {(path, method) for path, item in api_body(template)["paths"].items() for method in item}
    served = {(route.path, route.openapi_method) for route in routes}

    assert in_body == served


@pytest.mark.parametrize(
    ("auth_mode", "expected"),
    [
        ("iam", {"type": "apiKey", "x-amazon-apigateway-authtype": "awsSigv4"}),
        ("jwt", {"type": "oauth2"}),
    ],
)
def test_auth_mode_picks_iam_or_a_jwt_authorizer(
    template: dict[str, Any], auth_mode: str, expected: dict[str, str]
) -> None:
    # Given AuthMode, when CloudFormation resolves the body's Fn::If
    scheme = resolve_if(
        api_body(template)["components"]["securitySchemes"]["caller"], {"UseJwt": auth_mode == "jwt"}
    )

    # Then the one scheme every route uses is SigV4 or a JWT authorizer fed by the parameters
    assert expected.items() <= scheme.items()
    if auth_mode == "jwt":
        authorizer = scheme["x-amazon-apigateway-authorizer"]
        assert authorizer["type"] == "jwt"
        assert authorizer["identitySource"] == "$request.header.Authorization"
        assert authorizer["jwtConfiguration"] == {
            "issuer": {"Ref": "JwtIssuer"},
            "audience": {"Ref": "JwtAudience"},
        }
    assert template["Conditions"]["UseJwt"] == {"Fn::Equals": [{"Ref": "AuthMode"}, "jwt"]}
    assert template["Parameters"]["AuthMode"]["Default"] == "iam"


def test_artifacts_bucket_is_encrypted_versioned_private_and_tls_only(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ArtifactsBucket"]["Properties"]
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    policies = [
        p["Properties"]
        for p in resources_of_type(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "ArtifactsBucket"}
    ]

    # SSE-S3, or SSE-KMS with the customer key KmsKeyArn (test_privacy_template.py)
    condition, with_key, without = encryption["Fn::If"]
    assert condition == "HasKmsKey"
    assert with_key["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert without == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    assert any(
        s["Effect"] == "Deny"
        and s["Principal"] == "*"
        and s["Action"] in ("s3:*", ["s3:*"])
        and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        and {"Fn::Sub": "${ArtifactsBucket.Arn}/*"} in s["Resource"]
        for s in statements
    ), "no statement denies non-TLS access to the bucket and its objects"


def test_artifacts_bucket_name_is_fixed_per_stage_account_and_region(template: dict[str, Any]) -> None:
    name = template["Resources"]["ArtifactsBucket"]["Properties"]["BucketName"]

    assert name == {"Fn::Sub": ARTIFACTS_BUCKET_NAME}
    # Every stage's name is a valid S3 name even in the longest region names (14 characters).
    for stage in template["Parameters"]["Stage"]["AllowedValues"]:
        for region in ("us-east-1", "ap-southeast-2", "cn-northwest-1"):
            resolved = substitute(ARTIFACTS_BUCKET_NAME, Stage=stage, Region=region)
            assert len(resolved) <= 63, resolved
            assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", resolved), resolved


def test_functions_name_the_artifacts_bucket_and_never_depend_on_it(template: dict[str, Any]) -> None:
    # The batch function's S3 events make the bucket depend on the function: a Ref or GetAtt of the
    # bucket in a function (or in Globals, which every function gets) would close a cycle.
    functions = {
        "Globals": template["Globals"]["Function"],
        **{k: v["Properties"] for k, v in resources_of_type(template, "AWS::Serverless::Function").items()},
    }

    for logical_id, properties in functions.items():
        without_events = {k: v for k, v in properties.items() if k != "Events"}
        assert "ArtifactsBucket" not in resource_references(without_events), (
            f"{logical_id} refers to ArtifactsBucket by Ref/GetAtt: use its name"
        )
        for text in sub_strings(without_events):
            if "-artifacts-" in text:
                assert text in (ARTIFACTS_BUCKET_NAME, ARTIFACTS_BUCKET_ARN) or text.startswith(
                    f"{ARTIFACTS_BUCKET_ARN}/"
                ), f"{logical_id} spells the bucket name differently: {text}"


def test_registry_table_keys_and_billing_are_literal_for_the_local_stack(template: dict[str, Any]) -> None:
    table = template["Resources"]["RegistryTable"]

    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    assert props["AttributeDefinitions"] == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["DeletionProtectionEnabled"] == {"Fn::If": ["IsProd", True, False]}
    assert "TableName" not in props


def test_every_function_gets_the_settings_the_package_reads(template: dict[str, Any]) -> None:
    environment = template["Globals"]["Function"]["Environment"]["Variables"]

    assert environment == {
        "AIMASS_BUCKET": {"Fn::Sub": ARTIFACTS_BUCKET_NAME},
        "AIMASS_REGISTRY_TABLE": {"Ref": "RegistryTable"},
        "AIMASS_STAGE": {"Ref": "Stage"},
        "AIMASS_MAX_PAYLOAD_BYTES": {"Ref": "MaxPayloadBytes"},
        "AIMASS_ORT_INTRA_OP_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "POWERTOOLS_SERVICE_NAME": "aimass",
        "POWERTOOLS_METRICS_NAMESPACE": "aimass",
    }
    # Runtime and layers are each zip function's own: Globals would give them to the image function
    assert (
        "Layers" not in template["Globals"]["Function"] and "Runtime" not in template["Globals"]["Function"]
    )
    for logical_id, function in resources_of_type(template, "AWS::Serverless::Function").items():
        properties = function["Properties"]
        if properties.get("PackageType") == "Image":
            assert "Layers" not in properties and "Runtime" not in properties, logical_id
        else:
            assert properties["Runtime"] == "python3.12", logical_id
            assert properties["Layers"][:2] == [{"Ref": "CoreLayer"}, {"Ref": "RuntimeLayer"}], logical_id


def test_every_function_has_a_log_group_with_retention(template: dict[str, Any]) -> None:
    log_groups = {
        props["LogGroupName"]["Fn::Sub"]: props
        for props in (g["Properties"] for g in resources_of_type(template, "AWS::Logs::LogGroup").values())
        if "LogGroupName" in props
    }

    for function in resources_of_type(template, "AWS::Serverless::Function"):
        log_group = log_groups.get(f"/aws/lambda/${{{function}}}")
        assert log_group is not None, f"{function} has no log group"
        assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_online_function_uses_snapstart_by_default_or_provisioned_concurrency(
    template: dict[str, Any],
) -> None:
    online = template["Resources"]["OnlineFunction"]["Properties"]

    assert online["AutoPublishAlias"] == "live"
    assert resolve_if(online["SnapStart"], {"UseSnapStart": True}) == {"ApplyOn": "PublishedVersions"}
    assert resolve_if(online["ProvisionedConcurrencyConfig"], {"HasProvisionedConcurrency": True}) == {
        "ProvisionedConcurrentExecutions": {"Ref": "ProvisionedConcurrency"}
    }
    assert resolve_if(online["SnapStart"], {"UseSnapStart": False}) == {"Ref": "AWS::NoValue"}
    assert template["Parameters"]["ProvisionedConcurrency"]["Default"] == 0
    assert template["Parameters"]["EnableSnapStart"]["Default"] == "true"  # on unless turned off


def test_every_checkov_skip_says_why(template: dict[str, Any]) -> None:
    for logical_id, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "").strip()) > 20, (
                f"{logical_id} skips {skip['id']} without a reason"
            )


def test_functions_ship_no_dependencies_of_their_own(template: dict[str, Any]) -> None:
    # Dependencies belong in layers/runtime; a requirements.txt here would also make `sam build`
    # need a local python3.12.
    # (An image function installs the aimass package with its extras in its Dockerfile.)
    for logical_id, function in resources_of_type(template, "AWS::Serverless::Function").items():
        if function["Properties"].get("PackageType") == "Image":
            continue
        code = REPO / function["Properties"]["CodeUri"]
        assert not (code / "requirements.txt").exists(), (
            f"{logical_id}: move {code}/requirements.txt to the layer"
        )


def test_outputs_name_the_api_storage_and_functions(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) >= {
        "ApiUrl",
        "ArtifactsBucketName",
        "RegistryTableName",
        "OnlineFunctionArn",
        "RegistryFunctionArn",
        "BatchFunctionArn",
        "BatchFailureQueueUrl",
        "IdempotencyTableName",
    }


def test_samconfig_deploys_each_stage_to_its_own_stack() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())

    assert config["version"] == 0.1
    for env, stage in (("default", "dev"), ("staging", "staging"), ("prod", "prod")):
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["stack_name"] == f"aimass-{stage}"
        assert f"Stage={stage}" in deploy["parameter_overrides"]
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        assert deploy["resolve_s3"] is True
        assert deploy["region"] == "us-east-1"
        build = config[env]["build"]["parameters"]
        assert build["cached"] is True
        assert build["parallel"] is True


def test_the_api_throttles_every_route_and_pipeline_starts_hardest(template: dict[str, Any]) -> None:
    # The functions have no reserved concurrency (checkov skips say throttling belongs to the API):
    # API Gateway's rate and burst are the flood's stop, from parameters, and starting a retraining
    # run (the most expensive call) has its own, lower, route limit.
    api = template["Resources"]["Api"]["Properties"]
    assert api["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiBurstLimit"},
    }
    pipeline = api["RouteSettings"]["POST /v1/models/{name}/pipeline:run"]
    assert pipeline["ThrottlingRateLimit"] == {"Ref": "PipelineRunRateLimit"}
    parameters = template["Parameters"]
    assert parameters["PipelineRunRateLimit"]["Default"] < parameters["ApiRateLimit"]["Default"]
