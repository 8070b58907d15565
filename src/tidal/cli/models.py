"""``tidal models``: list registered models, show a version with its lineage, move aliases and
stages, and write model cards.

A model version is named on the command line as ``NAME/VERSION``, ``NAME@ALIAS`` or
``NAME/latest``, with or without ``models:/`` in front; a bare ``NAME`` names the model
itself where a command can show a whole model, and its newest version elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, JsonOption, WorkspaceOption, open_workspace
from tidal.cli.models_export import export_command
from tidal.errors import InvalidValueError
from tidal.models.uri import SCHEME, parse_model_uri

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from tidal.models.cards import ModelCard
    from tidal.models.registry import ModelVersion, RegisteredModel

app = typer.Typer(help="List registered models, move their aliases and stages, write model "
                       "cards.", no_args_is_help=True)

REF_HELP = "NAME/VERSION, NAME@ALIAS or NAME/latest, optionally with models:/ in front."
STAGES_HELP = ("Stages: registered, validated, approved, deployed, archived. Moves: registered "
               "-> validated | archived; validated -> approved | registered | archived; "
               "approved -> deployed | registered | archived; deployed -> approved | "
               "archived. Reaching validated needs the latest gate run to have passed.")

_STAGE_STYLES = {"registered": "", "validated": "cyan", "approved": "green",
                 "deployed": "bold green", "archived": "dim"}


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{alias} → {number}" for alias, number in aliases.items()) \
        or render.MISSING


# -- list -------------------------------------------------------------------------------------

@app.command("list")
def list_models(ctx: typer.Context, json: JsonOption = False,
                workspace: WorkspaceOption = None, artifacts: ArtifactsOption = None) -> None:
    """List registered models with their latest version, aliases and owner."""
    from tidal.models.registry import list_models as registered_models

    ws = open_workspace(ctx, workspace, artifacts)
    found = registered_models(workspace=ws)
    if json:
        render.print_json([m.to_dict() for m in found])
        return

    out = render.console()
    if not found:
        out.print(f"No models registered yet in {ws.location}.\n"
                  "Register one with tidal.models.register(name, model).", markup=False)
        return
    from rich.text import Text

    table = render.listing(_plural(len(found), "model"))
    table.add_column("Name", style="bold", overflow="fold")
    table.add_column("Latest", justify="right", no_wrap=True)
    table.add_column("Aliases", overflow="fold")
    table.add_column("Owner", overflow="fold")
    table.add_column("Created", no_wrap=True)
    for m in found:
        table.add_row(m.name, render.format_value(m.latest_version), _aliases(m.aliases),
                      Text(m.owner or render.MISSING),
                      render.format_timestamp(m.created_at)[:16])
    out.print(table)


# -- show -------------------------------------------------------------------------------------

@app.command("show", help=(
    "Show a model (its description, owner, aliases and versions) or one version (its "
    "details, lineage, gate results, signature and stage and alias history).\n\n"
    "NAME shows the model; NAME/VERSION, NAME@ALIAS or NAME/latest (optionally with models:/ "
    "in front) shows a version."))
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NAME[/VERSION|@ALIAS]", show_default=False,
                                       help="NAME, or a version: " + REF_HELP)],
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Show a model or one of its versions."""
    parsed = parse_model_uri(ref)
    ws = open_workspace(ctx, workspace, artifacts)
    body = ref.removeprefix(SCHEME)
    if "/" in body or "@" in body:
        from tidal.models.cards import build_card

        card = build_card(str(parsed), workspace=ws)
        if json:
            render.print_json(card.to_dict())
        else:
            _print_card(render.console(), card)
        return

    from tidal.models.registry import get_model, list_versions

    model = get_model(parsed.name, workspace=ws)
    versions = list_versions(parsed.name, workspace=ws)
    if json:
        render.print_json({**model.to_dict(), "versions": [v.to_dict() for v in versions]})
        return
    _print_model(render.console(), model, versions)


def _print_model(out: Console, model: RegisteredModel, versions: list[ModelVersion]) -> None:
    from rich.table import Table
    from rich.text import Text

    from tidal.models.cards import NOT_SET

    out.print(Text.assemble(("Model ", "bold"), (model.name, "bold magenta"), "  ",
                            (_plural(len(versions), "version"), "dim")))
    summary = Table(box=None, show_header=False, padding=(0, 2, 0, 0), pad_edge=False)
    summary.add_column(style="cyan", no_wrap=True)
    summary.add_column(overflow="fold")
    for key, value in (
            ("description", model.description or NOT_SET),
            ("purpose", model.purpose or NOT_SET),
            ("owner", model.owner or NOT_SET),
            ("aliases", _aliases(model.aliases)),
            ("created", render.format_timestamp(model.created_at)),
            ("created by", model.created_by or render.MISSING)):
        summary.add_row(key, Text(value))
    out.print(summary)
    out.print()
    out.print(_versions_table(versions))


