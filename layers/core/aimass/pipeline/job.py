"""The SageMaker training job of the retraining pipeline: what the training image
(functions/pipeline/training.Dockerfile) runs when SageMaker starts it as `docker run IMAGE train`.

It follows SageMaker's training container contract, under a root that is /opt/ml in SageMaker:
- `input/config/hyperparameters.json`: the run's TrainingConfig, each field JSON-encoded (as the
  SageMaker Python SDK encodes a framework's hyperparameters), plus `task` (`classification` or
  `regression`); `hyperparameters` writes them, `parse_hyperparameters` reads them back;
- `input/data/train/` and `input/data/holdout/`: the channels PrepareTraining wrote, CSV files with a
  header of the feature names and the label (a class index, or a value), rows as numbers
  (`channel_csv`): the training split of the snapshot, and its held-out split;
- `model/`: what it writes, which SageMaker packs into `model.tar.gz` under the job's output path:
  `model.onnx`, `holdout_outputs.npy` (the estimator's answers on the held-out rows, which
  CollectModel checks the ONNX model against again) and `metadata.json` (what was trained);
- `output/failure`: on any error, the reason (SageMaker shows it as the job's FailureReason); the
  process then exits 1, and the job fails.

It trains with aimass.pipeline.train.fit, the Lambda trainer's own function, so the two branches
train the same model from the same rows.

    python -m aimass.pipeline.job train [--root DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import sys
import traceback
from dataclasses import dataclass
from importlib import metadata as distributions
from pathlib import Path
from typing import Any

import numpy as np

from aimass.pipeline.config import TrainingConfig

logger = logging.getLogger("aimass.pipeline.job")

TASK = "task"  # the one hyperparameter that is not a TrainingConfig field
TASKS = ("classification", "regression")
CHANNELS = ("train", "holdout")
MODEL_FILE = "model.onnx"
OUTPUTS_FILE = "holdout_outputs.npy"
METADATA_FILE = "metadata.json"
# SageMaker's limits on a hyperparameter's value, and on the FailureReason it reads from output/failure.
MAX_HYPERPARAMETER_CHARS = 2500
MAX_FAILURE_CHARS = 1024


def hyperparameters(config: TrainingConfig, task: str) -> dict[str, str]:
    """The run's settings as SageMaker hyperparameters (string to string), each value JSON."""
    if task not in TASKS:
        raise ValueError(f"task {task!r}: expected one of {TASKS}")
    encoded = {name: json.dumps(value) for name, value in {**config.model_dump(), TASK: task}.items()}
    for name, text in encoded.items():
        if len(text) > MAX_HYPERPARAMETER_CHARS:
            raise ValueError(
                f"the setting {name} is {len(text)} characters as a SageMaker hyperparameter, "
                f"which takes at most {MAX_HYPERPARAMETER_CHARS}"
            )
    return encoded


def parse_hyperparameters(raw: dict[str, str]) -> tuple[TrainingConfig, str]:
    """The TrainingConfig and task back from the hyperparameters; raises on an unknown or bad one
    (pydantic's ValidationError names it). A value that is not JSON is taken as the text it is, so
    that one typed by hand (`estimator=random_forest`) reads as meant."""
    values = {name: _decoded(text) for name, text in raw.items()}
    task = values.pop(TASK, None)
    if task not in TASKS:
        raise ValueError(f"hyperparameter {TASK}={task!r}: expected one of {TASKS}")
    return TrainingConfig.model_validate(values), str(task)


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def channel_csv(features: list[str], label: str, x: np.ndarray, y: np.ndarray) -> bytes:
    """A channel file: a header (the features, then the label), then one row of numbers per row, each
    float written so that it reads back as the same float64."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([*features, label])
    body = io.BytesIO()
    if len(x):
        np.savetxt(body, np.column_stack([x, y]).astype(np.float64), fmt="%.17g", delimiter=",")
    return header.getvalue().encode() + body.getvalue()


@dataclass(frozen=True)
class Channel:
    """A channel's rows: the features (as its header names them), the targets, and a hash of its files."""

    features: list[str]
    x: np.ndarray
    y: np.ndarray
    sha256: str


