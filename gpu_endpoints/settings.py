"""The server's settings: every environment variable it reads is read here, once, at start.

SageMaker's own variables come first (`SAGEMAKER_BIND_TO_PORT`, `SAGEMAKER_MODEL_SERVER_WORKERS`,
`SAGEMAKER_MULTI_MODEL`); aimass's are `AIMASS_GPU_*`. README.md lists them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# SageMaker's model directory: the model artifact (model.tar.gz) is extracted here.
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
PREFIX = "AIMASS_GPU_"


class SettingsError(ValueError):
    """An environment variable (or config.json value) that cannot be used, named with the reason."""


@dataclass(frozen=True)
class BatchingConfig:
    """How one model's requests are batched; the server's defaults, or a model's config.json."""

    enabled: bool = True
    # Rows per batch at most (a request bigger than this runs alone, whole).
    max_batch_size: int = 32
    # How long the first request of a batch may wait for others to join it.
    max_queue_delay_ms: float = 5.0
    # Batches (or lone requests) of this model that run at the same time.
    instances: int = 1
    # Requests waiting or running for this model at most; beyond, 503 with Retry-After.
    max_queue_size: int = 512


@dataclass(frozen=True)
class Settings:
    model_dir: Path = SAGEMAKER_MODEL_DIR
    # The name of a model given as model_dir/model.onnx (the single-model layout).
    default_model_name: str = "model"
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    # Front-end processes feeding one model process (frontends.py); 0: one process does it all.
    frontends: int = 0
    # SageMaker multi-model endpoint: /ping answers 200 with no model loaded (models come by POST /models).
    multi_model: bool = False
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    max_body_bytes: int = 25 * 1024 * 1024
    # None: 80 % of the device's memory (GPU: nvidia-smi; CPU: MemAvailable).
    memory_budget_mb: float | None = None
    # A model's footprint, unless its config.json says `memory_mb`: this times its file size.
    model_memory_factor: float = 2.0
    # None: the best that ONNX Runtime has, TensorRT → CUDA → CPU.
    providers: tuple[str, ...] | None = None
    device_id: int = 0
    # 0: ONNX Runtime's default (one thread per physical core).
    intra_op_threads: int = 0
    # Let ONNX Runtime's intra-op threads spin between runs: lower latency for a dedicated core, but
    # the spinning takes the CPU that the event loop needs to take requests in.
    thread_spinning: bool = False
    trt_fp16: bool = False
    trt_cache_dir: Path = Path("/tmp/aimass-trt-cache")
    # Run each model once at load (batch of 1 and of max_batch_size) when its input shapes are known.
    warmup: bool = True
    # Echoed as X-Amzn-Invoked-Production-Variant when set.
    production_variant: str | None = None
    # Also answer SageMaker Runtime's InvokeEndpoint for this endpoint name, as SageMaker fronts the
    # container (runtime.py): the local stack's emulated endpoint. Never set in a real endpoint.
    runtime_endpoint: str | None = None
    log_level: str = "info"
    access_log: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = Env(os.environ if environ is None else environ)
        defaults = cls()
        batching = BatchingConfig(
            enabled=env.flag("BATCHING", defaults.batching.enabled),
            max_batch_size=env.integer("MAX_BATCH_SIZE", defaults.batching.max_batch_size, minimum=1),
            max_queue_delay_ms=env.number("MAX_QUEUE_DELAY_MS", defaults.batching.max_queue_delay_ms),
            instances=env.integer("INSTANCES", defaults.batching.instances, minimum=1),
            max_queue_size=env.integer("MAX_QUEUE_SIZE", defaults.batching.max_queue_size, minimum=1),
        )
        providers = env.text("PROVIDERS")
        settings = cls(
            model_dir=Path(env.text("MODEL_DIR") or defaults.model_dir),
            default_model_name=env.text("DEFAULT_MODEL_NAME") or defaults.default_model_name,
            host=env.text("HOST") or defaults.host,
            port=env.integer("SAGEMAKER_BIND_TO_PORT", defaults.port, minimum=0, prefixed=False),
            workers=env.integer(
                "SAGEMAKER_MODEL_SERVER_WORKERS", defaults.workers, minimum=1, prefixed=False
            ),
            frontends=env.integer("FRONTENDS", defaults.frontends, minimum=0),
            multi_model=env.flag("SAGEMAKER_MULTI_MODEL", defaults.multi_model, prefixed=False),
            batching=batching,
            max_body_bytes=int(env.number("MAX_BODY_MB", defaults.max_body_bytes / 2**20) * 2**20),
            memory_budget_mb=env.optional_number("MEMORY_BUDGET_MB"),
            model_memory_factor=env.number("MODEL_MEMORY_FACTOR", defaults.model_memory_factor),
            providers=tuple(p.strip() for p in providers.split(",") if p.strip()) if providers else None,
            device_id=env.integer("DEVICE_ID", defaults.device_id, minimum=0),
            intra_op_threads=env.integer("INTRA_OP_THREADS", defaults.intra_op_threads, minimum=0),
            thread_spinning=env.flag("THREAD_SPINNING", defaults.thread_spinning),
            trt_fp16=env.flag("TRT_FP16", defaults.trt_fp16),
            trt_cache_dir=Path(env.text("TRT_CACHE_DIR") or defaults.trt_cache_dir),
            warmup=env.flag("WARMUP", defaults.warmup),
            production_variant=env.text("PRODUCTION_VARIANT"),
            runtime_endpoint=env.text("RUNTIME_ENDPOINT"),
            log_level=(env.text("LOG_LEVEL") or defaults.log_level).lower(),
            access_log=env.flag("ACCESS_LOG", defaults.access_log),
        )
        settings = settings.replace(**overrides) if overrides else settings
        if settings.frontends and settings.workers > 1:
            raise SettingsError(
                f"{PREFIX}FRONTENDS={settings.frontends} and "
                f"SAGEMAKER_MODEL_SERVER_WORKERS={settings.workers}: front ends share one model process, "
                "workers each load their own; choose one"
            )
        return settings

    def replace(self, **changes: object) -> Settings:
        from dataclasses import replace

        return replace(self, **changes)  # type: ignore[arg-type]

    def as_env(self) -> dict[str, str]:
        """The variables that give these settings to another process (uvicorn's worker processes)."""
        env = {
            f"{PREFIX}MODEL_DIR": str(self.model_dir),
            f"{PREFIX}DEFAULT_MODEL_NAME": self.default_model_name,
            f"{PREFIX}HOST": self.host,
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(self.workers),
            f"{PREFIX}FRONTENDS": str(self.frontends),
            "SAGEMAKER_MULTI_MODEL": str(self.multi_model).lower(),
            f"{PREFIX}BATCHING": str(self.batching.enabled).lower(),
            f"{PREFIX}MAX_BATCH_SIZE": str(self.batching.max_batch_size),
            f"{PREFIX}MAX_QUEUE_DELAY_MS": str(self.batching.max_queue_delay_ms),
            f"{PREFIX}INSTANCES": str(self.batching.instances),
            f"{PREFIX}MAX_QUEUE_SIZE": str(self.batching.max_queue_size),
            f"{PREFIX}MAX_BODY_MB": str(self.max_body_bytes / 2**20),
            f"{PREFIX}MODEL_MEMORY_FACTOR": str(self.model_memory_factor),
            f"{PREFIX}DEVICE_ID": str(self.device_id),
            f"{PREFIX}INTRA_OP_THREADS": str(self.intra_op_threads),
            f"{PREFIX}THREAD_SPINNING": str(self.thread_spinning).lower(),
            f"{PREFIX}TRT_FP16": str(self.trt_fp16).lower(),
            f"{PREFIX}TRT_CACHE_DIR": str(self.trt_cache_dir),
            f"{PREFIX}WARMUP": str(self.warmup).lower(),
            f"{PREFIX}LOG_LEVEL": self.log_level,
            f"{PREFIX}ACCESS_LOG": str(self.access_log).lower(),
        }
        if self.memory_budget_mb is not None:
            env[f"{PREFIX}MEMORY_BUDGET_MB"] = str(self.memory_budget_mb)
        if self.providers is not None:
            env[f"{PREFIX}PROVIDERS"] = ",".join(self.providers)
        if self.production_variant:
            env[f"{PREFIX}PRODUCTION_VARIANT"] = self.production_variant
        if self.runtime_endpoint:
            env[f"{PREFIX}RUNTIME_ENDPOINT"] = self.runtime_endpoint
        return env


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name}={value!r}: expected one of on/off, true/false, 1/0")


class Env:
    """Typed reads of the environment, each failure naming the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def _raw(self, name: str, prefixed: bool) -> tuple[str, str | None]:
        key = f"{PREFIX}{name}" if prefixed else name
        value = self.environ.get(key)
        return key, (value if value is not None and value.strip() != "" else None)

    def text(self, name: str) -> str | None:
        return self._raw(name, True)[1]

    def flag(self, name: str, default: bool, prefixed: bool = True) -> bool:
        key, value = self._raw(name, prefixed)
        return default if value is None else parse_flag(key, value)

    def integer(self, name: str, default: int, minimum: int = 0, prefixed: bool = True) -> int:
        key, value = self._raw(name, prefixed)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{key}={value!r}: expected an integer") from None
        if number < minimum:
            raise SettingsError(f"{key}={value!r}: expected at least {minimum}")
        return number

    def number(self, name: str, default: float) -> float:
        value = self.optional_number(name)
        return default if value is None else value

    def optional_number(self, name: str) -> float | None:
        key, value = self._raw(name, True)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(f"{key}={value!r}: expected a number") from None
        if not number >= 0 or number == float("inf"):
            raise SettingsError(f"{key}={value!r}: expected a finite number of at least 0")
        return number
