"""The Lambda side of an app: Mangum in front, Powertools logging, metrics and tracing around it; for the
online function, its prediction routes answered without Mangum and FastAPI (aimass.api.direct)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aimass import wiring
from aimass.api.access import Access
from aimass.api.direct import DirectPath
from aimass.config import settings
from aimass.logs import function_logger
from aimass.serving.pipeline import Answered, Served
from aimass.serving.shadow import ShadowResult
from aimass.tracing import function_tracer, tracing_on

if TYPE_CHECKING:  # imported when a request needs them (feedback, the app), not in init
    from fastapi import FastAPI
    from mangum import Mangum

    from aimass.feedback import Recorded

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


logger = function_logger()
metrics = Metrics()
tracer = function_tracer()


def count_predictions(answered: Answered) -> None:
    # Lambda and API Gateway already count invocations and errors; what they cannot see is
    # which model and version answered, for how many instances, and how many looked wrong.
    metrics.add_dimension(name="model", value=answered.version.name)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=answered.instances)
    metrics.add_metric(name="Anomalies", unit=MetricUnit.Count, value=answered.anomalies)
    metrics.add_metric(name="QualityFlagged", unit=MetricUnit.Count, value=answered.flagged)
    if answered.stale:  # answered from the registry as last read: AWS could not be reached
        metrics.add_metric(name="StalePredictions", unit=MetricUnit.Count, value=answered.instances)
    if answered.variant is None:
        metrics.add_metadata(key="version", value=answered.version.version)
    else:
        # While a rollout is under way the same figures also go by model, version and variant: a
        # second dimension set on the invocation's one EMF line (the model's set is kept, so dashboards
        # and alarms on it still read them). A line of its own cost 27 µs a request; this costs 2.
        metrics.add_dimensions(
            model=answered.version.name, version=str(answered.version.version), variant=answered.variant
        )


def count_outcome(served: Served) -> None:
    # What count_predictions cannot see: requests a rule rejected (no answer, so no observer heard
    # them) and answers the fallback alias gave. Only these are added, to the invocation's one EMF
    # line (the `model` dimension count_predictions set, or set here: a rejected request had none).
    if served.outcome != "rejected" and not served.fell_back:
        return
    metrics.add_dimension(name="model", value=served.model)
    if served.outcome == "rejected":
        metrics.add_metric(name="RuleRejections", unit=MetricUnit.Count, value=1)
    if served.fell_back:
        metrics.add_metric(name="Fallbacks", unit=MetricUnit.Count, value=1)


# A shadow version's runs, with variant `shadow`: on the shadow worker's thread, so a metrics object of
# their own (never the request thread's). Agreement is RolloutShadowAgreed / RolloutShadowCompared.
shadow_metrics = EphemeralMetrics()


def count_shadow(result: ShadowResult) -> None:
    shadow_metrics.add_dimension(name="model", value=result.model)
    shadow_metrics.add_dimension(name="version", value=str(result.version))
    shadow_metrics.add_dimension(name="variant", value="shadow")
    shadow_metrics.add_metric(name="RolloutShadowRuns", unit=MetricUnit.Count, value=1)
    failed = result.outcome in ("error", "invalid")
    shadow_metrics.add_metric(name="RolloutShadowErrors", unit=MetricUnit.Count, value=int(failed))
    shadow_metrics.add_metric(name="RolloutShadowCompared", unit=MetricUnit.Count, value=result.compared)
    shadow_metrics.add_metric(name="RolloutShadowAgreed", unit=MetricUnit.Count, value=result.agreed)
    shadow_metrics.add_metric(
        name="RolloutShadowLatency", unit=MetricUnit.Milliseconds, value=result.seconds * 1000
    )
    shadow_metrics.flush_metrics()


def count_feedback(recorded: Recorded) -> None:
    # Live accuracy by metric math: FeedbackCorrect / FeedbackClassified (classifiers), and
    # FeedbackAbsoluteError / FeedbackScored (regressors: MAE), per model.
    metrics.add_dimension(name="model", value=recorded.model)
    metrics.add_metric(name="FeedbackLabels", unit=MetricUnit.Count, value=recorded.labelled)
    if recorded.classified:
        metrics.add_metric(name="FeedbackClassified", unit=MetricUnit.Count, value=recorded.classified)
        metrics.add_metric(name="FeedbackCorrect", unit=MetricUnit.Count, value=recorded.correct)
    if recorded.scored:
        metrics.add_metric(name="FeedbackScored", unit=MetricUnit.Count, value=recorded.scored)
        metrics.add_metric(name="FeedbackAbsoluteError", unit=MetricUnit.NoUnit, value=recorded.abs_error)


def add_observers(parts: list[str]) -> None:
    """The function's metrics, as observers of the request pipeline (once per process)."""
    if "online" in parts and count_predictions not in wiring.prediction_observers:
        wiring.prediction_observers.append(count_predictions)
    if "online" in parts and count_outcome not in wiring.request_observers:
        wiring.request_observers.append(count_outcome)
    if "online" in parts and count_shadow not in wiring.shadow_observers:
        wiring.shadow_observers.append(count_shadow)
    if "online" in parts and count_feedback not in wiring.feedback_observers:
        wiring.feedback_observers.append(count_feedback)
    if "registry" in parts:  # POST .../monitor:run's metrics, as EMF
        from aimass.monitoring import emf

        if emf.emit not in wiring.monitor_metrics:
            wiring.monitor_metrics.append(emf.emit)