def _print_card(out: Console, card: ModelCard) -> None:
    """The card's sections in the terminal, the same content as its Markdown and HTML."""
    from rich.table import Table
    from rich.text import Text

    from tidal.models.cards import Fields, Paragraph, Subheading

    out.print(Text.assemble(("Model ", "bold"), (card.name, "bold magenta"), "  ",
                            (f"version {card.version}", "bold"), "  ",
                            (card.stage, _STAGE_STYLES.get(card.stage, ""))))
    for section in card.sections():
        out.print()
        out.print(Text(section.title, style="bold underline"))
        for block in section.blocks:
            if isinstance(block, Paragraph):
                out.print(Text(block.text, style="dim"))
            elif isinstance(block, Subheading):
                out.print(Text(block.text, style="bold"))
            elif isinstance(block, Fields):
                grid = Table(box=None, show_header=False, padding=(0, 2, 0, 0), pad_edge=False)
                grid.add_column(style="cyan", no_wrap=True)
                grid.add_column(overflow="fold")
                for key, value in block.items:
                    grid.add_row(key, Text(value))
                out.print(grid)
            elif not block.rows:
                out.print(Text("none", style="dim"))
            else:
                table = render.listing()
                for i, heading in enumerate(block.headings):
                    table.add_column(heading, style="cyan" if i == 0 else None,
                                     overflow="fold")
                for row in block.rows:
                    table.add_row(*(Text(cell) for cell in row))
                out.print(table)


# -- versions ---------------------------------------------------------------------------------

