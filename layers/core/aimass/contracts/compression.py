"""Compressing a version (aimass.compression): what is asked for, and the figures that judge the
compressed model against the original, recorded in the new version's lineage."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from aimass.contracts.common import Contract
from aimass.contracts.registry import ModelVersion

# dynamic: int8 weights, activations quantized at run time (no calibration); static: int8 weights and
# activations, scales calibrated on the evaluation rows (QDQ format); float16: half-precision weights
# for a GPU (inputs and outputs stay float32).
Method = Literal["dynamic", "static", "float16"]


class QuantizeRequest(Contract):
    model_config = ConfigDict(extra="forbid")

    method: Method = "dynamic"
    min_agreement: float = Field(
        default=0.99,
        ge=0,
        le=1,
        description="the least share of the evaluation rows on which the compressed model must answer "
        "as the original (the same label; for a regressor, a value within 1 % of the original's spread)",
    )
    reference_uri: str | None = Field(
        default=None,
        description="held-out rows to judge on: a CSV or Parquet file in S3 over the model's columns, "
        "with an optional `label` column (then the metric delta is measured). Unset: rows drawn from "
        "the version's baseline",
    )
    max_rows: int = Field(default=5000, ge=10, le=50_000, description="the most evaluation rows used")


class Speed(Contract):
    """ONNX Runtime in the same process, the two models timed in turns (interleaved)."""

    single_row_ms: float = Field(description="median of one-row runs")
    batch_rows_per_s: float = Field(description="median rate of runs over all the evaluation rows")


class CompressionFigures(Contract):
    method: Method
    source_version: int
    rows: int = Field(description="evaluation rows the two models ran on")
    rows_from: str = Field(description="where the rows came from: the reference URI, or the baseline")
    quantized_ops: dict[str, int] = Field(description="weight-bearing operators in the original graph")
    agreement: float = Field(description="share of rows answered the same (label, or value within 1 %)")
    max_probability_difference: float | None = None
    max_value_difference: float | None = None
    metric: str | None = Field(default=None, description="`accuracy` or `mae`, against the rows' labels")
    metric_original: float | None = None
    metric_compressed: float | None = None
    metric_delta: float | None = Field(default=None, description="compressed minus original")
    size_bytes_original: int
    size_bytes_compressed: int
    size_ratio: float = Field(description="compressed size over original size")
    speed_original: Speed
    speed_compressed: Speed
    single_row_speedup: float = Field(description="original time over compressed time, one row")
    batch_speedup: float = Field(description="compressed rate over original rate, all rows")
    min_agreement: float


class Quantized(Contract):
    """The registered compressed version (alias `challenger`) and the figures that judged it."""

    version: ModelVersion
    alias: str
    figures: CompressionFigures
