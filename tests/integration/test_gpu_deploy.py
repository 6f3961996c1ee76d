"""`aimass gpu deploy`: a registered version packaged for gpu_endpoints/ and deployed to a SageMaker
endpoint, against moto (aimass.deploy, docs/gpu.md).

moto 5 creates models, endpoint configs and endpoints (InService at once) and keeps application
autoscaling's targets and policies, but has no UpdateEndpoint. `SageMakerUpdates` stands in for it on
the real boto3 client: it records the UpdateEndpoint body as botocore serialised it for the wire (so
DeploymentConfig is checked as SageMaker would receive it), refuses what SageMaker refuses (an instance
type change of a variant registered for autoscaling; an endpoint not InService), and moves moto's
endpoint through the statuses a test scripts: to the new config, or back to the old one (a rollback).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends
from typer.testing import CliRunner

from aimass import artifacts, aws, wiring
from aimass.capacity import GPU_TARGET_INVOCATIONS
from aimass.contracts.registry import ModelVersion
from aimass.deploy import endpoint
from aimass.deploy.autoscaling import Autoscaling, registered_scaling, scaling_policy
from aimass.deploy.endpoint import DeployFailed, Deployment, resource_name
from aimass.deploy.package import package
from aimass.deploy.request import (
    PROVISIONING_MARGIN_S,
    Batching,
    DeployRefused,
    DeployRequest,
    Scaling,
    Traffic,
)
from aimass.deploy.status import endpoint_report
from aimass.errors import BadRequest, Conflict, IntegrityError
from aimass.local.demo import Demo, load_or_train
from aimass.registration import register_version

BUCKET = "aimass-test"
ENDPOINT = "aimass-test-gpu"
REGION = "us-east-1"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/aimass-gpu:0.1.0"
ROLE = "arn:aws:iam::123456789012:role/aimass-test-GpuEndpointRole-1A2B3C4D5E6F"
ALARMS = ("aimass-test-gpu-latency", "aimass-test-gpu-errors")
RESOURCE = f"endpoint/{ENDPOINT}/variant/primary"
# moto 5.2's list of instance types stops before ml.g5 (the tool's default): GPU types it knows.
INSTANCE, BIGGER = "ml.g4dn.xlarge", "ml.g4dn.2xlarge"


@pytest.fixture(scope="module")
def demo(state_dir: Path) -> Demo:
    return load_or_train("breast-cancer", state_dir)


def register(demo: Demo, backend: str = f"sagemaker:{ENDPOINT}", name: str = "bc-gpu") -> ModelVersion:
    return register_version(
        wiring.registry(), BUCKET, name, demo.model, "test", demo.enrichment, backend=backend
    )


@dataclass
class Calls:
    """Every AWS call the code makes, with its parameters as given to the client."""

    made: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.made.append((model.name, copy.deepcopy(params)))

    def names(self) -> list[str]:
        return [name for name, _ in self.made]

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.made if name == operation]


@dataclass
class SageMakerUpdates:
    """UpdateEndpoint for moto (see the module's docstring)."""

    # The statuses DescribeEndpoint reports after an update, one per call; the last one stays.
    script: list[str] = field(default_factory=lambda: ["Updating", "InService"])
    roll_back: bool = False
    bodies: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    # A refusal of SageMaker's own to give the next UpdateEndpoint (a quota, a bad image...).
    refuse_next: str | None = None
    _pending: dict[str, Any] | None = None

    @property
    def backend(self) -> Any:
        return sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]

    def update(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        body = json.loads(params["body"])
        self.bodies.append(body)
        endpoint = self.backend.endpoints[body["EndpointName"]]
        old = self.backend.endpoint_configs[endpoint.endpoint_config_name].response_object
        new = self.backend.endpoint_configs[body["EndpointConfigName"]].response_object
        if endpoint.endpoint_status != "InService":
            return self.refuse(f"Cannot update in-progress endpoint {endpoint.arn}.")
        if self.refuse_next:
            message, self.refuse_next = self.refuse_next, None
            return self.refuse(message)
        old_type = old["ProductionVariants"][0].get("InstanceType")
        if old_type != new["ProductionVariants"][0].get("InstanceType") and self.autoscaled(endpoint):
            return self.refuse(
                "The variant(s) [primary] are registered with Application Auto Scaling; the instance "
                "type cannot change while they are."
            )
        retained = {v["VariantName"]: v for v in endpoint.production_variants}
        variants = endpoint._process_production_variants(new["ProductionVariants"])
        if body.get("RetainAllVariantProperties"):
            for variant in variants:
                for key in ("CurrentInstanceCount", "DesiredInstanceCount"):
                    if key in retained.get(variant["VariantName"], {}):
                        variant[key] = retained[variant["VariantName"]][key]
        self._pending = {
            "name": body["EndpointName"],
            "config": body["EndpointConfigName"],
            "variants": variants,
            "capture": new.get("DataCaptureConfig"),
        }
        endpoint.endpoint_status = "Updating"
        return SimpleNamespace(status_code=200, headers={}), {"EndpointArn": endpoint.arn}

    def autoscaled(self, endpoint: Any) -> bool:
        scaling = applicationautoscaling_backends[DEFAULT_ACCOUNT_ID][REGION]
        return any(
            t.resource_id == f"endpoint/{endpoint.endpoint_name}/variant/primary"
            for t in scaling.describe_scalable_targets("sagemaker", None, None)
        )

    def refuse(self, message: str) -> tuple[Any, dict[str, Any]]:
        self.refused.append(message)
        error = {"Error": {"Code": "ValidationException", "Message": message}}
        return SimpleNamespace(status_code=400, headers={}), error

    def describe(self, **_: Any) -> None:
        """Before each DescribeEndpoint: the next scripted status; at the end, the config it settled on."""
        if self._pending is None:
            return
        endpoint = self.backend.endpoints[self._pending["name"]]
        status = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        endpoint.endpoint_status = status
        if status not in ("Updating", "RollingBack") and not self.roll_back:
            endpoint.endpoint_config_name = self._pending["config"]
            endpoint.production_variants = self._pending["variants"]
            endpoint.data_capture_config = self._pending["capture"]
        if status not in ("Updating", "RollingBack"):
            self._pending = None


@pytest.fixture
def calls(moto_aws: None) -> Calls:
    recorded = Calls()
    for service in ("sagemaker", "application-autoscaling", "cloudwatch", "s3"):
        aws.client(service).meta.events.register("provide-client-params", recorded.record)
    return recorded


@pytest.fixture
def updates(moto_aws: None) -> SageMakerUpdates:
    emulated = SageMakerUpdates()
    events = aws.client("sagemaker").meta.events
    events.register("before-call.sagemaker.UpdateEndpoint", emulated.update)
    events.register("before-call.sagemaker.DescribeEndpoint", emulated.describe)
    return emulated


@dataclass
class Seen:
    """Progress reports and the sleeps asked for, on a clock that only sleeping moves."""

    steps: list[str] = field(default_factory=list)
    waits: list[str] = field(default_factory=list)
    slept: list[float] = field(default_factory=list)
    now: float = 0.0

    def step(self, text: str) -> None:
        self.steps.append(text)

    def waiting(self, text: str) -> None:
        self.waits.append(text)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def deploy(version: ModelVersion, seen: Seen | None = None, **options: Any) -> Deployment:
    seen = seen or Seen()
    request = DeployRequest(**{"image": IMAGE, "role_arn": ROLE, "instance_type": INSTANCE, **options})
    return endpoint.deploy(version, request, seen, seen.sleep, seen.clock)


def put_alarms(*names: str) -> None:
    for name in names:
        aws.client("cloudwatch").put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/SageMaker",
            MetricName="ModelLatency",
            Statistic="Average",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1_000_000,
            ComparisonOperator="GreaterThanThreshold",
            Dimensions=[
                {"Name": "EndpointName", "Value": ENDPOINT},
                {"Name": "VariantName", "Value": "primary"},
            ],
        )


