"""The embedded local stack: moto in-process as AWS, resources from template.yaml, demo models."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimass import aws, wiring
from aimass.config import settings
from aimass.local import demo as demos
from aimass.local import dynamodb, notifications, persistence, statemachines, triggers
from aimass.local.events import AuditFeed, create_bus
from aimass.local.resources import create_bucket, create_table, create_topic
from aimass.local.ticker import Ticker

log = logging.getLogger(__name__)

# The local AWS takes any credentials; fixed fake ones make sure no real ones are ever sent.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


LAMBDA_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "aimass",
    "POWERTOOLS_METRICS_NAMESPACE": "aimass",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def pii_key(state_dir: Path) -> str:
    """The local stack's key for tokenising personal data (hex), made once and kept in state_dir,
    readable by its owner only."""
    path = state_dir / "pii.key"
    if not path.exists():
        import secrets

        state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


@dataclass
class LocalStack:
    aws_port: int = 5000
    host: str = "127.0.0.1"
    state_dir: Path = field(default_factory=lambda: Path(".aimass"))
    bucket: str = "aimass-local"
    table: str = "aimass-registry"
    idempotency_table: str = "aimass-idempotency"
    pipeline_topic: str = "aimass-pipeline"
    # The registry events' bus (the template's AimassEventBus): aimass.local.events publishes there
    # and delivers the webhooks.
    event_bus: str = "aimass-local-events"
    # The template's RetrainingModels here: the demo with training data gets a retraining schedule.
    retraining_models: str = "breast-cancer"
    # The emulated SageMaker endpoint's name (the template's is aimass-<stage>-gpu).
    gpu_endpoint: str = "aimass-local-gpu"
    # Keep the tables' items and the bucket's objects under state_dir/state across restarts
    # (aimass.local.persistence): saved every save_interval seconds and at stop, put back at start.
    persist: bool = False
    # Drop the saved state before starting: the stack starts empty.
    fresh: bool = False
    save_interval: float = 30.0

    def __post_init__(self) -> None:
        self._server: Any = None
        self._aws_stopped = False
        self._endpoint = ExitStack()
        self.pipeline_topic_arn = ""
        self.gpu_endpoint_url = ""
        self.restored = False
        self._saver: persistence.Saver | None = None
        self._ticker: Ticker | None = None
        self._feed: AuditFeed | None = None

    @property
    def aws_endpoint(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        statemachines.configure()  # moto runs ASL, and no Lambda in Docker (before any function exists)
        dynamodb.install()  # writes leave no copies of the tables behind (aimass.local.dynamodb)
        self._listen()
        os.environ.update(
            {
                **FAKE_CREDENTIALS,
                "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                "MOTO_PORT": str(self.aws_port),
                "AIMASS_AWS_ENDPOINT_URL": self.aws_endpoint,
                "AIMASS_BUCKET": self.bucket,
                "AIMASS_REGISTRY_TABLE": self.table,
                "AIMASS_IDEMPOTENCY_TABLE": self.idempotency_table,
                "AIMASS_MODEL_CACHE_DIR": str((self.state_dir / "model-cache").resolve()),
                "AIMASS_EVENT_BUS": self.event_bus,
            }
        )
        # Personal features are tokenised under this stack's own key, kept beside its state: the same
        # value gives the same token across restarts (aimass.privacy).
        os.environ.setdefault("AIMASS_PII_KEY", pii_key(self.state_dir))
        # Webhooks to this machine (a receiver under development) may be plain http here
        os.environ.setdefault("AIMASS_ALLOW_HTTP_WEBHOOKS", "true")
        # What the template's Globals give every function (handlers run in this process); no X-Ray
        # daemon runs here to take traces.
        for name, value in LAMBDA_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        os.environ.pop("AWS_PROFILE", None)
        settings.cache_clear()
        aws.reset()
        wiring.reset()
        create_table(self.table)
        create_table(self.idempotency_table, "IdempotencyTable")
        create_bucket(self.bucket)
        self._restore()  # before the S3 notifications: putting the objects back runs no handler
        self.pipeline_topic_arn = create_topic(self.pipeline_topic)
        # What the template gives RolloutFunction: rollouts rolled back or promoted are told there.
        os.environ["AIMASS_PIPELINE_TOPIC_ARN"] = self.pipeline_topic_arn
        settings.cache_clear()
        notifications.install(self.bucket)  # S3 events in the template run the real handlers
        names = {
            "ArtifactsBucket": self.bucket,
            "RegistryTable": self.table,
            "IdempotencyTable": self.idempotency_table,
            "PipelineTopic": self.pipeline_topic_arn,
        }
        # The template's state machines, their Lambda tasks running the real handlers.
        statemachines.install(names)
        # Its retraining schedules (run on demand: aimass.cli.pipeline_schedules) and drift rule.
        triggers.install(names, {"Stage": "local", "RetrainingModels": self.retraining_models})
        # Registry events on the local bus and to the webhooks (after the restore: a kept state's
        # changes are not sent again)
        create_bus(self.event_bus)
        self._feed = AuditFeed(self.table, self.event_bus)
        self._feed.start()
        if self.persist:
            self._saver = persistence.Saver(self.state_dir, self.bucket, self._tables, self.save_interval)
            self._saver.start()

    def _listen(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=self.host, port=self.aws_port, verbose=False)
        self._server.start()

    def stop_aws(self) -> None:
        """Take the embedded AWS off its port: connections to it are refused, as from an AWS that is
        down, until start_aws. Its tables and objects stay in this process. A debug aid (aimass serve
        does this on SIGUSR1): what the API does while AWS cannot be reached."""
        if self._server is None or self._aws_stopped:
            return
        self._server.stop()
        # moto's stop leaves the socket listening (connections would hang, not be refused): close it.
        self._server._server.server_close()
        self._aws_stopped = True
        log.warning("embedded AWS stopped on %s (SIGUSR2 starts it again)", self.aws_endpoint)

    def start_aws(self) -> None:
        """Serve the embedded AWS on its port again, with what it held (aimass serve: SIGUSR2)."""
        if not self._aws_stopped:
            return
        self._listen()
        self._aws_stopped = False
        log.warning("embedded AWS serving again on %s", self.aws_endpoint)

    @property
    def _tables(self) -> list[str]:
        return [self.table, self.idempotency_table]

    def _restore(self) -> None:
        if self.fresh:
            persistence.forget(self.state_dir)
        if self.persist:
            self.restored = persistence.restore(self.state_dir, self.bucket, self._tables)

    def serve_endpoint(self, model: bytes) -> str:
        """The inference server (gpu_endpoints) on this machine's CPU as the stack's SageMaker endpoint,
        serving `model`, with SageMaker Runtime's InvokeEndpoint in front: the API's sagemaker-runtime
        client reaches it as it reaches a real endpoint. Its URL."""
        from gpu_endpoints.process import supervised

        model_dir = self.state_dir / "endpoint" / self.gpu_endpoint
        model_dir.mkdir(parents=True, exist_ok=True)
        path = model_dir / "model.onnx"
        if not path.exists() or path.read_bytes() != model:
            path.write_bytes(model)
        env = {"AIMASS_GPU_RUNTIME_ENDPOINT": self.gpu_endpoint, "AIMASS_GPU_PRODUCTION_VARIANT": "primary"}
        # Restarted when it dies, reported when it hangs: the API's breaker for it opens at once
        # (its versions are not ready, their requests fall back) and closes when it answers again.
        server = self._endpoint.enter_context(
            supervised(
                model_dir,
                env,
                on_down=lambda reason: wiring.breakers().of(self.gpu_endpoint).trip(reason),
                on_up=lambda: wiring.breakers().of(self.gpu_endpoint).succeeded(),
                pid_file=self.endpoint_pid_file,
                name=f"emulated endpoint {self.gpu_endpoint}",
            )
        )
        self.gpu_endpoint_url = server.url
        os.environ.update(
            {"AIMASS_SAGEMAKER_RUNTIME_URL": server.url, "AIMASS_SAGEMAKER_ENDPOINT": self.gpu_endpoint}
        )
        settings.cache_clear()
        aws.reset()
        wiring.reset()
        return server.url

    @property
    def endpoint_pid_file(self) -> Path:
        """Where the emulated endpoint's pid is, while it runs (a new one after each restart)."""
        return self.state_dir / "endpoint" / f"{self.gpu_endpoint}.pid"

    def tick_rollouts(self, every_s: float) -> None:
        """Tick every rollout under way every `every_s` seconds until stop (aimass.local.ticker)."""
        self._ticker = Ticker(every_s).start()

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.start_aws()  # the last save needs it
        if self._feed is not None:
            self._feed.stop()
            self._feed = None
        if self._saver is not None:
            self._saver.stop()  # the last save, while the embedded AWS still runs
            self._saver = None
        self._endpoint.close()
        triggers.uninstall()
        notifications.uninstall()
        statemachines.uninstall()
        if self._server is not None:
            self._server.stop()
            self._server = None
        dynamodb.uninstall()

    def register_demos(self, progress: Callable[[str], None] = lambda _: None) -> list[str]:
        """Train (first start only) and register each demo model, pointing `champion` at it; a demo
        the registry has already (a kept state) is left as it is, its versions and aliases too."""
        names = []
        registered = {model.name for model in wiring.registry().list_models()}
        for name in demos.BUILDERS:
            names.append(name)
            if name in registered:
                continue
            progress(f"preparing demo model {name}")
            demos.register(
                wiring.registry(), self.bucket, demos.load_or_train(name, self.state_dir), "aimass-local"
            )
        progress(f"starting the emulated SageMaker endpoint {self.gpu_endpoint}")
        self.serve_endpoint(demos.gpu_network(self.state_dir))
        if demos.GPU_DEMO not in registered:
            progress(f"registering {demos.GPU_DEMO}, served by {self.gpu_endpoint}")
            light = demos.load_or_train("digits", self.state_dir)
            demos.register_gpu_demo(
                wiring.registry(),
                self.bucket,
                light,
                demos.gpu_network(self.state_dir),
                self.gpu_endpoint,
                "aimass-local",
            )
        names.append(demos.GPU_DEMO)
        # Training data for the retraining pipeline (docs/pipeline.md): the tabular demo's dataset (a
        # kept state has it, or the user's own under that key)
        if "breast-cancer" not in registered:
            body = demos.training_csv()
            aws.client("s3").put_object(
                Bucket=self.bucket, Key=demos.TRAINING_DATA_KEY, Body=body, ContentType="text/csv"
            )
        return names
