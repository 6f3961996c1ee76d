"""A batch file's report as the data-quality page (aimass.batch.page): the file through a registered
model (moto), then its rows, predictions and the version's baseline drawn on one self-contained page."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from aimass import wiring
from aimass.batch.formats import FileFormat
from aimass.batch.job import Options, Outputs, predict_file
from aimass.batch.page import file_page
from aimass.quality.page import render
from aimass.registration import baseline_files

MODEL = "breast-cancer"


def holdout(demos: dict[str, Any]) -> list[dict[str, float]]:
    names = [f.name for f in demos[MODEL].enrichment.features]
    return [dict(zip(names, row, strict=True)) for row in demos[MODEL].holdout.tolist()]


@pytest.mark.parametrize("name", ["shifted.csv", "shifted.jsonl"])
def test_a_batch_files_page_names_its_drifted_feature_and_draws_its_predictions(
    registered: Any, demos: dict[str, Any], tmp_path: Path, name: str
) -> None:
    # Given a file of held-out rows whose mean_radius moved well up, predicted as a dropped file is
    rows = [{**r, "mean_radius": r["mean_radius"] * 1.6} for r in holdout(demos)]
    source = tmp_path / name
    if name.endswith(".csv"):
        source.write_text(
            ",".join(rows[0]) + "\n" + "".join(",".join(map(str, r.values())) + "\n" for r in rows)
        )
    else:
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs = Outputs(tmp_path / f"predicted-{name}", tmp_path / "rejected.jsonl")
    report = predict_file(wiring.serving(), MODEL, source, FileFormat.of(name), outputs, Options())
    assert report["status"] == "succeeded" and "mean_radius" in report["drift"]["drifted"]

    # When its page is drawn from the report, the file, its predictions and the version's baseline
    record = wiring.registry().get_version(MODEL, report["model"]["version"])
    page = file_page(report, source, record, baseline_files(record), outputs.predictions)
    text = render(page)

    # Then the page names the drifted feature among the rows' values, and draws the drift and the
    # predicted classes inline, fetching nothing from elsewhere
    assert page.drifted[0] == "mean_radius"
    assert page.rows == len(rows) and page.predictions is not None
    assert sorted(set(page.predictions.values)) == ["benign", "malignant"]
    assert len(next(f for f in page.features if f.name == "mean_radius").values) == len(rows)
    assert f"batch file {name}" in text and "<code>mean_radius</code>" in text
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) == 2
    assert not re.search(r'(src|href)="(https?:)?//', text)
