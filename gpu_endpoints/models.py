"""The models an endpoint serves: found in the model directory, loaded within a memory budget.

Layouts of the model directory (SageMaker extracts model.tar.gz into /opt/ml/model):

- `model.onnx` (and an optional `config.json`) at the top: one model, named `model`
  (`AIMASS_GPU_DEFAULT_MODEL_NAME`); requests need no `X-Amzn-SageMaker-Target-Model`.
- `<name>/model.onnx` (and an optional `<name>/config.json`) per model: several models in one
  endpoint, chosen per request by `X-Amzn-SageMaker-Target-Model: <name>`.

Loading: at start every model found is loaded, in name order, while it fits in the memory budget;
the others are loaded on their first request. Loading a model that does not fit unloads the least
recently used models that have no request waiting or running (LRU); a model bigger than the whole
budget, or one that does not fit while the others are busy, is refused with 507. SageMaker's
multi-model API (POST /models ...) loads and unloads through the same store.

A model's footprint is its config.json's `memory_mb`, or its file size times
`AIMASS_GPU_MODEL_MEMORY_FACTOR` (weights plus room for activations).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from aimass.protocol import v2
from aimass.protocol.errors import BadRequest, Conflict, field_error, model_rejected
from aimass.protocol.tensors import Spec
from gpu_endpoints import providers
from gpu_endpoints.batching import Batcher, Outputs
from gpu_endpoints.errors import InsufficientMemory, ModelFailed, ModelNotFound
from gpu_endpoints.settings import BatchingConfig, Settings, SettingsError, parse_flag

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"
TARGET_MODEL = "X-Amzn-SageMaker-Target-Model"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class ModelConfig:
    """A model's config.json: batching settings (each defaults to the server's) and extras."""

    batching: BatchingConfig
    # Column names of a single 2-D input: V1 instances may then be objects keyed by them.
    features: tuple[str, ...] | None = None
    memory_mb: float | None = None


CONFIG_KEYS = {f.name for f in fields(BatchingConfig)} - {"enabled"} | {"batching", "features", "memory_mb"}


# The batching numbers a config.json may set: the type each becomes and the least it may be.
BATCHING_NUMBERS: tuple[tuple[str, type[int] | type[float], float], ...] = (
    ("max_batch_size", int, 1),
    ("max_queue_delay_ms", float, 0),
    ("instances", int, 1),
    ("max_queue_size", int, 1),
)


def read_config(folder: Path, defaults: BatchingConfig) -> ModelConfig:
    path = folder / CONFIG_FILE
    if not path.is_file():
        return ModelConfig(defaults)
    raw = _config_object(path)
    try:
        return ModelConfig(_batching(raw, defaults), _features(raw), _memory_mb(raw))
    except SettingsError as error:
        raise SettingsError(f"{path}: {error}") from None


def _config_object(path: Path) -> dict[str, Any]:
    """The file's JSON object, with no key the server does not know (a typo is not ignored)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SettingsError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected an object")
    unknown = sorted(set(raw) - CONFIG_KEYS)
    if unknown:
        raise SettingsError(
            f"{path}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(CONFIG_KEYS))})"
        )
    return raw


def _batching(raw: dict[str, Any], defaults: BatchingConfig) -> BatchingConfig:
    changes: dict[str, Any] = {}
    if "batching" in raw:
        value = raw["batching"]
        changes["enabled"] = value if isinstance(value, bool) else parse_flag("batching", str(value))
    for key, kind, minimum in BATCHING_NUMBERS:
        if key in raw:
            changes[key] = _batching_number(key, raw[key], kind, minimum)
    return _replace(defaults, **changes)


def _batching_number(key: str, value: Any, kind: type[int] | type[float], minimum: float) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise SettingsError(f"{key}: expected a number of at least {minimum}, got {value!r}")
    if kind is int and value != int(value):
        raise SettingsError(f"{key}: expected an integer, got {value!r}")
    return kind(value)


def _features(raw: dict[str, Any]) -> tuple[str, ...] | None:
    features = raw.get("features")
    if features is not None and (
        not isinstance(features, list) or not all(isinstance(f, str) and f for f in features)
    ):
        raise SettingsError(f"features: expected a list of names, got {features!r}")
    return tuple(features) if features else None