def package_files(uri: str) -> dict[str, bytes]:
    data = artifacts.get(uri)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


# --- Packaging --------------------------------------------------------------------------------------


def test_the_package_holds_the_registered_model_and_a_config_the_server_accepts(
    moto_aws: None, demo: Demo, tmp_path: Path
) -> None:
    # Given a version registered for the GPU endpoint, with feature names
    version = register(demo)

    # When it is packaged with batching options
    packaged = package(version, Batching(max_batch_size=64, max_queue_delay_ms=2, memory_mb=300))

    # Then model.tar.gz sits next to the version's files, holding exactly model.onnx and config.json
    assert packaged.uri == f"s3://{BUCKET}/models/bc-gpu/{version.version}/sagemaker/model.tar.gz"
    files = package_files(packaged.uri)
    assert sorted(files) == ["config.json", "model.onnx"]
    assert hashlib.sha256(files["model.onnx"]).hexdigest() == version.sha256
    assert hashlib.sha256(artifacts.get(packaged.uri)).hexdigest() == packaged.sha256
    config = json.loads(files["config.json"])
    features = [f.name for f in version.signature.features or []]
    assert features and config == {
        "batching": True,
        "max_batch_size": 64,
        "max_queue_delay_ms": 2,
        "features": features,
        "memory_mb": 300,
    }
    # And the inference server reads that folder as SageMaker extracts it: one model, this config
    from gpu_endpoints.models import discover, read_config
    from gpu_endpoints.settings import BatchingConfig

    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert discover(tmp_path, "bc-gpu") == {"bc-gpu": tmp_path}
    read = read_config(tmp_path, BatchingConfig())
    assert (read.batching.max_batch_size, read.features, read.memory_mb) == (64, tuple(features), 300)


