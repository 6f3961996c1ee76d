"""What an endpoint runs now, for `aimass gpu status`: status, config, variants and instances, the
aimass version served (from the model's tags), capture and autoscaling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aimass import aws
from aimass.deploy.autoscaling import Autoscaling, registered_scaling
from aimass.deploy.endpoint import describe_endpoint, describe_model
from aimass.deploy.request import VARIANT
from aimass.errors import NotFound, field_error


@dataclass(frozen=True)
class VariantReport:
    name: str
    instance_type: str | None
    desired_instances: int | None
    current_instances: int | None
    weight: float | None
    image: str | None


@dataclass
class EndpointReport:
    endpoint: str
    status: str
    config: str
    created: str
    modified: str
    variants: list[VariantReport]
    model_name: str | None = None
    served: dict[str, str] = field(default_factory=dict)  # aimass:model, aimass:version, aimass:sha256
    model_data_url: str | None = None
    capture: dict[str, Any] | None = None
    autoscaling: Autoscaling | None = None
    last_deployment: dict[str, Any] | None = None
    pending: str | None = None
    failure_reason: str | None = None


def endpoint_report(endpoint: str) -> EndpointReport:
    """What an endpoint runs now: status, config, variants and instances, the aimass version served,
    capture and autoscaling."""
    described = describe_endpoint(endpoint)
    if described is None:
        raise NotFound(
            f"endpoint {endpoint} does not exist", [field_error(["endpoint"], "not found", "not_found")]
        )
    sagemaker = aws.client("sagemaker")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    configured = {v["VariantName"]: v for v in config["ProductionVariants"]}
    report = EndpointReport(
        endpoint=endpoint,
        status=described["EndpointStatus"],
        config=described["EndpointConfigName"],
        created=str(described.get("CreationTime", "")),
        modified=str(described.get("LastModifiedTime", "")),
        variants=[],
        # DescribeEndpoint's summary (its current sampling) over the config's settings.
        capture={**(config.get("DataCaptureConfig") or {}), **(described.get("DataCaptureConfig") or {})}
        or None,
        last_deployment=described.get("LastDeploymentConfig"),
        pending=(described.get("PendingDeploymentSummary") or {}).get("EndpointConfigName"),
        failure_reason=described.get("FailureReason"),
    )
    model_name = configured.get(VARIANT, {}).get("ModelName")
    model = describe_model(model_name) if model_name else {}
    container = model.get("PrimaryContainer") or {}
    if model:
        report.model_name = model_name
        report.model_data_url = container.get("ModelDataUrl")
        tags = sagemaker.list_tags(ResourceArn=model["ModelArn"]).get("Tags", [])
        report.served = {t["Key"]: t["Value"] for t in tags if t["Key"].startswith("aimass:")}
    for variant in described.get("ProductionVariants", []):
        spec = configured.get(variant["VariantName"], {})
        # The image the instances run (DeployedImages), else the one the variant's model names.
        images = variant.get("DeployedImages") or []
        image = images[0].get("SpecifiedImage") if images else None
        report.variants.append(
            VariantReport(
                variant["VariantName"],
                spec.get("InstanceType"),
                variant.get("DesiredInstanceCount"),
                variant.get("CurrentInstanceCount"),
                variant.get("CurrentWeight"),
                image or (container.get("Image") if variant["VariantName"] == VARIANT else None),
            )
        )
    report.autoscaling = registered_scaling(endpoint)
    return report
