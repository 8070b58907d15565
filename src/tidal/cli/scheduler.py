"""``tidal scheduler``: the long-running process that starts scheduled pipelines when due.

Several schedulers of the same pipelines may run on one workspace: one leads, the others
stand by and take over when it stops, and a fire time never runs twice. It prints one line
per thing it does (lease taken or lost, runs started and ended, fire times skipped) so that a
service manager's log tells the story, and exits 0 on SIGTERM or Ctrl-C once the run in
progress has finished.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, WorkspaceOption, open_workspace


def scheduler(
    ctx: typer.Context,
    pipelines: Annotated[list[str], typer.Argument(
        metavar="MODULE:PIPELINE...",
        help="Scheduled pipelines: MODULE:PIPELINE, FILE.py:PIPELINE, or a module or FILE.py "
             "for all the scheduled pipelines it defines.")],
    catch_up: Annotated[str, typer.Option(
        "--catch-up", help="After downtime: skip (run nothing missed, wait for the next fire "
                           "time) or last (run the latest missed fire time once).")] = "skip",
    poll: Annotated[float, typer.Option(
        "--poll", metavar="SECONDS", help="Seconds between two looks at the schedules.")]
    = 5.0,
    executor: Annotated[str, typer.Option(
        "--executor", "-x", help="Where steps run: inline, process or ray.")] = "inline",
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Start scheduled pipelines when due, until SIGTERM or Ctrl-C; standbys may run beside."""
    from tidal.pipelines.scheduler import Scheduler, load_pipelines

    if os.getcwd() not in sys.path:  # modules of the project it runs in, as `python -m` finds
        sys.path.insert(0, os.getcwd())
    ws = open_workspace(ctx, workspace, artifacts)
    loaded = load_pipelines(pipelines)
    out = render.console()

    def report(line: str) -> None:
        out.print(f"{datetime.now(UTC).isoformat(timespec='seconds')} {line}", markup=False,
                  soft_wrap=True)

    runner = Scheduler(loaded, workspace=ws, catch_up=catch_up, poll_seconds=poll,
                       executor=executor, report=report)
    names = ", ".join(f"{p.name} ({p.schedule})" for p in runner.pipelines)
    report(f"scheduling {names} on {ws.location} as {runner.owner}; catch-up: {catch_up}")
    runner.run_forever()
    report("stopped")