def test_packaging_twice_gives_the_same_bytes(moto_aws: None, demo: Demo) -> None:
    version = register(demo)
    first = package(version, Batching(enabled=False))
    second = package(version, Batching(enabled=False))
    assert first.sha256 == second.sha256
    assert json.loads(package_files(first.uri)["config.json"])["batching"] is False


def test_names_stay_within_sagemakers_63_characters() -> None:
    name = resource_name("aimass-production-gpu", "a.very_long.model-name" * 3, 1234, "0a1b2c3d")
    assert len(name) <= 63 and name.endswith("-v1234-0a1b2c3d")
    assert name.startswith("aimass-production-gpu-a-very-long-model-name")
    assert "." not in name and "_" not in name and "--" not in name[-16:]


# --- A new endpoint ---------------------------------------------------------------------------------


def test_a_new_endpoint_is_created_with_variant_primary_data_capture_and_autoscaling(
    moto_aws: None, demo: Demo, calls: Calls
) -> None:
    # Given a version for an endpoint that does not exist yet
    version = register(demo)
    seen = Seen()

    # When it is deployed
    result = deploy(
        version,
        seen,
        capture_percent=20,
        scaling=Scaling(min_instances=1, max_instances=3, target_invocations=1200, scale_in_cooldown_s=600),
    )

    # Then the endpoint is created, InService, on the new config
    assert (result.action, result.status, result.previous_config) == ("created", "InService", None)
    sagemaker = aws.client("sagemaker")
    described = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointConfigName"] == result.endpoint_config
    assert result.endpoint_config.startswith(f"{ENDPOINT}-bc-gpu-v{version.version}-")
    # with one variant `primary`, and its traffic captured under capture/_endpoints/
    config = sagemaker.describe_endpoint_config(EndpointConfigName=result.endpoint_config)
    [variant] = config["ProductionVariants"]
    assert (variant["VariantName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        "primary",
        INSTANCE,
        1,
    )
    capture = config["DataCaptureConfig"]
    assert capture["DestinationS3Uri"] == f"s3://{BUCKET}/capture/_endpoints/"
    assert (capture["EnableCapture"], capture["InitialSamplingPercentage"]) == (True, 20)
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    # and a model that runs the image on the package, as the role
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == result.package.uri
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Environment"]["AIMASS_GPU_PRODUCTION_VARIANT"] == "primary"
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 1200
    # (moto keeps no network isolation flag: what was sent is checked instead)
    assert calls.of("CreateModel")[0]["EnableNetworkIsolation"] is True
    # and the variant scales between 1 and 3 instances on invocations per instance
    scaling = aws.client("application-autoscaling")
    [target] = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[RESOURCE])[
        "ScalableTargets"
    ]
    assert (target["ScalableDimension"], target["MinCapacity"], target["MaxCapacity"]) == (
        "sagemaker:variant:DesiredInstanceCount",
        1,
        3,
    )
    [policy] = scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=RESOURCE)[
        "ScalingPolicies"
    ]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert (
        tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )
    assert (tracking["TargetValue"], tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (
        1200,
        600,
        300,
    )
    assert policy["PolicyName"] == f"{ENDPOINT}-invocations-per-instance"  # the template's GpuScalingPolicy
    # registered once the endpoint was InService, after it was created
    names = calls.names()
    assert (
        names.index("CreateEndpoint")
        < names.index("RegisterScalableTarget")
        < names.index("PutScalingPolicy")
    )
    assert not calls.of("UpdateEndpoint")
    assert any("InService" in text for text in seen.waits)


def test_the_status_report_shows_what_the_endpoint_serves(moto_aws: None, demo: Demo) -> None:
    version = register(demo)
    result = deploy(version)

    report = endpoint_report(ENDPOINT)

    assert (report.status, report.config, report.model_name) == (
        "InService",
        result.endpoint_config,
        result.model_name,
    )
    assert report.served == {"aimass:model": "bc-gpu", "aimass:version": "1", "aimass:sha256": version.sha256}
    [variant] = report.variants
    assert (variant.name, variant.instance_type, variant.desired_instances) == ("primary", INSTANCE, 1)
    assert variant.image == IMAGE
    assert report.autoscaling == Autoscaling(1, 4, GPU_TARGET_INVOCATIONS, scaling_policy(ENDPOINT))
    assert report.model_data_url == result.package.uri


# --- Updating an endpoint ---------------------------------------------------------------------------


@pytest.fixture
def serving(moto_aws: None, demo: Demo, updates: SageMakerUpdates) -> Deployment:
    """v1 deployed to the endpoint on two instances, InService with autoscaling; the rollback alarms
    exist."""
    put_alarms(*ALARMS)
    return deploy(register(demo), instance_count=2)


def test_an_update_is_blue_green_with_the_rollback_alarms_and_reports_the_previous_config(
    serving: Deployment, demo: Demo, updates: SageMakerUpdates, calls: Calls
) -> None:
    # Given v1 serving, and v2 registered for the same endpoint
    version = register(demo)
    updates.script = ["Updating", "Updating", "Updating", "InService"]
    seen = Seen()

    # When v2 is deployed with a canary and the rollback alarms
    result = deploy(
        version,
        seen,
        traffic=Traffic(step_percent=10, wait_interval_s=600, termination_wait_s=300, alarms=ALARMS),
        capture_percent=5,
        poll_s=20,
    )

    # Then UpdateEndpoint went out with SageMaker's blue/green guardrails and the alarms that roll back
    [body] = updates.bodies
    assert body["EndpointConfigName"] == result.endpoint_config
    assert body["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 600,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
            "TerminationWaitInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": 600 + 300 + PROVISIONING_MARGIN_S,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in ALARMS]},
    }
    # keeping the running fleet's size (autoscaling's), but not its capture settings
    assert body["RetainAllVariantProperties"] is True
    assert body["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DataCaptureConfig"}]
    # and autoscaling stayed registered through it: the model changed, not the instance type
    assert "DeregisterScalableTarget" not in calls.names()
    # And the result says what a rollback goes back to, and the endpoint runs the new config
    assert (result.action, result.status, result.rolled_back) == ("updated", "InService", False)
    assert result.previous_config == serving.endpoint_config
    described = aws.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointConfigName"] == result.endpoint_config
    config = aws.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=described["EndpointConfigName"]
    )
    assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 5
    # waiting polled until InService, reporting each status, without sleeping for real
    assert [w.split(" (")[0] for w in seen.waits] == [f"{ENDPOINT}: Updating"] * 3 + [
        f"{ENDPOINT}: InService"
    ]
    assert seen.slept == [20, 20, 20]


