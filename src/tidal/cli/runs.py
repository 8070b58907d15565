"""``tidal runs``: list, show and compare tracked runs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, JsonOption, WorkspaceOption, open_workspace

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from tidal.store.workspace import Workspace
    from tidal.tracking.run import Run

app = typer.Typer(help="List, show and compare runs.", no_args_is_help=True)

#: How many metric columns ``runs list`` shows before pointing at --json.
MAX_LIST_METRICS = 6

_BASE_FIELDS = ("name", "experiment", "status", "parent_id", "user", "git_commit", "cost")
_SECTIONS = ("params", "metrics", "tags")

# Words that mark a metric where lower is better; any other metric is taken as higher-better.
_LOWER_WORDS = frozenset({
    "loss", "error", "err", "errors", "mse", "rmse", "mae", "mape", "smape", "msle", "rmsle",
    "perplexity", "wer", "cer", "seconds", "secs", "sec", "ms", "latency", "time",
    "duration", "cost", "usd", "rss", "memory", "mb", "gb", "bytes",
})


# -- list -------------------------------------------------------------------------------------

@app.command("list")
def list_runs(
    ctx: typer.Context,
    experiment: Annotated[list[str] | None, typer.Option(
        "--experiment", "-e", metavar="NAME",
        help="Only runs of this experiment; repeat for several.")] = None,
    filter: Annotated[str | None, typer.Option(
        "--filter", "-f", metavar="EXPR",
        help="Filter, e.g. \"metrics.roc_auc > 0.95 and params.model = 'rf'\" "
             "(fields: metrics.KEY, params.KEY, tags.KEY, status, name, start_time...).")] = None,
    order_by: Annotated[list[str] | None, typer.Option(
        "--order-by", "-o", metavar="ITEM",
        help="Sort key such as 'metrics.roc_auc DESC'; repeat for ties. "
             "Default: newest first.")] = None,
    limit: Annotated[int, typer.Option(
        "--limit", "-n", min=1, help="Show at most this many runs.")] = 100,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """List runs, newest first, with their latest metrics."""
    import tidal

    ws = open_workspace(ctx, workspace, artifacts)
    frame = tidal.search_runs(experiment or None, filter, order_by or None, limit, workspace=ws)
    records = run_records(frame)
    if json:
        render.print_json(records)
        return
    out = render.console()
    if not records:
        where = f" in experiment(s) {', '.join(experiment)}" if experiment else ""
        out.print(f"No runs match{where}.", markup=False)
        return
    out.print(_list_table(records, order_by or [], limit,
                          show_experiment=len({r["experiment"] for r in records}) > 1
                          or not experiment, width=out.width))


def run_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """search_runs' rows as JSON-ready objects: base fields, duration, then nested params,
    metrics and tags holding only the keys each run has."""
    records = []
    for row in frame.to_dict("records"):
        start = render.as_datetime(row["start_time"])
        end = render.as_datetime(row["end_time"])
        record: dict[str, Any] = {"id": row["run_id"]}
        record.update({k: None if render.is_missing(row[k]) else row[k] for k in _BASE_FIELDS})
        record["start_time"] = start
        record["end_time"] = end
        record["duration_seconds"] = (end - start).total_seconds() if start and end else None
        for section in _SECTIONS:
            record[section] = {}
        for column, value in row.items():
            section, dot, key = str(column).partition(".")
            if dot and section in _SECTIONS and not render.is_missing(value):
                record[section][key] = value
        records.append(record)
    return records


def _order_keys(order_by: list[str]) -> list[str]:
    """Metric keys named in --order-by, so their columns come first."""
    keys = []
    for item in order_by:
        field = item.strip().split(" ")[0] if item.strip() else ""
        prefix, dot, key = field.partition(".")
        if dot and prefix.lower() in ("metrics", "metric"):
            keys.append(key.strip("`"))
    return keys


def _list_table(records: list[dict[str, Any]], order_by: list[str], limit: int,
                show_experiment: bool, width: int) -> Table:
    """The runs as a table that fits ``width`` where it can: name, id and status always, the
    metrics named in --order-by always, then what fits by priority (duration, three more
    metrics, experiment, parent, start time, further metrics), shown in a fixed order."""
    from rich import box
    from rich.table import Table

    all_keys = sorted({key for r in records for key in r["metrics"]})
    preferred = [k for k in _order_keys(order_by) if k in all_keys]
    # Namespaced series (system/..., curve/...) stay in --json; plain metrics get columns.
    plain = [k for k in all_keys if "/" not in k and k not in preferred][:MAX_LIST_METRICS]

    def metric(key: str) -> Any:
        return lambda r: render.format_number(r["metrics"].get(key), 4)

    # (heading, cell, column options, priority: 0 always shown, then lowest first)
    columns: list[tuple[str, Any, dict[str, Any], float]] = [
        ("Name", lambda r: r["name"], {"style": "bold", "overflow": "fold"}, 0),
        ("Run ID", lambda r: r["id"], {"style": "dim", "no_wrap": True}, 0),
    ]
    if show_experiment:
        columns.append(("Experiment", lambda r: r["experiment"], {"overflow": "fold"}, 3))
    if any(r["parent_id"] for r in records):
        columns.append(("Parent", lambda r: (r["parent_id"] or render.MISSING)[:8],
                        {"style": "dim", "no_wrap": True}, 4))
    columns += [
        ("Status", lambda r: render.status_text(r["status"]), {"no_wrap": True}, 0),
        ("Started", lambda r: render.format_timestamp(r["start_time"])[:16],
         {"no_wrap": True}, 5),
        ("Duration", lambda r: render.format_duration(r["duration_seconds"]),
         {"justify": "right", "no_wrap": True}, 1),
    ]
    columns += [(k, metric(k), {"justify": "right", "no_wrap": True}, 0) for k in preferred]
    columns += [(k, metric(k), {"justify": "right", "no_wrap": True},
                 (2 if i < 3 else 6) + i / 100) for i, k in enumerate(plain)]

    def cost(column: tuple[str, Any, dict[str, Any], float]) -> int:
        heading, cell, _, _ = column
        texts = [str(getattr(cell(r), "plain", cell(r))) for r in records]
        longest = max([len(heading)] + [len(t) for t in texts])
        if heading in ("Name", "Experiment"):  # these fold rather than push others out
            longest = min(longest, 30)
        return longest + 2  # the padding and the gap before the next column

    chosen = {i for i, c in enumerate(columns) if c[3] == 0}
    used = sum(cost(columns[i]) for i in chosen)
    for i in sorted(set(range(len(columns))) - chosen, key=lambda i: columns[i][3]):
        if used + cost(columns[i]) <= width:
            chosen.add(i)
            used += cost(columns[i])
    hidden = len(all_keys) - sum(1 for i in chosen if columns[i][0] in all_keys)
    dropped = [columns[i][0] for i in range(len(columns))
               if i not in chosen and columns[i][0] not in all_keys]

    caption = f"{len(records)} run{'s' if len(records) != 1 else ''}"
    if len(records) >= limit:
        caption += f" (the first {limit}; raise --limit for more)"
    if hidden:
        caption += f"; {hidden} more metric{'s' if hidden != 1 else ''} in --json"
    if dropped:
        caption += f"; {', '.join(dropped).lower()} hidden (narrow terminal)"
    table = Table(caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, padding=(0, 1), collapse_padding=True)
    shown = [c for i, c in enumerate(columns) if i in chosen]
    for heading, _, options, _ in shown:
        table.add_column(heading, min_width=min(len(heading), 10), **options)
    for r in records:
        table.add_row(*[cell(r) for _, cell, _, _ in shown])
    return table


# -- show -------------------------------------------------------------------------------------

@app.command("show", help=(
    "Show everything about one run.\n\n"
    "Status, params, metrics, tags, artifacts, environment, usage and cost, and child runs."))
def show_run(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id.",
                                          show_default=False)],
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Show everything about one run."""
    import tidal

    ws = open_workspace(ctx, workspace, artifacts)
    run = tidal.get_run(run_id, workspace=ws)
    artifacts = run.artifacts()
    if json:
        data = run.to_dict()
        data["duration_seconds"] = run.duration_seconds
        data["artifacts"] = artifacts
        render.print_json(data)
        return
    _print_run(render.console(), ws, run, artifacts)


