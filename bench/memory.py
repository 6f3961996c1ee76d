"""`python -m bench.memory [--writes N]`: the local stack's memory under registry writes, with moto's
own DynamoDB and with the stack's seam (aimass.local.dynamodb).

Each variant runs in a fresh process: the embedded AWS started as `aimass serve` starts it (without
the demos), one model version committed, then N registry writes through the real Registry over
HTTP (alias moves and quality policy changes, alternating), each one transaction that updates the
model's summary and adds an audit record. The process's resident memory (VmRSS) and the time per
write are read at five points. "moto's own" takes the seam out right after the start.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = {"own": "moto's own DynamoDB", "seam": "with aimass.local.dynamodb"}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run(variant: str, writes: int) -> list[dict[str, float]]:
    """The figures of one variant, in this process: at each point, writes done, RSS growth since
    the first write (MB), growth per write and time per write over the block before it."""
    from aimass import wiring
    from aimass.contracts.quality import QualityPolicy
    from aimass.contracts.registry import ModelVersion, Signature, TensorSpec
    from aimass.local import dynamodb
    from aimass.local.stack import LocalStack
    from gpu_endpoints.process import free_port

    with tempfile.TemporaryDirectory(prefix="aimass-bench-memory-") as state:
        stack = LocalStack(aws_port=free_port(), state_dir=Path(state))
        stack.start()
        try:
            if variant == "own":
                dynamodb.uninstall()
            registry = wiring.registry()
            spec = [TensorSpec(name="x", dtype="float32", shape=[None, 2])]
            registry.commit_version(
                ModelVersion(
                    name="m",
                    version=1,
                    artifact_uri="s3://aimass-local/models/m/1/model.onnx",
                    sha256="0" * 64,
                    size_bytes=1,
                    signature=Signature(inputs=spec, outputs=spec),
                )
            )
            policies = [QualityPolicy(violations="reject"), QualityPolicy()]
            start = last = rss_mb()
            clock = time.perf_counter()
            points = []
            for write in range(1, writes + 1):
                if write % 2:
                    registry.set_alias("m", "champion", 1, "bench")
                else:
                    registry.set_quality_policy("m", policies[write // 2 % 2], "bench")
                if write % (writes // 5) == 0:
                    now, block = rss_mb(), writes // 5
                    points.append(
                        {
                            "writes": write,
                            "rss_growth_mb": now - start,
                            "kb_per_write": (now - last) * 1024 / block,
                            "ms_per_write": (time.perf_counter() - clock) * 1000 / block,
                        }
                    )
                    last, clock = now, time.perf_counter()
            return points
        finally:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--writes", type=int, default=500, help="registry writes per variant")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one child's run
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run(args.variant, args.writes)))
        return
    results: dict[str, Any] = {}
    for variant in VARIANTS:
        child = [sys.executable, "-m", "bench.memory", "--writes", str(args.writes), "--variant", variant]
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.splitlines()[-1])
    print(
        f"### RSS growth and time per registry write, {args.writes} writes (each block of {args.writes // 5})"
    )
    print()
    print(
        "| writes | "
        + " | ".join(f"{label}: RSS growth / per write / ms a write" for label in VARIANTS.values())
        + " |"
    )
    print("| --- | --- | --- |")
    for own, seam in zip(results["own"], results["seam"], strict=True):
        cells = [
            f"{p['rss_growth_mb']:.1f} MB / {p['kb_per_write']:.0f} kB / {p['ms_per_write']:.1f}"
            for p in (own, seam)
        ]
        print(f"| {own['writes']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