def _memory_mb(raw: dict[str, Any]) -> float | None:
    memory = raw.get("memory_mb")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int | float) or memory < 0):
        raise SettingsError(f"memory_mb: expected a number of MB, got {memory!r}")
    return None if memory is None else float(memory)


def _replace(config: BatchingConfig, **changes: Any) -> BatchingConfig:
    from dataclasses import replace

    return replace(config, **changes)


def find_model_file(folder: Path) -> Path:
    """The ONNX file of a model folder: model.onnx, or the folder's only *.onnx (also one level down,
    as a model.tar.gz with a top folder extracts)."""
    if folder.is_file() and folder.suffix == ".onnx":
        return folder
    if (folder / MODEL_FILE).is_file():
        return folder / MODEL_FILE
    for pattern in ("*.onnx", "*/*.onnx"):
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(p.name for p in found[:5])
            raise BadRequest(f"{folder} holds several ONNX files ({names}): name one {MODEL_FILE}")
    raise BadRequest(f"no {MODEL_FILE} in {folder}")


def discover(model_dir: Path, default_name: str = "model") -> dict[str, Path]:
    """Model name → its folder, for the layouts in this module's docstring."""
    found: dict[str, Path] = {}
    if not model_dir.is_dir():
        log.warning("model directory %s does not exist", model_dir)
        return found
    if (model_dir / MODEL_FILE).is_file():
        found[default_name] = model_dir
    for child in sorted(model_dir.iterdir()):
        if child.is_dir() and (child / MODEL_FILE).is_file():
            if not NAME_PATTERN.match(child.name):
                log.warning("skipping %s: a model's folder name must match %s", child, NAME_PATTERN.pattern)
                continue
            found.setdefault(child.name, child)
    return found


def target_name(header: str) -> str:
    """The model an `X-Amzn-SageMaker-Target-Model` value names: `digits`, `digits/`, `digits.tar.gz`
    and `models/digits.tar.gz` all name `digits`."""
    name = header.strip().rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz", ".tar", ".onnx"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Model:
    """A loaded model: its session, what it takes and gives, its batcher."""

    def __init__(
        self,
        name: str,
        path: Path,
        session: ort.InferenceSession,
        taken: list[str],
        config: ModelConfig,
        memory_mb: float,
    ) -> None:
        self.name = name
        self.path = path
        # Named in every answer (custom attribute `model-sha256`): the caller can tell which model
        # answered, as SageMaker passes no other header of the container's back.
        self.sha256 = file_sha256(path)
        self.session = session
        self.providers = taken
        self.config = config
        self.memory_mb = memory_mb
        self.inputs = [Spec.of_onnx(i.name, i.type, i.shape) for i in session.get_inputs()]
        self.outputs = [Spec.of_onnx(o.name, o.type, o.shape) for o in session.get_outputs()]
        self.output_names = [o.name for o in self.outputs]
        self.batchable, self.not_batchable_because = self._batchable()
        batching = config.batching
        if batching.enabled and not self.batchable:
            log.warning("model %s: batching off: %s", name, self.not_batchable_because)
            batching = _replace(batching, enabled=False)
        self.batcher = Batcher(self.run, batching, name)
        self.loaded_at = time.time()

    def _batchable(self) -> tuple[bool, str]:
        for info in [*self.inputs, *self.outputs]:
            if info.shape is not None and (not info.shape or info.shape[0] is not None):
                first = "no dimensions" if not info.shape else f"a fixed first dimension ({info.shape[0]})"
                return False, f"{info.name!r} has {first}"
        return True, ""

    def run(self, feeds: dict[str, np.ndarray]) -> Outputs:
        """The graph on these feeds (in a worker thread); ONNX Runtime's errors as the server's."""
        try:
            values = self.session.run(self.output_names, feeds)
        except (ort_errors.InvalidArgument, ort_errors.Fail) as error:
            raise model_rejected(_first_line(error)) from error
        except ort_errors.RuntimeException as error:
            text = str(error)
            if "running" in text and not any(
                w in text.lower() for w in ("memory", "cuda", "cudnn", "tensorrt")
            ):
                # A node refused what it was given (a shape the graph's metadata did not say).
                raise model_rejected(_first_line(error)) from error
            raise ModelFailed(f"the model failed: {_first_line(error)}") from error
        return dict(zip(self.output_names, values, strict=True))

    def warm_up(self, max_batch_size: int) -> None:
        """Run the graph once on zeros at 1 row and at a full batch (TensorRT builds its engine, CUDA
        its kernels), when every input's shape is known but the batch."""
        feeds_of = self._zeros_feeds()
        if feeds_of is None:
            return
        sizes = [1, max_batch_size] if self.batchable and max_batch_size > 1 else [1]
        for rows in sizes:
            try:
                self.session.run(self.output_names, feeds_of(rows))
            except Exception as error:  # a warm-up that fails only costs the first request its speed
                log.warning("model %s: warm-up with %d rows failed: %s", self.name, rows, _first_line(error))
                return

    def _zeros_feeds(self) -> Callable[[int], dict[str, np.ndarray]] | None:
        shapes: dict[str, tuple[tuple[int | None, ...], np.dtype[Any]]] = {}
        for info in self.inputs:
            dtype = info.numpy_dtype
            if info.shape is None or dtype is None or dtype == np.object_ or None in info.shape[1:]:
                return None
            shapes[info.name] = (info.shape, dtype)

        def feeds(rows: int) -> dict[str, np.ndarray]:
            return {
                name: np.zeros(tuple(rows if d is None else d for d in shape), dtype=dtype)
                for name, (shape, dtype) in shapes.items()
            }

        return feeds

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "providers": self.providers,
            "memory_mb": round(self.memory_mb, 1),
            "inputs": [v2.tensor_metadata(i) for i in self.inputs],
            "outputs": [v2.tensor_metadata(o) for o in self.outputs],
            "features": list(self.config.features) if self.config.features else None,
            "batchable": self.batchable,
            **({"not_batchable_because": self.not_batchable_because} if not self.batchable else {}),
            "batcher": self.batcher.stats(),
        }


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:500] if text else type(error).__name__


