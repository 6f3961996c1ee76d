"""Which ONNX Runtime execution provider runs the models: TensorRT, then CUDA, then the CPU.

The preference is taken from what the installed onnxruntime offers (`onnxruntime-gpu` offers all
three, `onnxruntime` only the CPU); `AIMASS_GPU_PROVIDERS` replaces it. A provider that is offered
but cannot start (TensorRT libraries missing, no GPU visible) is dropped, and the next one is tried:
the log says which one each model got, and so does GET /stats.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from gpu_endpoints.settings import Settings, SettingsError

log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PREFERENCE = (TENSORRT, CUDA, CPU)
GPU_PROVIDERS = {TENSORRT, CUDA}

# Input name → (min, opt, max) shapes of the one TensorRT optimisation profile a model gets.
Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def choose(available: Sequence[str], wanted: Sequence[str] | None = None) -> list[str]:
    """The providers to try, best first: `wanted` as given (each must be available), or the
    preference order filtered by what is available."""
    if wanted:
        missing = [p for p in wanted if p not in available]
        if missing:
            raise SettingsError(
                f"AIMASS_GPU_PROVIDERS names {', '.join(missing)}, which this onnxruntime does not have "
                f"(it has {', '.join(available)})"
            )
        return list(wanted)
    chosen = [p for p in PREFERENCE if p in available]
    return chosen or [CPU]


def provider_options(provider: str, settings: Settings, profile: Profile | None = None) -> dict[str, Any]:
    if provider == TENSORRT:
        options: dict[str, Any] = {
            "device_id": settings.device_id,
            "trt_fp16_enable": settings.trt_fp16,
            # Engines are built on first use (seconds to minutes): keep them between starts.
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(settings.trt_cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(settings.trt_cache_dir),
        }
        if profile:
            # One profile from 1 row to a full batch, so that batches of any size reuse one engine.
            def shapes(index: int) -> str:
                return ",".join(f"{name}:{'x'.join(map(str, s[index]))}" for name, s in profile.items())

            options |= {
                "trt_profile_min_shapes": shapes(0),
                "trt_profile_opt_shapes": shapes(1),
                "trt_profile_max_shapes": shapes(2),
            }
        return options
    if provider == CUDA:
        return {"device_id": settings.device_id}
    return {}


def session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    spinning = "1" if settings.thread_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    return options


def new_session(
    path: Path, settings: Settings, profile: Profile | None = None, name: str = "model"
) -> tuple[ort.InferenceSession, list[str]]:
    """A session on the best provider that starts, and the providers it really has."""
    chain = choose(ort.get_available_providers(), settings.providers)
    if TENSORRT in chain:
        settings.trt_cache_dir.mkdir(parents=True, exist_ok=True)
    for start in range(len(chain)):
        providers = chain[start:]
        try:
            session = ort.InferenceSession(
                str(path),
                sess_options=session_options(settings),
                providers=[(p, provider_options(p, settings, profile)) for p in providers],
            )
        except Exception as error:  # ORT raises its own types for a provider that cannot start
            if len(providers) == 1:
                raise
            log.warning(
                "model %s: %s did not start (%s); trying %s",
                name,
                providers[0],
                str(error).splitlines()[0][:300] if str(error) else type(error).__name__,
                providers[1],
            )
            continue
        taken = list(session.get_providers())
        if taken[0] != chain[0]:
            log.warning("model %s: runs on %s (wanted %s)", name, taken[0], chain[0])
        log.info("model %s: execution providers %s", name, ", ".join(taken))
        return session, taken
    raise AssertionError("unreachable: the last provider either starts or raises")


def device_memory_mb(providers: Sequence[str], device_id: int = 0) -> float | None:
    """The memory models share: the GPU's total (nvidia-smi) when they run on one, else the host's
    available memory; None when neither can be read."""
    if GPU_PROVIDERS.intersection(providers):
        try:
            result = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=memory.total",
                    "--format=csv,noheader,nounits",
                    f"--id={device_id}",
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            return float(result.stdout.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            log.warning("could not read the GPU's memory from nvidia-smi")
            return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
