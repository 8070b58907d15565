"""``tidal experiments``: the experiments of a workspace."""

from __future__ import annotations

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, JsonOption, WorkspaceOption, open_workspace

app = typer.Typer(help="List experiments.", no_args_is_help=True)


@app.command("list")
def list_experiments(ctx: typer.Context, json: JsonOption = False,
                     workspace: WorkspaceOption = None,
                     artifacts: ArtifactsOption = None) -> None:
    """List experiments by name, with their run counts and latest run."""
    import tidal

    ws = open_workspace(ctx, workspace, artifacts)
    found = tidal.list_experiments(workspace=ws)
    if json:
        render.print_json([{
            "id": e.id,
            "name": e.name,
            "created_at": render.as_datetime(e.created_at),
            "run_count": e.run_count,
            "last_run_at": render.as_datetime(e.last_run_at),
        } for e in found])
        return

    out = render.console()
    if not found:
        out.print(f"No experiments yet in {ws.location}.\n"
                  "Start a run with tidal.start_run(...) or try: tidal demo", markup=False)
        return
    rows = [(e.name, str(e.run_count), render.format_timestamp(e.last_run_at)[:16],
             render.format_timestamp(e.created_at)[:16], e.id) for e in found]
    # The id goes last, and only where it fits: commands take experiment names.
    needed = sum(max(len(h), *(len(r[i]) for r in rows)) + 2
                 for i, h in enumerate(("Name", "Runs", "Last run", "Created", "ID")))
    show_id = needed <= out.width
    table = render.listing(f"{len(found)} experiment{'s' if len(found) != 1 else ''}")
    table.add_column("Name", style="bold", overflow="fold")
    table.add_column("Runs", justify="right", no_wrap=True)
    table.add_column("Last run", no_wrap=True)
    table.add_column("Created", no_wrap=True)
    if show_id:
        table.add_column("ID", style="dim", no_wrap=True)
    for row in rows:
        table.add_row(*(row if show_id else row[:4]))
    out.print(table)