def trt_profile(inputs: list[Spec], max_batch_size: int) -> providers.Profile | None:
    """A TensorRT profile from 1 row to a full batch, when the batch is every input's only open dimension."""
    profile: providers.Profile = {}
    for info in inputs:
        if not info.shape or info.shape[0] is not None or None in info.shape[1:]:
            return None
        rest = tuple(d for d in info.shape[1:] if d is not None)
        profile[info.name] = ((1, *rest), (max_batch_size, *rest), (max_batch_size, *rest))
    return profile or None


def graph_inputs(path: Path) -> list[Spec]:
    """A model's inputs, read by an unoptimised CPU session (for the TensorRT profile, which must be
    given before the TensorRT session exists)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    reader = ort.InferenceSession(str(path), sess_options=options, providers=[providers.CPU])
    return [Spec.of_onnx(i.name, i.type, i.shape) for i in reader.get_inputs()]


class ModelStore:
    """The models of this endpoint, loaded and not, with the memory they take."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.available: dict[str, Path] = discover(settings.model_dir, settings.default_model_name)
        self.loaded: OrderedDict[str, Model] = OrderedDict()
        self.ready = False
        self.startup_error: str | None = None
        self.evictions = 0
        self._lock = asyncio.Lock()
        chain = providers.choose(ort.get_available_providers(), settings.providers)
        self.budget_mb = settings.memory_budget_mb
        if self.budget_mb is None:
            device = providers.device_memory_mb(chain, settings.device_id)
            self.budget_mb = None if device is None else 0.8 * device
        log.info(
            "models found in %s: %s; memory budget %s MB; providers to try: %s",
            settings.model_dir,
            ", ".join(self.available) or "none",
            "unlimited" if self.budget_mb is None else f"{self.budget_mb:,.0f}",
            ", ".join(chain),
        )

    @property
    def used_mb(self) -> float:
        return sum(model.memory_mb for model in self.loaded.values())

    async def start(self) -> None:
        """Load every model found while it fits (no eviction at start); then /ping says ready."""
        try:
            for name, folder in self.available.items():
                need = self._footprint_mb(folder, read_config(folder, self.settings.batching))
                if self.budget_mb is not None and self.used_mb + need > self.budget_mb:
                    log.info("model %s (%.0f MB) waits for its first request: the budget is full", name, need)
                    continue
                await self.load(name, folder)
        except Exception as error:
            self.startup_error = f"{type(error).__name__}: {_first_line(error)}"
            log.exception("loading the models failed")
            return
        self.ready = True

    async def get(self, name: str) -> Model:
        """A model by name, loaded now if it was not; 404 for a name this endpoint does not know."""
        model = self.loaded.get(name)
        if model is not None:
            self.loaded.move_to_end(name)
            return model
        folder = self.available.get(name)
        if folder is None:
            known = ", ".join(sorted(self.known())) or "none"
            raise ModelNotFound(
                f"no model {name!r} in this endpoint",
                [field_error(["headers", TARGET_MODEL], f"known models: {known}", "unknown_model")],
            )
        return await self.load(name, folder)

    def known(self) -> set[str]:
        return set(self.available) | set(self.loaded)

    def only(self) -> str | None:
        """The model a request without a target means: the endpoint's only one."""
        names = self.known()
        return next(iter(names)) if len(names) == 1 else None

    async def load(self, name: str, folder: Path, explicit: bool = False) -> Model:
        """Load `name` from `folder` (explicit: SageMaker's POST /models, 409 when already loaded)."""
        async with self._lock:
            if name in self.loaded:
                if explicit:
                    raise Conflict(f"model {name!r} is already loaded")
                return self.loaded[name]
            path = find_model_file(folder)
            config_dir = path.parent if (path.parent / CONFIG_FILE).is_file() else folder
            config = read_config(config_dir, self.settings.batching)
            need = self._footprint_mb(folder, config)
            await self._make_room(name, need)
            model = await asyncio.to_thread(self._build, name, path, config, need)
            self.loaded[name] = model
            self.available.setdefault(name, folder)
            return model

    def _footprint_mb(self, folder: Path, config: ModelConfig) -> float:
        if config.memory_mb is not None:
            return config.memory_mb
        return find_model_file(folder).stat().st_size / 2**20 * self.settings.model_memory_factor

    async def _make_room(self, name: str, need: float) -> None:
        budget = self.budget_mb
        if budget is None or self.used_mb + need <= budget:
            return
        if need > budget:
            raise InsufficientMemory(
                f"model {name!r} needs {need:,.0f} MB; the memory budget is {budget:,.0f} MB",
            )
        for victim in list(self.loaded.values()):  # least recently used first
            if self.used_mb + need <= budget:
                break
            if victim.batcher.outstanding == 0:
                log.info("unloading model %s (least recently used) to make room for %s", victim.name, name)
                await self._unload(victim.name)
                self.evictions += 1
        if self.used_mb + need > budget:
            busy = [m.name for m in self.loaded.values()]
            raise InsufficientMemory(
                f"model {name!r} needs {need:,.0f} MB and only {budget - self.used_mb:,.0f} MB of the "
                f"{budget:,.0f} MB budget are free; the loaded models are busy: {', '.join(busy)}",
            )

    def _build(self, name: str, path: Path, config: ModelConfig, memory_mb: float) -> Model:
        started = time.perf_counter()
        profile = (
            trt_profile(graph_inputs(path), config.batching.max_batch_size) if self._trt_wanted() else None
        )
        session, taken = providers.new_session(path, self.settings, profile, name)
        model = Model(name, path, session, taken, config, memory_mb)
        if self.settings.warmup:
            model.warm_up(model.batcher.config.max_batch_size)
        log.info(
            "model %s loaded from %s in %.2f s on %s (%.0f MB; batching %s)",
            name,
            path,
            time.perf_counter() - started,
            taken[0],
            memory_mb,
            "on" if model.batcher.config.enabled else "off",
        )
        return model

    def _trt_wanted(self) -> bool:
        return providers.TENSORRT in providers.choose(ort.get_available_providers(), self.settings.providers)

    async def unload(self, name: str) -> None:
        async with self._lock:
            if name not in self.loaded:
                raise ModelNotFound(f"model {name!r} is not loaded")
            await self._unload(name)

    async def _unload(self, name: str) -> None:
        model = self.loaded.pop(name)
        await model.batcher.close()
        log.info("model %s unloaded", name)

    async def close(self) -> None:
        for name in list(self.loaded):
            await self._unload(name)

    async def refresh(self) -> None:
        """Bring what describe() says up to date: here it always is (a front end's store asks its
        model process: frontends.RemoteStore)."""

    def describe(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "memory_budget_mb": None if self.budget_mb is None else round(self.budget_mb, 1),
            "memory_used_mb": round(self.used_mb, 1),
            "evictions": self.evictions,
            "available": sorted(self.available),
            "models": {name: model.describe() for name, model in self.loaded.items()},
        }
