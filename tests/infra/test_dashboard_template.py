"""The stage's CloudWatch dashboard and the alarms beside it (docs/deploy.md, "Dashboard" and
"Alarms"), read from template.yaml as data: the dashboard body is the JSON CloudWatch takes once
Fn::Sub has run, with every model's metrics through SEARCH; the alarms watch the metrics they say."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

pytestmark = pytest.mark.infra

# What Fn::Sub puts in the body at deploy time: a value per ${Name}; ${!x} is a literal ${x}.
DEPLOYED = {
    "AWS::Region": "eu-west-1",
    "Stage": "prod",
    "Api": "a1b2c3d4e5",
    "OnlineFunction": "aimass-prod-OnlineFunction-ABC",
    "RegistryFunction": "aimass-prod-RegistryFunction-ABC",
    "BatchFunction": "aimass-prod-BatchFunction-ABC",
    "BatchPredictStateMachine": "arn:aws:states:eu-west-1:123456789012:stateMachine:aimass-prod-batch",
    "TrainingPipelineStateMachine": "arn:aws:states:eu-west-1:123456789012:stateMachine:aimass-prod-tp",
}
ONLINE_METRICS = {
    "Predictions",
    "Anomalies",
    "QualityFlagged",
    "RuleRejections",
    "Fallbacks",
    "StalePredictions",
}
MONITOR_METRICS = {
    "MonitorDriftedFeatures",
    "MonitorDriftScore",
    "MonitorConstraintViolations",
    "MonitorAnomalyRate",
}
FEEDBACK_METRICS = {"FeedbackCorrect", "FeedbackClassified", "FeedbackAbsoluteError", "FeedbackScored"}


def deployed_body(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body as CloudFormation hands it to CloudWatch (alarm ARNs made up)."""
    sub = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(sub, str), "the body is one Fn::Sub string, its names from the template"

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name.endswith(".Arn"):
            resource = name.removesuffix(".Arn")
            assert template["Resources"][resource]["Type"] == "AWS::CloudWatch::Alarm", name
            return f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{resource}"
        assert name in DEPLOYED, f"the body names ${{{name}}}, which this test does not know"
        return DEPLOYED[name]

    return json.loads(re.sub(r"\$\{([^}]+)\}", value, sub))  # type: ignore[no-any-return]


def metric_widgets(body: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        w["properties"]["title"]: w["properties"]["metrics"] for w in body["widgets"] if w["type"] == "metric"
    }


def searched(metrics: list[Any]) -> set[str]:
    """The metric names the widget's SEARCH expressions look for."""
    return {
        name
        for m in metrics
        if isinstance(m[0], dict) and "SEARCH(" in m[0]["expression"]
        for name in re.findall(r'MetricName="([^"]+)"', m[0]["expression"])
    }


def test_the_dashboard_is_named_with_the_stage(template: dict[str, Any]) -> None:
    dashboard = template["Resources"]["Dashboard"]
    assert dashboard["Type"] == "AWS::CloudWatch::Dashboard"
    assert dashboard["Properties"]["DashboardName"] == {"Fn::Sub": "aimass-${Stage}"}


def test_the_dashboard_body_is_json_whose_widgets_fit_the_grid(template: dict[str, Any]) -> None:
    body = deployed_body(template)
    widgets = body["widgets"]
    assert widgets
    cells: set[tuple[int, int]] = set()
    for widget in widgets:
        assert widget["x"] + widget["width"] <= 24, widget
        taken = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not cells & taken, f"{widget['properties'].get('title')} overlaps another widget"
        cells |= taken
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "eu-west-1"
            ids = [m[0]["id"] for m in widget["properties"]["metrics"] if isinstance(m[0], dict)]
            assert all(re.fullmatch(r"[a-z][a-zA-Z0-9_]*", i) for i in ids) and len(ids) == len(set(ids))


def test_every_model_shows_through_search_with_its_traffic_drift_and_accuracy(
    template: dict[str, Any],
) -> None:
    widgets = metric_widgets(deployed_body(template))
    everything = set().union(*(searched(m) for m in widgets.values()))
    # Then the online function's, the monitor's and feedback's metrics are each on a widget, by model
    assert everything >= ONLINE_METRICS | MONITOR_METRICS | FEEDBACK_METRICS
    # the online ones under the model's own dimension set, so that a rollout's second set (by version
    # and variant) does not count a request twice
    for metrics in widgets.values():
        for m in metrics:
            if isinstance(m[0], dict) and set(searched([m])) & ONLINE_METRICS:
                assert "{aimass,model,service}" in m[0]["expression"], m
    # and the monitor's under its set by version (the DriftAlarm reads its set by model alone)
    for metrics in widgets.values():
        for m in metrics:
            if isinstance(m[0], dict) and set(searched([m])) & MONITOR_METRICS:
                assert "{aimass,model,version}" in m[0]["expression"], m
    # and the dynamic labels name the model (Fn::Sub left them for CloudWatch)
    assert any("${PROP('Dim.model')}" in json.dumps(m) for m in widgets["Predictions (instances) by model"])