def test_an_alarm_during_the_update_rolls_back_and_is_reported(
    serving: Deployment, demo: Demo, updates: SageMakerUpdates
) -> None:
    # Given SageMaker rolling the new fleet back (an alarm fired while it baked)
    updates.script = ["Updating", "RollingBack", "InService"]
    updates.roll_back = True

    result = deploy(register(demo), traffic=Traffic(alarms=ALARMS))

    # Then the deployment reports the rollback, and the endpoint runs the previous config
    assert (result.status, result.rolled_back) == ("InService", True)
    described = aws.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointConfigName"] == result.previous_config == serving.endpoint_config
    assert registered_scaling(ENDPOINT) is not None


def test_a_one_instance_fleet_moves_all_at_once_then_bakes(
    moto_aws: None, demo: Demo, updates: SageMakerUpdates
) -> None:
    # Given an endpoint on one instance (a canary would be all of it)
    put_alarms(*ALARMS)
    deploy(register(demo))

    result = deploy(register(demo), traffic=Traffic(alarms=ALARMS))

    routing = updates.bodies[0]["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}
    assert updates.bodies[0]["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert any("moves all at once" in note for note in result.notes)


def test_a_linear_update_shifts_traffic_in_steps(
    serving: Deployment, demo: Demo, updates: SageMakerUpdates
) -> None:
    deploy(
        register(demo),
        traffic=Traffic(
            mode="linear", step_percent=25, wait_interval_s=120, termination_wait_s=0, alarms=ALARMS[:1]
        ),
    )
    policy = updates.bodies[0]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 120,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }
    assert policy["MaximumExecutionTimeoutInSeconds"] == 4 * 120 + PROVISIONING_MARGIN_S


def test_changing_the_instance_type_takes_autoscaling_off_for_the_update_and_puts_it_back(
    serving: Deployment, demo: Demo, updates: SageMakerUpdates, calls: Calls
) -> None:
    # Given the endpoint registered for autoscaling (which SageMaker's update then refuses to resize)
    assert registered_scaling(ENDPOINT) is not None

    # When a version is deployed on another instance type
    result = deploy(register(demo), instance_type=BIGGER, traffic=Traffic(alarms=ALARMS))

    # Then autoscaling came off before UpdateEndpoint and was registered again after it
    names = calls.names()
    update = names.index("UpdateEndpoint")
    assert names.index("DeleteScalingPolicy") < names.index("DeregisterScalableTarget") < update
    assert update < max(i for i, n in enumerate(names) if n == "RegisterScalableTarget")
    assert not updates.refused
    assert updates.bodies[0]["RetainAllVariantProperties"] is False
    assert result.instance_type == BIGGER and result.status == "InService"
    assert registered_scaling(ENDPOINT) == Autoscaling(1, 4, GPU_TARGET_INVOCATIONS, scaling_policy(ENDPOINT))


def test_autoscaling_taken_off_is_put_back_when_sagemaker_refuses_the_update(
    serving: Deployment, demo: Demo, updates: SageMakerUpdates
) -> None:
    from botocore.exceptions import ClientError

    updates.refuse_next = (
        "The account-level service limit 'ml.g4dn.2xlarge for endpoint usage' is 0 Instances"
    )
    with pytest.raises(ClientError, match="service limit"):
        deploy(register(demo), instance_type=BIGGER, traffic=Traffic(alarms=ALARMS))
    assert registered_scaling(ENDPOINT) == Autoscaling(1, 4, GPU_TARGET_INVOCATIONS, scaling_policy(ENDPOINT))
    described = aws.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == (
        "InService",
        serving.endpoint_config,
    )


def test_an_instance_type_change_is_not_left_unwaited(
    serving: Deployment, demo: Demo, updates: SageMakerUpdates
) -> None:
    with pytest.raises(BadRequest, match="deploy with waiting"):
        deploy(register(demo), instance_type=BIGGER, wait=False)
    assert not updates.bodies and registered_scaling(ENDPOINT) is not None


def test_the_emulated_update_refuses_an_instance_type_change_while_autoscaled(
    serving: Deployment, updates: SageMakerUpdates
) -> None:
    # The stand-in refuses what SageMaker refuses, so the test above shows the deregistration is needed.
    from botocore.exceptions import ClientError

    sagemaker = aws.client("sagemaker")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=serving.endpoint_config)
    variant = {**config["ProductionVariants"][0], "InstanceType": BIGGER}
    sagemaker.create_endpoint_config(EndpointConfigName="bigger", ProductionVariants=[variant])
    with pytest.raises(ClientError, match="Auto Scaling"):
        sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="bigger")


