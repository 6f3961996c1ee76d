"""Settings from the environment, validated once per container."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

ENV_PREFIX = "AIMASS_"


class Settings(BaseModel):
    """Each field is read from AIMASS_<FIELD> (any case), or from the variable its validation alias
    names, and validated by pydantic (`from_environment`)."""

    model_config = ConfigDict(extra="ignore")

    stage: str = "local"
    region: str = Field(default="us-east-1", validation_alias="AWS_DEFAULT_REGION")
    bucket: str = "aimass-local"
    registry_table: str = "aimass-registry"
    # Only the local stack sets this; in AWS the SDK finds the regional endpoints itself.
    aws_endpoint_url: str | None = None

    max_payload_bytes: int = 6_000_000
    max_instances: int = 10_000
    model_cache_dir: Path = Path("/tmp/aimass-models")
    # Lambda gives a function ~1 vCPU per 1.8 GB: one intra-op thread avoids oversubscription.
    ort_intra_op_threads: int = 1
    ort_inter_op_threads: int = 1
    # Seconds a resolved alias/latest version is reused before asking the registry again.
    registry_ttl_s: float = 5.0
    # At most this many models (in the registry's order) are loaded into a SnapStart snapshot
    # (aimass.api.snapstart); the others load on their first request. Bounds init time and memory.
    snapshot_max_models: int = Field(default=20, ge=0)
    # While AWS cannot be reached, a model already read keeps serving from what was read, at most this
    # many seconds past its TTL (then 503 aws_unavailable).
    registry_max_stale_s: float = Field(default=300.0, ge=0.0)
    # An artifact refused for its sha256 is checked again after this long, doubling at each refusal up
    # to the most: bytes put right serve again without a restart.
    integrity_recheck_s: float = Field(default=30.0, gt=0)
    integrity_recheck_most_s: float = Field(default=600.0, gt=0)
    # Calls to AWS (the registry, the bucket): attempts in all (the SDK's standard retries) and
    # timeouts. A down AWS fails a request in under ~1 s when its connection is refused, ~3 s when
    # the connection times out, ~11 s when it accepts and never answers (4 attempts, 2 s and 10 s,
    # as before: ~8 s and ~41 s for the last two).
    aws_max_attempts: int = Field(default=2, ge=1)
    aws_connect_timeout_s: float = Field(default=1.0, gt=0)
    aws_read_timeout_s: float = Field(default=5.0, gt=0)
    # When set, every route but /health requires this value in the x-api-key header (local stack).
    api_key: str | None = None
    # When set, the registry's writes (aimass.api.scopes) require this value in x-api-key instead,
    # and the other routes take it as well as api_key (local stack).
    admin_key: str | None = None

    # GPU endpoints (docs/gpu.md). A model bigger than this is not loaded into the Lambda: registered
    # without a backend it goes to the stack's endpoint, and with none it is refused.
    lambda_max_model_bytes: int = Field(default=256 * 2**20, ge=1)
    # The stack's SageMaker endpoint (the template's GpuEndpoint; unset: none).
    sagemaker_endpoint: str | None = None
    # Calls to an endpoint: attempts in all (the SDK's standard retries of throttling, 5xx and
    # timeouts), timeouts per attempt, and the Retry-After given when it stays throttled or down.
    # Their worst case together (sagemaker_worst_case_s) must fit sagemaker_deadline_s, which leaves
    # the fallback and the rest of the request time within the function's 29 s (docs/gpu.md).
    sagemaker_max_attempts: int = Field(default=2, ge=1)
    sagemaker_connect_timeout_s: float = Field(default=1.0, gt=0)
    sagemaker_read_timeout_s: float = Field(default=6.0, gt=0)
    sagemaker_deadline_s: float = Field(default=20.0, gt=0, le=25.0)
    sagemaker_retry_after_s: int = Field(default=2, ge=1)
    # The endpoint's circuit breaker (aimass.serving.breaker): opened by this many failures in a row
    # (no answer, down, missing), it sends requests straight to the fallback for the cool-down.
    sagemaker_breaker_failures: int = Field(default=3, ge=1)
    sagemaker_breaker_cooldown_s: float = Field(default=15.0, gt=0)
    # Only the local stack sets this: SageMaker Runtime is its emulated endpoint, not the local AWS.
    sagemaker_runtime_url: str | None = None

    # Data capture (docs/deploy.md, "Data capture"): each answered online request, or this fraction of them
    # (drawn per request), is written to capture/<model>/... and its predictions get ids that ground
    # truth can later be sent for. Off: no capture, no prediction ids.
    capture_enabled: bool = True
    capture_sample_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    # The key personal features' values are tokenised with (docs/privacy.md): given here (hex or text;
    # the local stack makes one and keeps it in its state dir), else read from this Secrets Manager
    # secret (the template's PiiKeySecret), once per container, when the first token is made.
    pii_key: SecretStr | None = None
    pii_key_secret: str | None = None

    # S3 drop-to-predict: the table that makes a duplicate S3 delivery a no-op, the rows predicted
    # per call (at most max_instances), where files are staged while processed, and how many rows of
    # a file the drift report is computed on (a seeded uniform sample).
    idempotency_table: str = "aimass-idempotency"
    batch_chunk_rows: int = 2000
    batch_work_dir: Path = Path("/tmp/aimass-batch")
    batch_drift_sample_rows: int = 10_000
    # Files larger than this go through the batch state machine (a Distributed Map over parts of
    # batch_part_rows rows, at most batch_map_concurrency at once) instead of one invocation; its ARN
    # (unset: every file in one invocation).
    batch_map_threshold_bytes: int = 1 << 30
    batch_part_rows: int = 500_000
    batch_map_concurrency: int = 10
    batch_state_machine_arn: str | None = None

    # Retraining triggers (docs/pipeline.md, "Schedules and drift triggers"). A predicted file whose
    # drift report has more than this fraction of the checked features drifted asks for a retraining
    # run (an EventBridge event; 1 turns it off), at most once per model per cooldown (a claim in the
    # idempotency table). The schedules' group: unset is aimass-<stage>-retraining, as the template
    # names it.
    drift_retraining_fraction: float = Field(default=0.3, ge=0.0, le=1.0)
    drift_retraining_cooldown_hours: float = Field(default=24.0, gt=0.0)
    retraining_schedule_group: str | None = None

    # The retraining pipeline's state machine (statemachines/training_pipeline.asl.json).
    pipeline_state_machine_arn: str | None = None
    # The pipeline's SNS topic (the template's PipelineTopic): rollouts rolled back or promoted by their
    # schedule are told there too (docs/rollout.md). Unset: those notices are only logged.
    pipeline_topic_arn: str | None = None
    # `aimass serve` ticks every rollout under way this often (in AWS: the RolloutTickMinutes schedule).
    rollout_tick_s: float = Field(default=5.0, gt=0)
    # POST .../pipeline:run: one run of a model at a time (a start while the last one the API started
    # is running is a 409 naming it), and at least this many seconds between two starts of one
    # model's runs (a 429 with Retry-After; 0: no limit).
    pipeline_one_run_at_a_time: bool = True
    pipeline_min_run_interval_s: float = Field(default=30.0, ge=0.0)
    # Its SageMaker training branch (docs/pipeline.md, "Heavy training on SageMaker"): the training
    # image's URI (unset or empty: no SageMaker branch, every run trains on Lambda), the role the job
    # runs as, its instance, its volume and how long it may run.
    training_image: str | None = None
    training_role_arn: str | None = None
    training_instance_type: str = "ml.m5.xlarge"
    training_volume_gb: int = Field(default=30, ge=1)
    training_max_runtime_s: int = Field(default=14_400, ge=1)

    # Monitor runs (docs/monitoring.md): the rows a version's window needs to be judged, the most rows
    # a run reads (the newest hours first) on the schedule and through the API (which answers within
    # API Gateway's 30 s), the window the schedule judges, and the models it runs for (comma list;
    # empty: every registered model).
    monitor_min_rows: int = Field(default=100, ge=1)
    monitor_max_rows: int = Field(default=2_000_000, ge=1)
    monitor_api_max_rows: int = Field(default=200_000, ge=1)
    monitor_window_hours: float = Field(default=24.0, gt=0, le=744)
    monitor_models: str = ""

    # `:explain` (docs/explain.md): the most model rows one request may run (instances x coalitions x
    # background rows); the default fits API Gateway's 30 s with room (bench/RESULTS.md, explain).
    explain_max_rows: int = Field(default=2_000_000, ge=1)

    # Registry events (docs/events.md): the EventBridge bus they are published on (the template's
    # AimassEventBus, set on the publisher function; the local stack's aimass-local-events; unset:
    # not published), and whether a webhook may be http:// (or https://) to this machine's loopback,
    # which only the local stack allows (everywhere else: https to a public address only).
    event_bus: str | None = None
    allow_http_webhooks: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings `environ` (the process's environment by default) gives. Read here rather than
        with pydantic-settings, whose import cost the online function's cold start 20-50 ms of CPU
        for what this does (docs/design.md, "Cold start")."""
        variables = {
            name.upper(): value for name, value in (os.environ if environ is None else environ).items()
        }
        given = {}
        for field, info in cls.model_fields.items():
            # A field with an alias (the region) is read from that variable and given by that name
            alias = info.validation_alias if isinstance(info.validation_alias, str) else None
            variable = (alias or f"{ENV_PREFIX}{field}").upper()
            if variable in variables:
                given[alias or field] = variables[variable]
        return cls.model_validate(given)

    @model_validator(mode="after")
    def _endpoint_calls_fit_deadline(self) -> Settings:
        worst = sagemaker_worst_case_s(
            self.sagemaker_max_attempts, self.sagemaker_connect_timeout_s, self.sagemaker_read_timeout_s
        )
        if worst > self.sagemaker_deadline_s:
            raise ValueError(
                f"endpoint calls may take {worst:.3g} s ({self.sagemaker_max_attempts} attempts of "
                f"{self.sagemaker_connect_timeout_s:g} s to connect and {self.sagemaker_read_timeout_s:g} s "
                f"to read, and the retries' backoff), more than AIMASS_SAGEMAKER_DEADLINE_S "
                f"({self.sagemaker_deadline_s:g} s): lower the attempts or the timeouts"
            )
        return self


# botocore's standard retry mode waits before retry i (1-based) at most min(2 ** (i - 1), 20) s for a
# throttle, plus up to 5 s more when the answer names a Retry-After.
_BACKOFF_CAP_S = 20.0
_RETRY_AFTER_EXTRA_S = 5.0


def sagemaker_worst_case_s(attempts: int, connect_timeout_s: float, read_timeout_s: float) -> float:
    """The longest one InvokeEndpoint call can take, retries included: every attempt connecting and
    reading up to its timeouts, with the longest backoff before each retry. (A read timeout bounds
    each wait for bytes: an endpoint that trickles its answer could take longer; none of ours does.)"""
    backoff = sum(min(2.0 ** (i - 1), _BACKOFF_CAP_S) + _RETRY_AFTER_EXTRA_S for i in range(1, attempts))
    return attempts * (connect_timeout_s + read_timeout_s) + backoff


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_environment()
