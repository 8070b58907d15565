"""``tidal pipeline``: run a pipeline with a live view of its steps, list runs, show one run's
graph with states and cache hits, and resume a run that was killed or failed."""

from __future__ import annotations

import json as jsonlib
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, JsonOption, WorkspaceOption, open_workspace
from tidal.errors import InvalidValueError

if TYPE_CHECKING:
    from rich.table import Table

    from tidal.pipelines.runner import PipelineRun, StepRecord

app = typer.Typer(help="Run pipelines, list their runs, show one, resume one.",
                  no_args_is_help=True)

ExecutorOption = Annotated[str, typer.Option(
    "--executor", "-x", help="Where steps run: inline, process or ray.")]
NoCacheOption = Annotated[bool, typer.Option(
    "--no-cache", help="Run every step, even those whose outputs are cached.")]

_STYLES = {"done": "green", "cached": "cyan", "running": "yellow", "failed": "red",
           "skipped": "dim", "pending": "dim"}


def parse_params(items: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON is taken as JSON (numbers, booleans,
    lists), anything else as a string."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidValueError(f"--param {item!r} is not KEY=VALUE", field="param")
        try:
            params[key] = jsonlib.loads(value)
        except ValueError:
            params[key] = value
    return params


def _table(result: PipelineRun, order: list[str],
           edges: dict[str, list[str]] | None = None) -> Table:
    from rich.text import Text

    table = render.listing()
    for heading in ("step", "state", "attempts", "run", "cache key"):
        table.add_column(heading)
    if edges is not None:
        table.add_column("after")
    for node in order:
        record = result.steps.get(node)
        status = "pending" if record is None else record.status
        table.add_row(node, Text(status + (" (cache hit)" if status == "cached" else ""),
                                 style=_STYLES.get(status, "")),
                      "" if record is None or not record.attempts else str(record.attempts),
                      "" if record is None or not record.run_id else record.run_id[:8],
                      "" if record is None or not record.cache_key
                      else record.cache_key.split(":")[-1][:12],
                      *([] if edges is None else [", ".join(edges.get(node, []))]))
    return table


def _live_run(call: Any, order: list[str]) -> PipelineRun:
    """Run ``call(on_step)`` with a live table of step states, redrawn on every change."""
    from rich.live import Live

    from tidal.pipelines.runner import PipelineRun

    view = PipelineRun("", "", "running")

    def on_step(record: StepRecord) -> None:
        view.steps[record.node] = record
        live.update(_table(view, order))

    with Live(_table(view, order), console=render.console(), refresh_per_second=8) as live:
        result = call(on_step)
        live.update(_table(result, order))
    render.console().print()
    return result


def _graph(info: Any, recorded: PipelineRun) -> tuple[list[str], dict[str, list[str]]]:
    """The run's steps in order with their upstream steps, as the run recorded them: showing
    a run never imports its pipeline (runs recorded before graphs were: their steps only)."""
    if not info.graph:
        return list(recorded.steps), {}
    return [node for node, _ in info.graph], {node: list(upstream)
                                              for node, upstream in info.graph}


@app.command("run")
def run(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="MODULE:PIPELINE",
                                          help="The pipeline: MODULE:NAME or FILE.py:NAME.")],
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", metavar="KEY=VALUE", help="A pipeline parameter (repeatable).")] = None,
    executor: ExecutorOption = "process",
    no_cache: NoCacheOption = False,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Run a pipeline, showing each step's state as it changes."""
    from tidal.pipelines.graph import load_pipeline
    from tidal.pipelines.runner import run_pipeline

    params = parse_params(param or [])
    pipeline = load_pipeline(target)
    order = pipeline.build(**pipeline.parameters(params)).order  # bad params fail here
    ws = open_workspace(ctx, workspace, artifacts)

    def call(on_step: Any) -> PipelineRun:
        return run_pipeline(pipeline, params, executor=executor, cache=not no_cache,
                            workspace=ws, on_step=on_step)

    result = call(None) if json else _live_run(call, order)
    if json:
        render.print_json(_run_json(result))
    else:
        hits = sum(r.status == "cached" for r in result.steps.values())
        render.console().print(f"Pipeline run {result.id}: {result.status}, "
                               f"{len(result.steps)} steps, {hits} from cache", markup=False)


def _run_json(result: PipelineRun) -> dict[str, Any]:
    return {"id": result.id, "pipeline": result.pipeline, "status": result.status,
            "steps": {name: {"status": r.status, "cache_hit": r.cache_hit, "run_id": r.run_id,
                             "cache_key": r.cache_key, "attempts": r.attempts,
                             "outputs": r.outputs, "error": r.error}
                      for name, r in result.steps.items()}}


@app.command("list")
def list_runs(
    ctx: typer.Context,
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="Only this pipeline.")]
    = None,
    limit: Annotated[int, typer.Option("--limit", help="How many runs, newest first.")] = 50,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """List pipeline runs, newest first."""
    from tidal.pipelines.history import list_pipeline_runs

    ws = open_workspace(ctx, workspace, artifacts)
    found = list_pipeline_runs(pipeline, limit=limit, workspace=ws)
    if json:
        render.print_json([info.to_dict() for info in found])
        return
    table = render.listing(f"{len(found)} pipeline run(s)")
    table.add_column("run", no_wrap=True)
    for heading in ("pipeline", "status", "executor", "started", "params"):
        table.add_column(heading)
    for info in found:
        table.add_row(info.id, info.pipeline, info.status, info.executor,
                      render.format_timestamp(info.created_at),
                      jsonlib.dumps(info.params, sort_keys=True))
    render.console().print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="A pipeline run's id.")],
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Show a pipeline run: its graph in order, each step's state, cache hits and errors."""
    from tidal.pipelines.history import get_pipeline_run

    ws = open_workspace(ctx, workspace, artifacts)
    info, result = get_pipeline_run(run_id, workspace=ws)
    if json:
        render.print_json({**info.to_dict(), **_run_json(result)})
        return
    order, edges = _graph(info, result)
    out = render.console()
    out.print(f"{info.pipeline} run {info.id}: {info.status} ({info.executor} executor)",
              markup=False)
    out.print(_table(result, order, edges))
    for record in result.steps.values():
        if record.error:
            out.print(f"{record.node} failed:\n{record.error}", markup=False)


@app.command("resume")
def resume(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="A pipeline run's id.")],
    executor: Annotated[str | None, typer.Option(
        "--executor", "-x", help="Where steps run (default: where the run ran).")] = None,
    trust_code: Annotated[bool, typer.Option(
        "--trust-code", help="Import the run's stored target even when the code it names is "
        "not the code the run recorded.")] = False,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Finish a killed or failed run: finished steps are reused, the rest run. The run's
    pipeline is imported only if its code on disk is the code the run recorded."""
    from tidal.pipelines.history import get_pipeline_run
    from tidal.pipelines.runner import resume_pipeline

    ws = open_workspace(ctx, workspace, artifacts)
    info, recorded = get_pipeline_run(run_id, workspace=ws)
    order, _ = _graph(info, recorded)

    def call(on_step: Any) -> PipelineRun:
        return resume_pipeline(run_id, executor=executor, workspace=ws, on_step=on_step,
                               trust_code=trust_code)

    result = call(None) if json else _live_run(call, order)
    if json:
        render.print_json(_run_json(result))
    else:
        render.console().print(f"Pipeline run {result.id}: {result.status}", markup=False)
