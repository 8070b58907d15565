"""``tidal predict``: a registered model's predictions for Parquet or CSV files, streamed in
chunks with a progress bar of rows on stderr, inline or across a Ray cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, WorkspaceOption, open_workspace

if TYPE_CHECKING:
    from tidal.serving.batch import BatchPlan, BatchResult


def _run_with_progress(plan: BatchPlan) -> BatchResult:
    """Run the plan under a bar of rows (its total known when every input is Parquet)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
               TimeElapsedColumn()]
    if plan.total_rows is not None:
        columns.append(TimeRemainingColumn())
    console = render.error_console()
    # a bar drawn where no terminal redraws it (a pipe, a log file) only leaves blank lines
    with Progress(*columns, console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        rows = bar.add_task("rows", total=plan.total_rows)
        return plan.run(lambda done: bar.advance(rows, done))


def predict(
    ctx: typer.Context,
    model_uri: Annotated[str, typer.Argument(
        metavar="MODEL_URI",
        help="The model version: models:/NAME/VERSION or models:/NAME@ALIAS.")],
    input: Annotated[list[str], typer.Option(
        "--input", "-i", metavar="PATH_OR_GLOB",
        help="Parquet or CSV input: a file, a directory or a glob, local or a URL such as "
             "s3://bucket/data/*.parquet (repeatable).")],
    output: Annotated[str, typer.Option(
        "--output", "-o", metavar="PATH",
        help="A .parquet or .csv file, or a directory of part files (a path ending in '/', an "
             "existing directory, and always with --executor ray).")],
    key: Annotated[list[str] | None, typer.Option(
        "--key", "-k", metavar="COLUMN",
        help="An input column copied next to each prediction (repeatable; default: every "
             "column the model does not take, else the row number).")] = None,
    chunk_rows: Annotated[int, typer.Option(
        "--chunk-rows", help="Rows read and predicted at a time: what bounds memory.")]
    = 100_000,
    executor: Annotated[str, typer.Option(
        "--executor", "-x", help="Where to predict: inline or ray.")] = "inline",
    proba: Annotated[bool, typer.Option(
        "--proba", help="Write class probabilities (proba_<class>) instead of predictions.")]
    = False,
    trust: Annotated[bool, typer.Option(
        "--trust", help="Allow models stored as pickle, which can run code when loaded.")]
    = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing output file or part files.")] = False,
    input_format: Annotated[str | None, typer.Option(
        "--format", metavar="parquet|csv",
        help="The input's format, when the file names do not tell it.")] = None,
    output_format: Annotated[str | None, typer.Option(
        "--output-format", metavar="parquet|csv",
        help="The output's format, when its name does not tell it.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a summary.")]
    = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Predict every row of Parquet or CSV files with a registered model, in chunks."""
    from tidal.serving.batch import plan_batch

    ws = open_workspace(ctx, workspace, artifacts)
    plan = plan_batch(model_uri, input, output, keys=key or None, chunk_rows=chunk_rows,
                      executor=executor, input_format=input_format,
                      output_format=output_format, proba=proba, trust=trust,
                      overwrite=overwrite, workspace=ws)
    result = _run_with_progress(plan)
    if json:
        render.print_json({"model": result.model, "rows": result.rows, "chunks": result.chunks,
                           "seconds": result.seconds, "rows_per_second": result.rows_per_second,
                           "inputs": result.inputs, "outputs": result.outputs})
        return
    out = render.console()
    out.print(f"Predicted {result.rows:,} rows from {len(result.inputs)} file(s) with "
              f"{result.model} in {render.format_duration(result.seconds)} "
              f"({result.rows_per_second:,.0f} rows/s, {result.chunks} chunks)", markup=False)
    shown = result.outputs[0] if len(result.outputs) == 1 \
        else f"{len(result.outputs)} part files in {output}"
    out.print(f"Wrote {shown}", markup=False)