def test_a_deployment_that_outlasts_its_wait_fails_with_where_it_stands(
    serving: Deployment, demo: Demo, updates: SageMakerUpdates
) -> None:
    updates.script = ["Updating"]
    seen = Seen()
    with pytest.raises(DeployFailed, match="still Updating after 100 s"):
        deploy(register(demo), seen, traffic=Traffic(alarms=ALARMS), timeout_s=100, poll_s=30)
    assert seen.slept == [30, 30, 30, 10]


# --- Refusals: nothing is touched -------------------------------------------------------------------


def nothing_created() -> None:
    assert aws.client("sagemaker").list_models()["Models"] == []
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="models/")
    assert not [o["Key"] for o in listed.get("Contents", []) if "/sagemaker/" in o["Key"]]


def test_a_lambda_backed_version_is_refused(moto_aws: None, demo: Demo) -> None:
    version = register(demo, backend="lambda")
    with pytest.raises(DeployRefused, match="runs on lambda, not on a SageMaker endpoint"):
        deploy(version)
    nothing_created()


def test_another_endpoint_than_the_versions_is_refused_unless_forced(moto_aws: None, demo: Demo) -> None:
    version = register(demo)
    with pytest.raises(DeployRefused, match=f"registered to run on {ENDPOINT}, not aimass-staging-gpu"):
        deploy(version, endpoint="aimass-staging-gpu")
    nothing_created()

    forced = deploy(version, endpoint="aimass-staging-gpu", force=True)
    assert forced.endpoint == "aimass-staging-gpu"
    assert (
        aws.client("sagemaker").describe_endpoint(EndpointName="aimass-staging-gpu")["EndpointStatus"]
        == "InService"
    )


