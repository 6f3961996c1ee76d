"""`aimass batch`: predict a file's rows through the bucket (as any uploader would), or on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aimass.cli.common import (
    AsJson,
    Region,
    aws_endpoint_option,
    aws_endpoint_url,
    comma_list,
    console,
    fail,
    print_error,
    show_json,
    use_aws,
)


def batch(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="rows: .csv, .jsonl or .parquet, optionally .gz"),
    ],
    model: Annotated[str, typer.Option(help="the model that predicts every row")],
    id_column: Annotated[
        str | None,
        typer.Option(help="column naming each row (default: `id` if present, else the row number)"),
    ] = None,
    carry: Annotated[str | None, typer.Option(help="input columns copied to the predictions, a,b,c")] = None,
    alias: Annotated[
        str | None, typer.Option(help="the version this alias points at predicts (default: as online)")
    ] = None,
    version: Annotated[int | None, typer.Option(help="this version predicts (instead of an alias)")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for the outputs (default: next to FILE)")] = None,
    local: Annotated[bool, typer.Option(help="predict on this machine, without S3 (same code)")] = False,
    bucket: Annotated[str, typer.Option(envvar="AIMASS_BUCKET", help="artifacts bucket")] = "aimass-local",
    aws_endpoint: Annotated[str | None, aws_endpoint_option("--s3-endpoint")] = None,
    registry_table: Annotated[str, typer.Option(envvar="AIMASS_REGISTRY_TABLE")] = "aimass-registry",
    region: Region = "us-east-1",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the report")] = 900.0,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            dir_okay=False,
            help="also write the report as one self-contained HTML page: drift plots against the baseline, "
            "the predictions",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Predict every row of FILE with MODEL: upload it under incoming/<model>/, wait for the report,
    download the predictions, rejected rows and report (or, with --local, do the same here)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from aimass.batch.job import Options
    from aimass.cli.batch_remote import download, local_outputs, s3_client, upload, wait_for_report

    options = Options(id_column=id_column, carry=tuple(comma_list(carry) or ()), alias=alias, version=version)
    out_dir = out or file.parent
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn()]
    if local:
        report = _batch_here(file, model, options, out_dir, bucket, aws_endpoint, registry_table, region)
        written = local_outputs(out_dir, file.name)
        written["report"].write_text(json.dumps(report, indent=2))
    else:
        s3 = s3_client(aws_endpoint_url(aws_endpoint), region)
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"uploading {file.name}", total=file.stat().st_size)
            drop = upload(s3, bucket, model, file, options, lambda sent: bar.advance(task, sent))
            bar.update(task, description=f"predicting s3://{bucket}/{drop.key}")
            try:
                report = wait_for_report(s3, drop, timeout)
            except TimeoutError as error:
                raise fail(str(error)) from error
        written = download(s3, report, out_dir, file.name)
    if html is not None and report["status"] == "succeeded":
        _write_page(html, report, file, written, bucket, aws_endpoint, registry_table, region)
        written["page"] = html
    if as_json:
        show_json({"report": report, "files": {kind: str(path) for kind, path in written.items()}})
    else:
        _print_batch_report(report, written)
    if report["status"] != "succeeded":
        raise typer.Exit(1)


def _batch_here(
    file: Path,
    model: str,
    options: Any,
    out_dir: Path,
    bucket: str,
    endpoint: str | None,
    table: str,
    region: str,
) -> dict[str, Any]:
    """The batch job in this process: the model and its checks from the registry, files on disk."""
    from rich.progress import Progress

    use_aws(endpoint, region, AIMASS_BUCKET=bucket, AIMASS_REGISTRY_TABLE=table)
    from aimass import wiring
    from aimass.batch.formats import FileFormat
    from aimass.batch.job import Outputs, predict_file
    from aimass.cli.batch_remote import local_outputs

    targets = local_outputs(out_dir, file.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"predicting {file.name}", total=None)
        report = predict_file(
            wiring.serving(),
            model,
            file,
            FileFormat.of(file.name),
            Outputs(targets["predictions"], targets["rejected"]),
            options,
            lambda rows: bar.update(task, description=f"predicting {file.name}: {rows:,} rows"),
        )
    if report["status"] == "succeeded":
        report["outputs"] = {k: str(targets[k]) for k in ("predictions", "rejected")}
    else:  # a failed file writes nothing, here as in S3: not half its predictions
        for kind in ("predictions", "rejected"):
            targets[kind].unlink(missing_ok=True)
    return {"file": {"path": str(file)}, **report}


def _write_page(
    html: Path,
    report: dict[str, Any],
    file: Path,
    written: dict[str, Path],
    bucket: str,
    endpoint: str | None,
    table: str,
    region: str,
) -> None:
    """The report as the data-quality page (aimass.batch.page), drawn here from FILE, the downloaded
    predictions and the version's baseline, read from the registry and the bucket."""
    use_aws(endpoint, region, AIMASS_BUCKET=bucket, AIMASS_REGISTRY_TABLE=table)
    from aimass import wiring
    from aimass.batch.page import file_page
    from aimass.quality.page import render
    from aimass.registration import baseline_files

    record = wiring.registry().get_version(report["model"]["name"], int(report["model"]["version"]))
    baseline = baseline_files(record) if record.baseline is not None else None
    page = file_page(report, file, record, baseline, written.get("predictions"))
    html.write_text(render(page), encoding="utf-8")


def _print_batch_report(report: dict[str, Any], written: dict[str, Path]) -> None:
    rows = report.get("rows") or {}
    model = report.get("model") or {}
    if report["status"] != "succeeded":
        problem = report.get("error") or {}
        print_error(f"failed: {problem.get('code')}: {problem.get('message')}")
    else:
        console.print(
            f"{model.get('name')} v{model.get('version')}: {rows.get('in', 0):,} rows in, "
            f"{rows.get('predicted', 0):,} predicted, {rows.get('rejected', 0):,} rejected "
            f"({report['timing']['seconds']} s)"
        )
        quality = report.get("quality") or {}
        drifted = (report.get("drift") or {}).get("drifted") or []
        console.print(
            f"flagged {quality.get('rows_flagged', 0):,}, anomalies {quality.get('anomalies', 0):,}, "
            f"drift in {len(drifted)} features" + (": " + ", ".join(drifted) if drifted else "")
        )
    for kind, path in written.items():
        console.print(f"  {kind}: {path}")
