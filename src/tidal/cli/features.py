"""``tidal features``: register feature definitions, list them, show their history, and
materialize feature views into the online store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, JsonOption, WorkspaceOption, open_workspace
from tidal.errors import InvalidValueError

if TYPE_CHECKING:
    from tidal.features.registry import RegisteredDefinition

app = typer.Typer(help="Register feature definitions, list them and materialize them.",
                  no_args_is_help=True)

OnlineOption = Annotated[str | None, typer.Option(
    "--online", help="Online store: a SQLite file or a redis:// URL (default: online.db in the "
                     "workspace home).")]

_ACTION_STYLES = {"added": "green", "changed": "yellow", "removed": "red", "absent": "dim",
                  "unchanged": "dim"}


def _summary(kind: str, spec: dict[str, Any]) -> str:
    """One line about a definition, for listings."""
    if kind == "entity":
        return "join keys: " + ", ".join(spec["join_keys"])
    if kind == "feature_view":
        source = spec["source"]
        where = source.get("path") or (source["dataset"] + (
            f"/{source['version']}" if "version" in source else ""))
        ttl = spec["ttl_seconds"]
        return (f"{len(spec['features'])} features of {', '.join(spec['entities'])} from "
                f"{where}" + ("" if ttl is None else f", ttl {render.format_duration(ttl)}")
                + (", transformed" if spec["transform"] else ""))
    if kind == "on_demand_view":
        return (f"{len(spec['features'])} features from {len(spec['inputs'])} inputs and "
                f"{len(spec['request'])} request fields ({spec['mode']})")
    return f"{len(spec['features'])} features" + (
        f": {spec['description']}" if spec.get("description") else "")


def _when(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    if value == "now":
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValueError(f"--{what} {value!r} is not an ISO 8601 time (like "
                                "2026-11-23T12:00:00+00:00) nor 'now'", field=what) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("apply")
def apply_definitions(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A Python file defining entities, feature views, "
                                              "on-demand views and feature services.")],
    prune: Annotated[bool, typer.Option("--prune", help="Mark registered definitions that the "
                                                        "file no longer defines as removed.")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write "
                                                            "nothing.")] = False,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Register the definitions in PATH and show what changed."""
    from tidal.features.registry import apply, load_definitions

    ws = open_workspace(ctx, workspace, artifacts)
    definitions = load_definitions(path)
    changes = apply(definitions, workspace=ws, prune=prune, dry_run=dry_run, origin=path)
    if json:
        render.print_json({"dry_run": dry_run, "changes": changes})
        return

    from rich.text import Text

    counts: dict[str, int] = {}
    for change in changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    caption = ", ".join(f"{n} {action}" for action, n in counts.items())
    table = render.listing(("Dry run, nothing written: " if dry_run else "") + caption)
    table.add_column("Kind", no_wrap=True)
    table.add_column("Name", style="bold", overflow="fold")
    table.add_column("Change", no_wrap=True)
    table.add_column("Version", justify="right", no_wrap=True)
    table.add_column("What changed", overflow="fold")
    for change in changes:
        details = "\n".join(change.details)
        if change.action == "absent":
            details = "not in this file; kept (--prune removes it)"
        table.add_row(change.kind.replace("_", " "), change.name,
                      Text(change.action, style=_ACTION_STYLES[change.action]),
                      str(change.version), details)
    render.console().print(table)


@app.command("list")
def list_features(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(
        "--kind", help="Only this kind: entity, feature_view, on_demand_view or "
                       "feature_service.")] = None,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """List the registered definitions, at their latest versions."""
    from tidal.features.registry import list_definitions

    ws = open_workspace(ctx, workspace, artifacts)
    found = list_definitions(workspace=ws, kind=kind)
    if json:
        render.print_json(found)
        return

    out = render.console()
    if not found:
        out.print(f"No feature definitions yet in {ws.location}.\n"
                  "Register some with: tidal features apply path/to/features.py", markup=False)
        return
    table = render.listing(f"{len(found)} definition{'s' if len(found) != 1 else ''}")
    table.add_column("Kind", no_wrap=True)
    table.add_column("Name", style="bold", overflow="fold")
    table.add_column("Version", justify="right", no_wrap=True)
    table.add_column("Summary", overflow="fold")
    table.add_column("Updated", no_wrap=True)
    for item in found:
        assert item.spec is not None
        table.add_row(item.kind.replace("_", " "), item.name, str(item.version),
                      _summary(item.kind, item.spec),
                      render.format_timestamp(item.created_at)[:16])
    out.print(table)


@app.command("show")
def show_definition(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The definition's name.")],
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Show every version of a definition and what changed at each."""
    from tidal.features.registry import definition_history, spec_changes

    ws = open_workspace(ctx, workspace, artifacts)
    history = definition_history(name, workspace=ws)
    if json:
        render.print_json(history)
        return

    table = render.listing()
    table.add_column("Kind", no_wrap=True)
    table.add_column("Version", justify="right", no_wrap=True)
    table.add_column("When", no_wrap=True)
    table.add_column("By", overflow="fold")
    table.add_column("Change", overflow="fold")
    previous: RegisteredDefinition | None = None
    for item in history:
        if item.removed:
            change = "removed"
        elif previous is None or previous.kind != item.kind or previous.spec is None:
            change = "added: " + _summary(item.kind, item.spec)  # type: ignore[arg-type]
        else:
            change = "\n".join(spec_changes(previous.spec, item.spec)) or "unchanged"
        table.add_row(item.kind.replace("_", " "), str(item.version),
                      render.format_timestamp(item.created_at)[:19],
                      item.created_by or render.MISSING, change)
        previous = item
    render.console().print(table)


@app.command("materialize")
def materialize(
    ctx: typer.Context,
    end: Annotated[str, typer.Option(help="Materialize values up to this time (ISO 8601, or "
                                          "'now').")] = "now",
    start: Annotated[str | None, typer.Option(help="From this time; default: where the "
                                                   "previous materialization ended.")] = None,
    view: Annotated[list[str] | None, typer.Option(
        "--view", help="Only this feature view (repeatable).")] = None,
    online: OnlineOption = None,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Write the latest registered feature values into the online store."""
    from tidal.features.store import FeatureStore

    ws = open_workspace(ctx, workspace, artifacts)
    until = _when(end, "end")
    assert until is not None
    since = _when(start, "start")
    store = FeatureStore.from_registry(workspace=ws, online=online)
    if not store.views:
        raise InvalidValueError("no feature views are registered; register some with: tidal "
                                "features apply path/to/features.py", field="view")
    unknown = [name for name in view or () if name not in store.views]
    if unknown:  # before the progress display starts, so the error stands alone
        raise InvalidValueError(f"unknown feature view(s) {unknown}; known: "
                                f"{sorted(store.views)}", field="view")
    if json:
        written = store.materialize(until, since, view or None)
        render.print_json({"end": until, "start": since, "rows": written})
        return

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=render.error_console(), transient=True) as progress:
        task = progress.add_task("materializing", total=None)

        def report(name: str, rows: int) -> None:
            progress.update(task, description=f"materializing {name}: {rows:,} rows")

        written = store.materialize(until, since, view or None, progress=report)
    out = render.console()
    for name, rows in written.items():
        out.print(f"{name}: {rows:,} entit{'y' if rows == 1 else 'ies'} written", markup=False)
    out.print(f"Online store up to {render.format_timestamp(until)[:19]}.", markup=False)