def _section(out: Console, title: str, rows: list[tuple[Any, ...]],
             headings: tuple[str, ...] | None = None) -> None:
    """A bold title, then key/value rows (or a table with ``headings``), or 'none'."""
    from rich.table import Table
    from rich.text import Text

    out.print()
    heading = Text(title, style="bold")
    if not rows:
        out.print(heading + Text("  none", style="dim"))
        return
    out.print(heading)
    table = Table(box=None, show_header=headings is not None, header_style="dim",
                  padding=(0, 2, 0, 0), pad_edge=False)
    for i, name in enumerate(headings or ("key", "value")):
        table.add_column(name, style="cyan" if i == 0 else None, overflow="fold",
                         no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _short_digest(digest: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}:{hex_part[:12]}" if hex_part else digest[:20]


def _print_run(out: Console, ws: Workspace, run: Run, artifacts: list[Any]) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    out.print(Text.assemble(("Run ", "bold"), (run.name, "bold magenta"), "  ", (run.id, "dim")))
    summary = Table(box=None, show_header=False, padding=(0, 2, 0, 0), pad_edge=False)
    summary.add_column(style="cyan", no_wrap=True)
    summary.add_column(overflow="fold")
    for key, value in (
            ("experiment", run.experiment),
            ("status", render.status_text(run.status)),
            ("parent", run.parent_id or render.MISSING),
            ("started", render.format_timestamp(run.start_time)),
            ("ended", render.format_timestamp(run.end_time)),
            ("duration", render.format_duration(run.duration_seconds))):
        summary.add_row(key, value)
    out.print(summary)
    if run.error:
        out.print(Panel(Text(run.error.rstrip(), style="red"), title="error",
                        title_align="left", border_style="red"))

    _section(out, f"Params ({len(run.params)})", [(k, run.params[k]) for k in sorted(run.params)])
    _section(out, f"Metrics ({len(run.metrics)}, latest values)",
             [(k, render.format_number(run.metrics[k])) for k in sorted(run.metrics)])
    _section(out, f"Tags ({len(run.tags)})", [(k, run.tags[k]) for k in sorted(run.tags)])
    _section(out, f"Artifacts ({len(artifacts)})",
             [(a.path, render.format_bytes(a.size), Text(_short_digest(a.digest), style="dim"))
              for a in artifacts], headings=("path", "size", "digest"))

    commit = run.git_commit or render.MISSING
    if run.git_commit and run.git_dirty:
        commit += " (with uncommitted changes)"
    _section(out, "Environment", [
        ("user", run.user or render.MISSING),
        ("host", run.host or render.MISSING),
        ("source", run.source or render.MISSING),
        ("git commit", commit),
        ("python", run.python_version or render.MISSING),
        ("packages", _short_digest(run.packages_digest) if run.packages_digest
         else render.MISSING),
    ])
    _section(out, "Usage and cost", [
        ("cpu time", render.format_duration(run.cpu_seconds)),
        ("peak memory", render.format_bytes(run.peak_rss_bytes)),
        ("gpu time", render.format_duration(run.gpu_seconds)),
        ("cost", render.format_cost(run.cost)),
    ])
    _section(out, f"Children ({len(run.children)})", _child_rows(ws, run),
             headings=("run id", "name", "status", "duration"))


def _child_rows(ws: Workspace, run: Run) -> list[tuple[Any, ...]]:
    if not run.children:
        return []
    import tidal

    quoted = run.id.replace("'", "''")
    frame = tidal.search_runs(filter=f"parent_id = '{quoted}'", order_by="start_time",
                              limit=None, workspace=ws)
    return [(r["id"], r["name"], render.status_text(r["status"]),
             render.format_duration(r["duration_seconds"])) for r in run_records(frame)]


# -- compare ----------------------------------------------------------------------------------

def metric_goal(key: str) -> str:
    """'min' for metrics that read as lower-is-better (loss, error, seconds, cost...), else
    'max'. A ``neg_`` prefix (scikit-learn's negated losses) means higher is better."""
    words = [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]
    if words and words[0] == "neg":
        return "max"
    return "min" if any(w in _LOWER_WORDS for w in words) else "max"


def _best(values: dict[str, Any], goal: str) -> list[str]:
    """Ids holding the best value of a row; none when there is nothing to choose between."""
    numbers = {rid: v for rid, v in values.items() if not render.is_missing(v)}
    if len(numbers) < 2 or len(set(numbers.values())) == 1:
        return []
    target = (min if goal == "min" else max)(numbers.values())
    return [rid for rid, v in numbers.items() if v == target]


def comparison(runs: list[Run]) -> dict[str, Any]:
    """Params and metrics of several runs side by side, with differences and best values."""
    ids = [r.id for r in runs]
    params = []
    for key in sorted({k for r in runs for k in r.params}):
        values = {r.id: r.params.get(key) for r in runs}
        params.append({"key": key, "values": values,
                       "differs": len({values[i] for i in ids}) > 1})
    metrics = []
    for key in sorted({k for r in runs for k in r.metrics}):
        values = {r.id: r.metrics.get(key) for r in runs}
        goal = metric_goal(key)
        metrics.append({"key": key, "goal": goal, "values": values, "best": _best(values, goal)})
    return {
        "runs": [{"id": r.id, "name": r.name, "experiment": r.experiment, "status": r.status,
                  "duration_seconds": r.duration_seconds, "cost": r.cost} for r in runs],
        "params": params,
        "metrics": metrics,
    }


@app.command("compare", help=(
    "Compare runs side by side.\n\n"
    "Params that differ are highlighted, and so is the best value of each metric: the lowest "
    "for losses, errors, times and costs, the highest otherwise."))
def compare_runs(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN_ID", help="Two or more run ids.",
                                                 show_default=False)],
    system: Annotated[bool, typer.Option(
        "--system", help="Also show system/* metrics (CPU, memory, GPU samples).")] = False,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Compare runs side by side."""
    if len(run_ids) < 2:
        raise typer.BadParameter("give at least two run ids to compare", param_hint="RUN_ID")
    repeated = sorted({i for i in run_ids if run_ids.count(i) > 1})
    if repeated:
        raise typer.BadParameter(f"run id {repeated[0]} is given more than once",
                                 param_hint="RUN_ID")
    import tidal

    ws = open_workspace(ctx, workspace, artifacts)
    data = comparison([tidal.get_run(run_id, workspace=ws) for run_id in run_ids])
    if json:
        render.print_json(data)
        return
    render.console().print(_compare_table(data, system))


def _compare_table(data: dict[str, Any], system: bool) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    runs = data["runs"]
    ids = [r["id"] for r in runs]
    metrics = [m for m in data["metrics"] if system or not m["key"].startswith("system/")]
    hidden = len(data["metrics"]) - len(metrics)
    differing = sum(p["differs"] for p in data["params"])
    caption = (f"{differing} of {len(data['params'])} params differ (yellow); best metric "
               "values in green (↑ higher is better, ↓ lower is better)")
    if hidden:
        caption += f"; {hidden} system metrics hidden (--system)"
    table = Table(caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, padding=(0, 1), collapse_padding=True)
    table.add_column("", no_wrap=True)
    for r in runs:
        table.add_column(Text.assemble((r["name"], "bold"), "\n", (r["id"][:8], "dim")),
                         justify="right", overflow="fold")

    table.add_row(Text("run", style="bold underline"))
    table.add_row("experiment", *[r["experiment"] for r in runs])
    table.add_row("status", *[render.status_text(r["status"]) for r in runs])
    table.add_row("duration", *[render.format_duration(r["duration_seconds"]) for r in runs])
    table.add_row("cost", *[render.format_cost(r["cost"]) for r in runs])

    table.add_section()
    table.add_row(Text("params", style="bold underline"))
    for p in data["params"]:
        style = "bold yellow" if p["differs"] else "dim"
        table.add_row(Text(p["key"], style="yellow" if p["differs"] else ""),
                      *[Text(render.format_value(p["values"][i]), style=style) for i in ids])

    table.add_section()
    table.add_row(Text("metrics", style="bold underline"))
    for m in metrics:
        arrow = "↓" if m["goal"] == "min" else "↑"
        table.add_row(f"{m['key']} {arrow}", *[
            Text(render.format_number(m["values"][i]),
                 style="bold green" if i in m["best"] else "")
            for i in ids])
    return table
