"""``tidal gc``: remove unreferenced blobs and leftover temporary files from the artifact store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, JsonOption, WorkspaceOption, open_workspace

if TYPE_CHECKING:
    from tidal.store.gc import GcReport

#: How many removed files the table lists before summing up the rest (all are in --json).
MAX_LISTED = 50


def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Report what would be removed; remove nothing.")] = False,
    grace: Annotated[str, typer.Option(
        "--grace", metavar="DURATION",
        help="Only remove files older than this, e.g. 30m, 1h, 7d; younger ones may belong "
             "to a write in progress.")] = "1h",
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Remove blobs nothing references and temporary files of killed writers.

    Referenced blobs (run artifacts, dataset versions, models, pipeline outputs, feature
    definitions) are never removed, and nothing younger than --grace is.
    """
    import tidal
    from tidal.durations import parse_duration
    from tidal.errors import InvalidValueError

    try:
        span = parse_duration(grace, field="--grace")
    except InvalidValueError as error:
        raise typer.BadParameter(error.message.removeprefix("--grace "),
                                 param_hint="--grace") from None
    ws = open_workspace(ctx, workspace, artifacts)
    report = tidal.gc(dry_run=dry_run, grace=span, workspace=ws)
    if json:
        render.print_json(report.to_dict())
        return
    _print_report(report, ws.settings.artifacts)


def _print_report(report: GcReport, where: str) -> None:
    from rich.text import Text

    out = render.console()
    verb = "would remove" if report.dry_run else "removed"
    blobs = sum(1 for item in report.removed if item.kind == "blob")
    temporary = len(report.removed) - blobs
    out.print(Text.assemble(
        ("Garbage collection", "bold"), f" of {where}",
        (" (dry run: nothing removed)", "yellow") if report.dry_run else ""))
    if report.removed:
        table = render.listing()
        table.add_column("kind")
        table.add_column("name", overflow="fold")
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("modified", no_wrap=True)
        for item in report.removed[:MAX_LISTED]:
            table.add_row(item.kind, item.name, render.format_bytes(item.size),
                          render.format_timestamp(item.modified * 1000))
        out.print(table)
        if len(report.removed) > MAX_LISTED:
            out.print(f"... and {len(report.removed) - MAX_LISTED} more (--json lists all)",
                      markup=False)
    out.print(f"{verb} {blobs} unreferenced blob{'s' if blobs != 1 else ''} and {temporary} "
              f"temporary file{'s' if temporary != 1 else ''}, "
              f"{render.format_bytes(report.bytes_freed)}; kept {report.kept_referenced} "
              f"referenced and {report.kept_recent} younger than "
              f"{render.format_duration(report.grace_seconds)}", markup=False)