def test_the_dashboard_shows_the_api_the_functions_batch_files_and_pipeline_runs(
    template: dict[str, Any],
) -> None:
    flat = json.dumps(deployed_body(template))
    for expected in [
        '["AWS/ApiGateway", "Latency", "ApiId", "a1b2c3d4e5", "Stage", "$default", {"stat": "p99"',
        '["AWS/ApiGateway", "Latency", "ApiId", "a1b2c3d4e5", "Stage", "$default", {"stat": "p50"',
        '["AWS/ApiGateway", "5xx", "ApiId", "a1b2c3d4e5"',
        '["AWS/Lambda", "Throttles", "FunctionName", "aimass-prod-OnlineFunction-ABC"',
        '["AWS/Lambda", "Errors", "FunctionName", "aimass-prod-OnlineFunction-ABC"',
        '["aimass", "BatchFilesFailed", "service", "aimass", {"stat": "SampleCount"',
        f'["AWS/States", "ExecutionsFailed", "StateMachineArn", "{DEPLOYED["TrainingPipelineStateMachine"]}"',
        f'["AWS/States", "ExecutionsStarted", "StateMachineArn", "{DEPLOYED["BatchPredictStateMachine"]}"',
        "SUM(correct) / SUM(classified)",
        'EndpointName=\\"aimass-prod-gpu\\"',
    ]:
        assert expected in flat, expected


def alarm(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    resource = template["Resources"][logical_id]
    assert resource["Type"] == "AWS::CloudWatch::Alarm"
    properties: dict[str, Any] = resource["Properties"]
    assert properties["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }
    return properties


def test_the_api_p99_latency_alarm_takes_its_threshold_from_a_parameter(template: dict[str, Any]) -> None:
    latency = alarm(template, "ApiLatencyAlarm")
    assert (latency["Namespace"], latency["MetricName"], latency["ExtendedStatistic"]) == (
        "AWS/ApiGateway",
        "Latency",
        "p99",
    )
    assert latency["Dimensions"] == [
        {"Name": "ApiId", "Value": {"Ref": "Api"}},
        {"Name": "Stage", "Value": "$default"},
    ]
    assert latency["Threshold"] == {"Ref": "ApiLatencyAlarmMs"}
    assert template["Parameters"]["ApiLatencyAlarmMs"]["Type"] == "Number"


def watched(properties: dict[str, Any]) -> dict[str, tuple[str, str, Any]]:
    """A metric-math alarm's metrics by id: (metric name, statistic, the function)."""
    return {
        m["Id"]: (
            m["MetricStat"]["Metric"]["MetricName"],
            m["MetricStat"]["Stat"],
            m["MetricStat"]["Metric"]["Dimensions"][0]["Value"],
        )
        for m in properties["Metrics"]
        if "MetricStat" in m
    }


def test_throttles_of_the_traffic_functions_raise_an_alarm(template: dict[str, Any]) -> None:
    throttles = alarm(template, "FunctionThrottlesAlarm")
    assert {f["Ref"] for name, _, f in watched(throttles).values() if name == "Throttles"} == {
        "OnlineFunction",
        "RegistryFunction",
        "BatchFunction",
        "BatchStepsFunction",
    }
    (returned,) = [m for m in throttles["Metrics"] if m.get("ReturnData")]
    assert all(i in returned["Expression"] for i in watched(throttles))


def test_every_function_has_a_p99_duration_alarm(template: dict[str, Any]) -> None:
    functions = {k for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    alarmed = set()
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        properties = resource["Properties"]
        if properties.get("MetricName") == "Duration" and properties.get("ExtendedStatistic") == "p99":
            alarmed.add(properties["Dimensions"][0]["Value"]["Ref"])
        if "Metrics" in properties:
            alarmed |= {
                f["Ref"]
                for name, stat, f in watched(properties).values()
                if (name, stat) == ("Duration", "p99")
            }
    assert functions <= alarmed, f"no p99 Duration alarm for {sorted(functions - alarmed)}"
    # and the near-timeout alarm divides each Duration by its own function's Timeout
    near = alarm(template, "FunctionsNearTimeoutAlarm")
    (returned,) = [m for m in near["Metrics"] if m.get("ReturnData")]
    for metric_id, (_, _, function) in watched(near).items():
        timeout_ms = (
            template["Resources"][function["Ref"]]["Properties"].get("Timeout")
            or template["Globals"]["Function"]["Timeout"]
        )
        assert f"FILL({metric_id}, 0) / {timeout_ms * 1000}" in returned["Expression"], metric_id


def test_the_drift_alarm_watches_the_named_models_drifted_features(template: dict[str, Any]) -> None:
    resource = template["Resources"]["DriftAlarm"]
    assert resource["Condition"] == "HasDriftAlarm"
    assert template["Conditions"]["HasDriftAlarm"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DriftAlarmModel"}, ""]}]
    }
    drift = alarm(template, "DriftAlarm")
    assert (drift["Namespace"], drift["MetricName"], drift["Statistic"]) == (
        "aimass",
        "MonitorDriftedFeatures",
        "Maximum",
    )
    assert drift["Dimensions"] == [
        {"Name": "model", "Value": {"Ref": "DriftAlarmModel"}},
        {"Name": "service", "Value": "aimass"},
    ]
    assert (drift["Threshold"], drift["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert drift["TreatMissingData"] == "notBreaching"  # a day without a run judges nothing