def test_a_tampered_artifact_is_refused(moto_aws: None, demo: Demo) -> None:
    # Given the version's model.onnx replaced in S3 after it was registered
    version = register(demo)
    bucket, key = artifacts.parse_uri(version.artifact_uri)
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=demo.model + b"\0")

    with pytest.raises(IntegrityError, match="sha256"):
        deploy(version)
    nothing_created()


def test_a_rollback_alarm_that_does_not_exist_is_refused(
    serving: Deployment, demo: Demo, updates: SageMakerUpdates
) -> None:
    version = register(demo)
    with pytest.raises(BadRequest, match="aimass-test-gpu-typo do not exist"):
        deploy(version, traffic=Traffic(alarms=(ALARMS[0], "aimass-test-gpu-typo")))
    assert not updates.bodies
    assert aws.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == (
        serving.endpoint_config
    )


def test_an_endpoint_that_is_not_in_service_is_not_updated(
    serving: Deployment, demo: Demo, updates: SageMakerUpdates
) -> None:
    updates.backend.endpoints[ENDPOINT].endpoint_status = "Updating"
    with pytest.raises(Conflict, match="is Updating"):
        deploy(register(demo))
    assert not updates.bodies


@pytest.mark.parametrize(
    ("options", "field_name"),
    [
        ({"traffic": Traffic(step_percent=60)}, "canary_percent"),
        ({"traffic": Traffic(mode="linear", step_percent=5)}, "linear_percent"),
        (
            {"traffic": Traffic(wait_interval_s=3000, termination_wait_s=3000, max_execution_s=3600)},
            "max_execution_s",
        ),
        ({"instance_count": 5}, "instance_count"),
        ({"scaling": Scaling(min_instances=3, max_instances=2)}, "max_instances"),
        ({"capture_percent": 101}, "capture_percent"),
        ({"instance_type": "g5.xlarge"}, "instance_type"),
    ],
)
def test_options_out_of_range_are_refused_with_the_field(
    moto_aws: None, demo: Demo, options: dict[str, Any], field_name: str
) -> None:
    version = register(demo)
    with pytest.raises(BadRequest) as raised:
        deploy(version, **options)
    assert field_name in [d["loc"][0] for d in raised.value.details]
    nothing_created()