def read_channel(folder: Path, label: str, classification: bool) -> Channel:
    """Every file of a channel (SageMaker copies the objects under the channel's S3 prefix there),
    in name order; they must share one header with the label in it."""
    files = sorted(path for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else []
    if not files:
        raise ValueError(f"channel {folder.name!r} has no files in {folder}")
    digest = hashlib.sha256()
    header: list[str] | None = None
    blocks = []
    for path in files:
        data = path.read_bytes()
        digest.update(data)
        text = data.decode("utf-8")
        first, _, rest = text.partition("\n")
        names = next(csv.reader([first]))
        if header is not None and names != header:
            raise ValueError(f"channel {folder.name!r}: {path.name} has another header than {files[0].name}")
        header = names
        if rest.strip():
            blocks.append(np.loadtxt(io.StringIO(rest), delimiter=",", dtype=np.float64, ndmin=2))
    assert header is not None
    if label not in header:
        raise ValueError(f"channel {folder.name!r} has no label column {label!r} (columns: {header})")
    where = header.index(label)
    matrix = np.vstack(blocks) if blocks else np.empty((0, len(header)))
    if matrix.shape[1] != len(header):
        raise ValueError(f"channel {folder.name!r}: rows of {matrix.shape[1]} values, {len(header)} columns")
    y = matrix[:, where]
    return Channel(
        [name for i, name in enumerate(header) if i != where],
        np.delete(matrix, where, axis=1),
        y.astype(np.int64) if classification else y,
        digest.hexdigest(),
    )


def train_job(root: Path) -> dict[str, Any]:
    """Train as the Lambda trainer does, from the job's hyperparameters and channels under `root`;
    writes the model folder and returns its metadata."""
    from aimass.pipeline.train import expected_outputs, fit

    raw = json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
    config, task = parse_hyperparameters(raw)
    classification = task == "classification"
    data = root / "input" / "data"
    train, holdout = (read_channel(data / name, config.label, classification) for name in CHANNELS)
    if holdout.features != train.features:
        raise ValueError(f"the holdout channel's features {holdout.features} are not the training channel's")
    logger.info("training %s on %d rows of %d features", config.estimator, len(train.x), len(train.features))
    fitted = fit(config, train.x, train.y, holdout.x, classification)
    model = root / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / MODEL_FILE).write_bytes(fitted.onnx)
    np.save(model / OUTPUTS_FILE, expected_outputs(fitted, holdout.x, classification), allow_pickle=False)
    found = {
        "estimator": config.estimator,
        "params": fitted.params,
        "task": task,
        "features": train.features,
        "train_rows": fitted.train_rows,
        "holdout_rows": len(holdout.x),
        "parity_gap": fitted.parity_gap,
        "channels": {
            "train": {"rows": len(train.x), "sha256": train.sha256},
            "holdout": {"rows": len(holdout.x), "sha256": holdout.sha256},
        },
        "versions": _versions("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy"),
    }
    (model / METADATA_FILE).write_text(json.dumps(found, indent=2, sort_keys=True))
    logger.info("wrote %s (parity gap %.3g)", model / MODEL_FILE, fitted.parity_gap)
    return found


def run_job(root: Path) -> int:
    """The job's exit status: 0 when the model folder is written; otherwise 1, with the reason in
    `output/failure` (and the traceback on stderr, which SageMaker sends to CloudWatch Logs)."""
    try:
        train_job(root)
    except Exception as error:
        traceback.print_exc()
        output = root / "output"
        output.mkdir(parents=True, exist_ok=True)
        (output / "failure").write_text(f"{type(error).__name__}: {error}"[:MAX_FAILURE_CHARS])
        return 1
    return 0


def _versions(*names: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = distributions.version(name)
        except distributions.PackageNotFoundError:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aimass.pipeline.job", description="The retraining pipeline's SageMaker training job."
    )
    parser.add_argument("command", nargs="?", default="train", choices=["train"], help="what SageMaker runs")
    parser.add_argument("--root", type=Path, default=Path("/opt/ml"), help="SageMaker's folders (/opt/ml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_job(args.root)


if __name__ == "__main__":
    sys.exit(main())