def api_handler(parts: Iterable[str], snapstart: bool = False) -> LambdaHandler:
    """A handler for one of the apps; built once per container, at import time of the function.
    `snapstart`: register the SnapStart hooks (aimass.api.snapstart), which prime through the function's
    handler (GET /health, one prediction per model).

    With the `online` part, the prediction routes are answered by aimass.api.direct and the FastAPI app
    is built at the first request they do not take (or before a SnapStart snapshot); otherwise it is
    built here, in init."""
    parts = list(parts)
    s = settings()
    direct = DirectPath(Access.of(s.max_payload_bytes, s.api_key, s.admin_key)) if "online" in parts else None

    @cache
    def app() -> tuple[FastAPI, Mangum]:
        # Imported here: FastAPI, starlette, Mangum and the API's contracts were about 0.3 s of the online
        # function's cold start (bench/RESULTS.md, issue 19), and its predictions do not use them.
        from mangum import Mangum

        from aimass.api.app import build_routes, create_app
        from aimass.api.blocking import serve_one_at_a_time

        built = create_app(parts)
        serve_one_at_a_time(built)  # an invocation is one request: its blocking work needs no thread
        build_routes(built)  # when it is built (in init, or in a SnapStart snapshot), not in a request
        return built, Mangum(built, lifespan="off")

    def dispatch(event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The function's answer to an event, below Powertools: the direct path's, else the app's."""
        answered = None if direct is None else direct.answer(event)
        if answered is not None:
            return answered
        # Mangum and Powertools each declare a LambdaContext type; the runtime's object is both.
        return dict(app()[1](event, context))

    if direct is None:
        app()
    add_observers(parts)

    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        # The API Gateway request id, as `correlation_id_path=correlation_paths.API_GATEWAY_HTTP` would
        # set it: that evaluates a JMESPath expression per invocation (~20 µs), this is a lookup.
        logger.set_correlation_id(event.get("requestContext", {}).get("requestId"))
        try:
            return dispatch(event, context)
        finally:
            # A frozen execution environment would hold a capture until its next invocation, or lose
            # it: the invocation ends once its captures are written (docs/deploy.md, "Data capture").
            # A shadow's lines are not waited for: the caller never waits on a shadow (docs/rollout.md).
            wiring.flush_capture(shadows=False)
            wiring.flush_live(due_only=True)

    traced: LambdaHandler = tracer.capture_lambda_handler(handler, capture_response=False)
    function_handler: LambdaHandler = logger.inject_lambda_context(traced)
    if snapstart:
        from aimass.api import snapstart as hooks

        # Priming invokes the function's handler, so that the snapshot holds the app and the direct path
        # and a restore touches Powertools' path too; less the tracer's decorator while tracing is on:
        # X-Ray has no segment outside an invocation (it would log that it drops one). The metrics
        # observers hear the priming requests: the hook sends their line nowhere.
        primed = logger.inject_lambda_context(handler) if tracing_on() else function_handler
        hooks.register(primed, logger, (count_predictions, count_outcome))
    return function_handler