def test_a_new_endpoint_needs_an_image_and_a_role(moto_aws: None, demo: Demo) -> None:
    version = register(demo)
    with pytest.raises(BadRequest, match="--image"):
        endpoint.deploy(version, DeployRequest(role_arn=ROLE))
    nothing_created()


def test_an_update_keeps_the_running_image_role_and_instance_type(
    serving: Deployment, demo: Demo, updates: SageMakerUpdates
) -> None:
    result = endpoint.deploy(
        register(demo), DeployRequest(traffic=Traffic(alarms=ALARMS)), None, lambda _: None
    )
    assert (result.image, result.role_arn, result.instance_type) == (IMAGE, ROLE, INSTANCE)


def test_a_new_endpoint_runs_on_ml_g5_xlarge_unless_told(moto_aws: None, demo: Demo) -> None:
    planned = endpoint.plan(register(demo), DeployRequest(image=IMAGE, role_arn=ROLE))
    assert (planned.instance_type, planned.instance_count, planned.current) == ("ml.g5.xlarge", 1, None)


# --- The command ------------------------------------------------------------------------------------


@pytest.fixture
def api(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The aimass API in this process: the CLI's HTTP calls go to it (it reads the moto registry)."""
    import httpx
    from fastapi.testclient import TestClient

    from aimass.api.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        monkeypatch.setattr(
            httpx, "request", lambda method, url, timeout=None, **kw: client.request(method, url, **kw)
        )
        yield "http://aimass.test"


def cli(*args: str) -> Any:
    from aimass.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_the_command_deploys_a_version_and_reports_what_it_did(api: str, demo: Demo) -> None:
    # Given a version registered for the endpoint
    version = register(demo)

    # When `aimass gpu deploy` runs (the registry over the API, AWS directly)
    ran = cli(
        "gpu", "deploy", "bc-gpu", str(version.version), "--image", IMAGE, "--role-arn", ROLE,
        "--instance-type", INSTANCE, "--max-instances", "3", "--capture-percent", "15",
        "--max-batch-size", "16",
        "--endpoint", api, "--aws-endpoint", "",
    )  # fmt: skip

    # Then it succeeds and says what it created, and what comes next
    assert ran.exit_code == 0, ran.output
    described = aws.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointStatus"] == "InService"
    assert f"bc-gpu v{version.version} → {ENDPOINT}: created" in ran.output
    assert described["EndpointConfigName"] in ran.output
    assert f"15 % (requests and answers) → s3://{BUCKET}/capture/_endpoints/" in ran.output
    assert "autoscaling 1 to 3 instances" in ran.output
    assert "aimass models alias bc-gpu champion 1" in ran.output
    packaged = f"s3://{BUCKET}/models/bc-gpu/1/sagemaker/model.tar.gz"
    assert json.loads(package_files(packaged)["config.json"])["max_batch_size"] == 16

    # And `aimass gpu status` shows the endpoint
    status = cli("gpu", "status", ENDPOINT, "--aws-endpoint", "")
    assert status.exit_code == 0, status.output
    for text in ("InService", described["EndpointConfigName"], "primary", INSTANCE, "bc-gpu v1", "1 to 3"):
        assert text in status.output

    # And `aimass gpu autoscale` changes the bounds
    scaled = cli("gpu", "autoscale", ENDPOINT, "--max-instances", "6", "--aws-endpoint", "")
    assert scaled.exit_code == 0, scaled.output
    assert registered_scaling(ENDPOINT) == Autoscaling(1, 6, GPU_TARGET_INVOCATIONS, scaling_policy(ENDPOINT))


def test_a_version_with_personal_features_is_captured_by_sagemaker_answers_only(
    moto_aws: None, demo: Demo
) -> None:
    # Given a version whose signature marks a feature personal
    features = [f.model_copy(update={"pii": f.name == "mean_area"}) for f in demo.enrichment.features or []]
    enrichment = demo.enrichment.model_copy(update={"features": features})
    version = register_version(wiring.registry(), BUCKET, "bc-gpu", demo.model, "test", enrichment,
                               backend=f"sagemaker:{ENDPOINT}")  # fmt: skip

    # When it is deployed with capture on
    result = deploy(version, capture_percent=20)

    # Then SageMaker captures its answers, never the requests that carry the value unmasked, and says so
    config = aws.client("sagemaker").describe_endpoint_config(EndpointConfigName=result.endpoint_config)
    capture = config["DataCaptureConfig"]
    assert [o["CaptureMode"] for o in capture["CaptureOptions"]] == ["Output"]
    assert capture["InitialSamplingPercentage"] == 20 and result.capture_inputs is False
    assert any("answers only" in note and "mean_area" in note for note in result.notes)


def test_the_command_reads_the_models_personal_features_from_its_policy(api: str, demo: Demo) -> None:
    from fastapi.testclient import TestClient

    from aimass.api.app import create_app

    # Given a version whose model's policy marks a feature personal (its signature marks none)
    version = register(demo)
    with TestClient(create_app()) as admin:
        saved = admin.put("/v1/models/bc-gpu/quality", json={"pii_features": ["mean_area"]})
        assert saved.status_code == 200, saved.text

    # When `aimass gpu deploy` runs with capture on
    ran = cli("gpu", "deploy", "bc-gpu", str(version.version), "--image", IMAGE, "--role-arn", ROLE,
              "--instance-type", INSTANCE, "--endpoint", api, "--aws-endpoint", "")  # fmt: skip

    # Then the endpoint captures the answers only, and the command says why
    assert ran.exit_code == 0, ran.output
    described = aws.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    config = aws.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=described["EndpointConfigName"]
    )
    assert [o["CaptureMode"] for o in config["DataCaptureConfig"]["CaptureOptions"]] == ["Output"]
    assert f"10 % (answers only) → s3://{BUCKET}/capture/_endpoints/" in ran.output
    assert "personal features (mean_area)" in " ".join(ran.output.split())
    status = cli("gpu", "status", ENDPOINT, "--aws-endpoint", "")
    assert "capture 10 % (answers only)" in status.output


def test_the_command_refuses_a_lambda_version_with_the_reason(api: str, demo: Demo) -> None:
    version = register(demo, backend="lambda")
    ran = cli("gpu", "deploy", "bc-gpu", str(version.version), "--image", IMAGE, "--role-arn", ROLE,
              "--endpoint", api, "--aws-endpoint", "")  # fmt: skip
    assert ran.exit_code == 1
    assert "runs on lambda, not on a SageMaker endpoint" in ran.output
    nothing_created()


def test_the_command_refuses_a_linear_step_of_zero_instead_of_deploying_a_canary(
    api: str, demo: Demo
) -> None:
    version = register(demo)
    ran = cli("gpu", "deploy", "bc-gpu", str(version.version), "--image", IMAGE, "--role-arn", ROLE,
              "--linear-step-percent", "0", "--endpoint", api, "--aws-endpoint", "")  # fmt: skip
    assert ran.exit_code == 1
    assert "linear_percent" in ran.output
    nothing_created()
