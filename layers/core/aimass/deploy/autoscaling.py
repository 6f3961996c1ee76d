"""The endpoint variant's autoscaling: a scalable target with a target-tracking policy on
SageMakerVariantInvocationsPerInstance (Application Auto Scaling)."""

from __future__ import annotations

from dataclasses import dataclass

from aimass import aws
from aimass.deploy.request import VARIANT, Scaling

SCALING_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"


def scaling_policy(endpoint: str) -> str:
    """The target-tracking policy's name: the template's own (GpuScalingPolicy), so that a deploy
    updates the stack's policy instead of adding a second one."""
    return f"{endpoint}-invocations-per-instance"


def scaling_resource(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT}"


@dataclass(frozen=True)
class Autoscaling:
    min_instances: int
    max_instances: int
    target_invocations: float | None
    policy: str | None


def registered_scaling(endpoint: str) -> Autoscaling | None:
    """The variant's autoscaling registration, or None."""
    scaling = aws.client("application-autoscaling")
    resource = scaling_resource(endpoint)
    targets = scaling.describe_scalable_targets(
        ServiceNamespace=SCALING_NAMESPACE, ResourceIds=[resource], ScalableDimension=SCALABLE_DIMENSION
    )["ScalableTargets"]
    if not targets:
        return None
    policies = scaling.describe_scaling_policies(
        ServiceNamespace=SCALING_NAMESPACE, ResourceId=resource, ScalableDimension=SCALABLE_DIMENSION
    )["ScalingPolicies"]
    tracking = [p for p in policies if p.get("PolicyType") == "TargetTrackingScaling"]
    target = tracking[0]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] if tracking else None
    return Autoscaling(
        int(targets[0]["MinCapacity"]),
        int(targets[0]["MaxCapacity"]),
        None if target is None else float(target),
        tracking[0]["PolicyName"] if tracking else None,
    )


def register_scaling(endpoint: str, scaling: Scaling) -> Autoscaling:
    """The variant as a scalable target between min and max, tracking invocations per instance."""
    client = aws.client("application-autoscaling")
    resource = scaling_resource(endpoint)
    client.register_scalable_target(
        ServiceNamespace=SCALING_NAMESPACE,
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
        MinCapacity=scaling.min_instances,
        MaxCapacity=scaling.max_instances,
    )
    client.put_scaling_policy(
        PolicyName=scaling_policy(endpoint),
        ServiceNamespace=SCALING_NAMESPACE,
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(scaling.target_invocations),
            "PredefinedMetricSpecification": {"PredefinedMetricType": SCALING_METRIC},
            "ScaleInCooldown": scaling.scale_in_cooldown_s,
            "ScaleOutCooldown": scaling.scale_out_cooldown_s,
        },
    )
    return Autoscaling(
        scaling.min_instances, scaling.max_instances, scaling.target_invocations, scaling_policy(endpoint)
    )


def deregister_scaling(endpoint: str) -> None:
    """Every scaling policy of the variant deleted, then the variant deregistered."""
    client = aws.client("application-autoscaling")
    resource = scaling_resource(endpoint)
    policies = client.describe_scaling_policies(
        ServiceNamespace=SCALING_NAMESPACE, ResourceId=resource, ScalableDimension=SCALABLE_DIMENSION
    )["ScalingPolicies"]
    for policy in policies:
        client.delete_scaling_policy(
            PolicyName=policy["PolicyName"],
            ServiceNamespace=SCALING_NAMESPACE,
            ResourceId=resource,
            ScalableDimension=SCALABLE_DIMENSION,
        )
    client.deregister_scalable_target(
        ServiceNamespace=SCALING_NAMESPACE, ResourceId=resource, ScalableDimension=SCALABLE_DIMENSION
    )