@app.command("versions")
def versions(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.", show_default=False)],
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """List every version of a model, newest first."""
    from tidal.models.registry import list_versions

    ws = open_workspace(ctx, workspace, artifacts)
    found = list_versions(name, workspace=ws)
    if json:
        render.print_json([v.to_dict() for v in found])
        return
    render.console().print(_versions_table(found))


def _versions_table(found: list[ModelVersion]) -> Table:
    from rich.text import Text

    table = render.listing(_plural(len(found), "version"))
    table.add_column("Version", justify="right", style="bold magenta", no_wrap=True)
    table.add_column("Stage", no_wrap=True)
    table.add_column("Flavor", no_wrap=True)
    table.add_column("Aliases", overflow="fold")
    table.add_column("Run", overflow="fold")
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Created", no_wrap=True)
    for v in reversed(found):
        table.add_row(str(v.version), Text(v.stage, style=_STAGE_STYLES.get(v.stage, "")),
                      v.flavor, ", ".join(v.aliases) or render.MISSING,
                      v.run_id or render.MISSING, render.format_bytes(v.size_bytes),
                      render.format_timestamp(v.created_at)[:16])
    return table


# -- alias ------------------------------------------------------------------------------------

@app.command("alias", help=(
    "Point an alias at a version, remove it, or show how aliases moved.\n\n"
    "NAME ALIAS VERSION points ALIAS at VERSION (moving it if it points elsewhere); "
    "NAME ALIAS --delete removes it; NAME [ALIAS] --history lists every move of the model's "
    "aliases (or of one). Every move is recorded with who made it, when and --reason."))
def alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.", show_default=False)],
    alias_name: Annotated[str | None, typer.Argument(
        metavar="[ALIAS]", help="The alias, e.g. champion.", show_default=False)] = None,
    version: Annotated[int | None, typer.Argument(
        metavar="[VERSION]", help="The version number to point the alias at.",
        show_default=False)] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    history: Annotated[bool, typer.Option(
        "--history", help="List the moves of the model's aliases (or of ALIAS).")] = False,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why the alias moves; kept in its history.")] = None,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Point an alias at a version, remove it, or show its history."""
    from tidal.models import aliases

    if delete and history:
        raise InvalidValueError("--delete and --history cannot be combined", field="alias")
    if (delete or history) and version is not None:
        raise InvalidValueError(f"--{'delete' if delete else 'history'} takes no VERSION; "
                                f"use: tidal models alias {name} ALIAS "
                                f"--{'delete' if delete else 'history'}", field="version")
    if not history and alias_name is None:
        raise InvalidValueError(f"name the alias: tidal models alias {name} ALIAS VERSION, or "
                                f"tidal models alias {name} --history", field="alias")
    if not (delete or history) and version is None:
        raise InvalidValueError(f"give the version to point {alias_name!r} at: tidal models "
                                f"alias {name} {alias_name} VERSION (or --delete to remove it)",
                                field="version")
    ws = open_workspace(ctx, workspace, artifacts)
    out = render.console()
    if history:
        events = aliases.alias_history(name, alias_name, workspace=ws)
        if json:
            render.print_json(events)
        else:
            _print_alias_history(out, name, alias_name, events)
        return
    assert alias_name is not None
    if delete:
        aliases.delete_alias(name, alias_name, reason=reason, workspace=ws)
        if json:
            render.print_json({"name": name, "alias": alias_name, "deleted": True})
        else:
            out.print(f"Removed alias {alias_name} of {name}.", markup=False)
        return
    assert version is not None
    pointed = aliases.set_alias(name, alias_name, version, reason=reason, workspace=ws)
    if json:
        render.print_json(pointed.to_dict())
    else:
        out.print(f"{name}@{alias_name} → {pointed.uri}", markup=False)


def _print_alias_history(out: Console, name: str, alias_name: str | None,
                         events: list[Any]) -> None:
    from rich.text import Text

    from tidal.models.cards import alias_change

    if not events:
        out.print(f"No alias of {name} has been set yet.", markup=False)
        return
    what = f"alias {alias_name}" if alias_name else "aliases"
    table = render.listing(f"{_plural(len(events), 'move')} of {name}'s {what}, oldest first")
    table.add_column("Alias", style="cyan", no_wrap=True)
    table.add_column("Change", overflow="fold")
    table.add_column("Reason", overflow="fold")
    table.add_column("By", overflow="fold")
    table.add_column("When", no_wrap=True)
    for e in events:
        table.add_row(e.alias, alias_change(e), Text(e.reason or render.MISSING),
                      Text(e.by or render.MISSING), render.format_timestamp(e.at))
    out.print(table)


# -- transition -------------------------------------------------------------------------------

@app.command("transition", help=(
    "Move a version to another stage, recording who, when and why.\n\n" + STAGES_HELP))
def transition(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NAME/VERSION", show_default=False,
                                       help="The version to move: NAME/VERSION or NAME@ALIAS.")],
    stage: Annotated[str, typer.Argument(metavar="STAGE", show_default=False,
                                         help="The stage to move it to.")],
    reason: Annotated[str, typer.Option(
        "--reason", show_default=False, help="Why it moves; kept in its stage history.")],
    by: Annotated[str | None, typer.Option(
        "--by", help="Who decided (default: the current user).")] = None,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Move a version to another stage."""
    from tidal.models.stages import transition as move

    parsed = parse_model_uri(ref)
    if parsed.version is None and parsed.alias is None:
        raise InvalidValueError(f"name the version to move, e.g. {parsed.name}/3 or "
                                f"{parsed.name}@champion; a transition never picks the newest "
                                "version by itself", field="version")
    ws = open_workspace(ctx, workspace, artifacts)
    moved = move(str(parsed), stage, reason=reason, by=by, workspace=ws)
    last = moved.transitions()[-1]
    if json:
        render.print_json({**moved.to_dict(), "transition": last})
        return
    render.console().print(f"{moved.uri}: {last.from_stage} → {last.to_stage} ({last.reason})",
                           markup=False)


# -- export -----------------------------------------------------------------------------------

app.command("export", help=(
    "Convert a version to ONNX (scikit-learn, LightGBM, PyTorch), check its outputs against "
    "the source's on the version's input example, and register it as the next version, "
    "linked to its source; reports size and single-row latency before and after."))(
    export_command)


# -- card -------------------------------------------------------------------------------------

@app.command("card", help=(
    "Write a version's model card as Markdown and as a self-contained HTML page, named "
    "NAME-vVERSION.md and .html, and print their paths.\n\n" + REF_HELP))
def card(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NAME/VERSION", show_default=False,
                                       help=REF_HELP)],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="DIR", help="Folder to write into (created if missing).")]
    = Path("."),
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Write a version's model card."""
    from tidal.models.cards import write_card

    parsed = parse_model_uri(ref)
    ws = open_workspace(ctx, workspace, artifacts)
    for path in write_card(str(parsed), output, workspace=ws):
        typer.echo(str(path))
