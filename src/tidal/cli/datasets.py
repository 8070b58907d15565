"""``tidal datasets``: list, show, compare and validate versioned datasets.

A dataset is named on the command line by a reference: ``NAME`` (its latest version),
``NAME/VERSION`` or ``datasets:/NAME/VERSION``, where VERSION is a number or ``latest``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, JsonOption, WorkspaceOption, open_workspace
from tidal.cli.runs import _section, _short_digest
from tidal.data.uri import parse_ref
from tidal.errors import InvalidValueError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from tidal.data.diff import DatasetDiff
    from tidal.data.validation import ValidationReport
    from tidal.data.versions import DatasetVersion
    from tidal.store.workspace import Workspace

app = typer.Typer(help="List, show, compare and validate versioned datasets.",
                  no_args_is_help=True)

REF_HELP = ("NAME (the latest version), NAME/VERSION or datasets:/NAME/VERSION; VERSION is a "
            "number or 'latest'.")

#: How many runs ``datasets show`` names before pointing at --json.
MAX_SHOWN_RUNS = 20
#: How many top values a categorical column shows in ``datasets show``.
TOP_SHOWN = 3
#: A relative shift of a statistic beyond this is highlighted as large in ``datasets diff``.
LARGE_SHIFT = 0.10

_PROFILE_STATS = ("nulls", "distinct", "min", "max", "mean", "std")


# -- references -------------------------------------------------------------------------------

def _get(ws: Workspace, ref: str) -> DatasetVersion:
    import tidal

    name, version = parse_ref(ref)
    return tidal.datasets.get(name, version, workspace=ws)


# -- records ----------------------------------------------------------------------------------

def version_record(version: DatasetVersion) -> dict[str, Any]:
    """The fields of a version that every listing shows, JSON-ready."""
    return {
        "name": version.name,
        "version": version.version,
        "uri": version.uri,
        "id": version.id,
        "digest": version.digest,
        "num_rows": version.num_rows,
        "num_columns": version.num_columns,
        "size_bytes": version.size_bytes,
        "source": version.source,
        "description": version.description,
        "created_at": version.created_at,
        "created_by": version.created_by,
    }


def schema_records(version: DatasetVersion) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable}
            for f in version.schema]


# -- list -------------------------------------------------------------------------------------

@app.command("list")
def list_datasets(ctx: typer.Context, json: JsonOption = False,
                  workspace: WorkspaceOption = None,
                  artifacts: ArtifactsOption = None) -> None:
    """List datasets by name, with their latest version."""
    import tidal

    ws = open_workspace(ctx, workspace, artifacts)
    found = tidal.datasets.list_datasets(workspace=ws)
    if json:
        render.print_json([version_record(v) for v in found])
        return

    out = render.console()
    if not found:
        out.print(f"No datasets yet in {ws.location}.\n"
                  "Register one with tidal.datasets.register(name, data).", markup=False)
        return
    table = render.listing(f"{len(found)} dataset{'s' if len(found) != 1 else ''}")
    table.add_column("Name", style="bold", overflow="fold")
    table.add_column("Latest", justify="right", no_wrap=True)
    table.add_column("Rows", justify="right", no_wrap=True)
    table.add_column("Columns", justify="right", no_wrap=True)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Created", no_wrap=True)
    table.add_column("Created by", overflow="fold")
    for v in found:
        table.add_row(v.name, str(v.version), f"{v.num_rows:,}", str(v.num_columns),
                      render.format_bytes(v.size_bytes),
                      render.format_timestamp(v.created_at)[:16],
                      v.created_by or render.MISSING)
    out.print(table)


# -- show -------------------------------------------------------------------------------------

@app.command("show", help=(
    "Show one dataset version: its schema and column profile, the dataset's versions and the "
    "runs that read it.\n\n" + REF_HELP))
def show_dataset(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NAME[/VERSION]", help=REF_HELP,
                                       show_default=False)],
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Show one dataset version."""
    import tidal

    ws = open_workspace(ctx, workspace, artifacts)
    version = _get(ws, ref)
    versions = tidal.datasets.list_versions(version.name, workspace=ws)
    runs = version.runs()
    reports = version.validation_reports()
    if json:
        data = version_record(version)
        data["blob"] = version.blob
        data["schema"] = schema_records(version)
        data["profile"] = version.profile
        data["versions"] = [version_record(v) for v in versions]
        data["runs"] = runs
        data["validation"] = {"reports": len(reports),
                              "last_passed": reports[-1].passed if reports else None}
        render.print_json(data)
        return
    _print_version(render.console(), ws, version, versions, runs, reports)


def _stat(value: Any) -> str:
    return render.format_number(value, 4) if isinstance(value, float) else \
        render.format_value(value)


def _top(entries: list[list[Any]] | None, limit: int = TOP_SHOWN) -> str:
    if not entries:
        return render.MISSING
    shown = ", ".join(f"{value} ({count:,})" for value, count in entries[:limit])
    return shown + (", …" if len(entries) > limit else "")


def _print_version(out: Console, ws: Workspace, version: DatasetVersion,
                   versions: list[DatasetVersion], runs: list[str],
                   reports: list[ValidationReport]) -> None:
    from rich.table import Table
    from rich.text import Text

    latest = versions[-1].version if versions else version.version
    title = Text.assemble(("Dataset ", "bold"), (version.name, "bold magenta"), "  ",
                          (f"version {version.version} of {latest}", "dim"))
    out.print(title)
    summary = Table(box=None, show_header=False, padding=(0, 2, 0, 0), pad_edge=False)
    summary.add_column(style="cyan", no_wrap=True)
    summary.add_column(overflow="fold")
    if reports:
        last = reports[-1]
        validated: Any = Text(
            f"{'passed' if last.passed else 'failed'} ({len(reports)} report"
            f"{'s' if len(reports) != 1 else ''})", style="green" if last.passed else "red")
    else:
        validated = render.MISSING
    for key, value in (
            ("uri", version.uri),
            ("digest", version.digest),
            ("rows", f"{version.num_rows:,}"),
            ("columns", str(version.num_columns)),
            ("size", render.format_bytes(version.size_bytes)),
            ("source", version.source or render.MISSING),
            ("description", version.description or render.MISSING),
            ("created", render.format_timestamp(version.created_at)),
            ("created by", version.created_by or render.MISSING),
            ("validation", validated)):
        summary.add_row(key, value)
    out.print(summary)

    out.print()
    out.print(Text(f"Schema and profile ({version.num_columns} columns)", style="bold"))
    out.print(_schema_table(version))

    current = version.version
    _section(out, f"Versions ({len(versions)})", [
        (Text(str(v.version), style="bold magenta" if v.version == current else ""),
         f"{v.num_rows:,}", str(v.num_columns), render.format_bytes(v.size_bytes),
         render.format_timestamp(v.created_at), Text(_short_digest(v.digest), style="dim"))
        for v in reversed(versions)], headings=("version", "rows", "columns", "size",
                                                 "created", "digest"))
    _section(out, f"Runs that read it ({len(runs)})", _run_rows(ws, runs),
             headings=("run id", "name", "experiment", "status"))
    if len(runs) > MAX_SHOWN_RUNS:
        out.print(Text(f"and {len(runs) - MAX_SHOWN_RUNS} more (--json lists every run)",
                       style="dim"))


def _schema_table(version: DatasetVersion) -> Table:
    table = render.listing("quantiles and histograms in --json")
    table.add_column("Column", style="cyan", overflow="fold")
    table.add_column("Type", overflow="fold")
    table.add_column("Nullable", no_wrap=True)
    for heading in _PROFILE_STATS:
        table.add_column(heading.capitalize(), justify="right", overflow="fold")
    table.add_column("Top values", overflow="fold")
    columns = version.profile.get("columns", {})
    for field in version.schema:
        stats = columns.get(field.name, {})
        table.add_row(field.name, str(field.type), "yes" if field.nullable else "no",
                      *[_stat(stats.get(s)) for s in _PROFILE_STATS], _top(stats.get("top")))
    return table


def _run_rows(ws: Workspace, runs: list[str]) -> list[tuple[Any, ...]]:
    import tidal
    from tidal.errors import NotFoundError

    rows: list[tuple[Any, ...]] = []
    for run_id in runs[:MAX_SHOWN_RUNS]:
        try:
            run = tidal.get_run(run_id, workspace=ws)
        except NotFoundError:
            rows.append((run_id, render.MISSING, render.MISSING, render.MISSING))
            continue
        rows.append((run_id, run.name, run.experiment, render.status_text(run.status)))
    return rows


# -- diff -------------------------------------------------------------------------------------

@app.command("diff", help=(
    "Compare two dataset versions: schema changes, row count and column statistics.\n\n"
    "Each version is " + REF_HELP + " Only the stored schemas and profiles are compared; no "
    "data is read."))
def diff_datasets(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(metavar="OLD", help="The version to compare from.",
                                       show_default=False)],
    new: Annotated[str, typer.Argument(metavar="NEW", help="The version to compare to.",
                                       show_default=False)],
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Compare two dataset versions."""
    import tidal

    for ref in (old, new):  # a malformed reference fails before any lookup
        parse_ref(ref)
    ws = open_workspace(ctx, workspace, artifacts)
    a, b = _get(ws, old), _get(ws, new)
    result = tidal.datasets.diff(a, b)
    if json:
        render.print_json({**result.to_dict(), "same_content": result.same_content})
        return
    _print_diff(render.console(), a, b, result)


def _relative(old: Any, new: Any) -> float | None:
    numbers = (int, float)
    if not (isinstance(old, numbers) and isinstance(new, numbers)) or isinstance(old, bool) \
            or isinstance(new, bool) or render.is_missing(old) or render.is_missing(new):
        return None
    if old == 0:
        return None if new == 0 else float("inf")
    return (new - old) / abs(old)


def _change(old: Any, new: Any) -> Any:
    """``+12 (+8.0%)`` for numbers, coloured by size; blank for anything else."""
    from rich.text import Text

    shift = _relative(old, new)
    if shift is None:
        return Text("")
    delta = new - old
    text = f"{'+' if delta >= 0 else ''}{render.format_number(float(delta), 4)}"
    if shift != float("inf"):
        text += f" ({shift:+.1%})"
    return Text(text, style="bold red" if abs(shift) > LARGE_SHIFT else "yellow")


def _print_diff(out: Console, a: DatasetVersion, b: DatasetVersion,
                result: DatasetDiff) -> None:
    from rich.text import Text

    out.print(Text.assemble(("Diff ", "bold"), (a.uri, "bold magenta"), " → ",
                            (b.uri, "bold magenta")))
    if result.same_content:
        same = "same content" if a.digest == b.digest else "same schema, rows and statistics"
        out.print(Text(f"no differences ({same})", style="green"))
        return

    out.print()
    changes = len(result.added_columns) + len(result.removed_columns) + len(result.type_changes)
    if not changes:
        out.print(Text.assemble(("Schema", "bold"), ("  unchanged", "dim")))
    else:
        out.print(Text(f"Schema ({changes} change{'s' if changes != 1 else ''})", style="bold"))
        for column, kind in result.added_columns.items():
            out.print(Text.assemble(("  + ", "bold green"), (column, "green"), f"  {kind}"))
        for column, kind in result.removed_columns.items():
            out.print(Text.assemble(("  - ", "bold red"), (column, "red"), f"  {kind}"))
        for column, (was, now) in sorted(result.type_changes.items()):
            out.print(Text.assemble(("  ~ ", "bold yellow"), (column, "yellow"),
                                    f"  {was} → ", (now, "bold yellow")))

    out.print()
    old_rows, new_rows = result.rows
    rows = Text.assemble(("Rows", "bold"), f"  {old_rows:,} → ")
    if old_rows == new_rows:
        rows.append(f"{new_rows:,}")
        rows.append("  unchanged", style="dim")
    else:
        rows.append(f"{new_rows:,}", style="bold yellow")
        rows.append("  ")
        rows.append_text(_change(old_rows, new_rows))
    out.print(rows)

    out.print()
    if not result.statistics:
        out.print(Text.assemble(("Column statistics", "bold"), ("  unchanged", "dim")))
        return
    order = [f.name for f in b.schema]
    columns = sorted(result.statistics, key=lambda c: order.index(c) if c in order else 0)
    shifted = sum(len(result.statistics[c]) for c in columns)
    out.print(Text(f"Column statistics ({shifted} shift{'s' if shifted != 1 else ''} in "
                   f"{len(columns)} column{'s' if len(columns) != 1 else ''})", style="bold"))
    table = render.listing(f"shifts beyond {LARGE_SHIFT:.0%} in red")
    table.add_column("Column", style="cyan", overflow="fold")
    table.add_column("Statistic", no_wrap=True)
    table.add_column("Old", justify="right", overflow="fold")
    table.add_column("New", justify="right", overflow="fold")
    table.add_column("Change", justify="right", no_wrap=True)
    stat_order = [*_PROFILE_STATS, "top"]
    for column in columns:
        stats = result.statistics[column]
        for i, stat in enumerate(sorted(stats, key=lambda s: stat_order.index(s)
                                        if s in stat_order else len(stat_order))):
            was, now = stats[stat]
            if stat == "top":
                cells = (_top(was), Text(_top(now), style="bold yellow"), Text(""))
            else:
                cells = (_stat(was), Text(_stat(now), style="bold yellow"), _change(was, now))
            table.add_row(column if i == 0 else "", stat, *cells)
    out.print(table)


# -- validate ---------------------------------------------------------------------------------

def load_expectations(file: Path) -> list[Any]:
    """Run a Python file and return its module-level ``expectations`` list."""
    import runpy
    import sys
    import traceback

    path = file.expanduser()
    if not path.exists():
        raise InvalidValueError(f"expectations file {str(file)!r} does not exist",
                                field="expectations")
    if not path.is_file():
        raise InvalidValueError(f"expectations file {str(file)!r} is not a file",
                                field="expectations")
    folder = str(path.resolve().parent)
    added = folder not in sys.path
    if added:  # the file may import modules that sit beside it, as a test file would
        sys.path.insert(0, folder)
    try:
        namespace = runpy.run_path(str(path), run_name="__tidal_expectations__")
    except SyntaxError as error:
        raise InvalidValueError(f"expectations file {str(file)!r} does not parse: {error.msg} "
                                f"(line {error.lineno})", field="expectations") from error
    except Exception as error:  # the user's own code: report where it failed, in one line
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if Path(f.filename).resolve() == path.resolve()]
        where = f" (line {frames[-1].lineno})" if frames else ""
        message = getattr(error, "message", None) or str(error)
        raise InvalidValueError(f"expectations file {str(file)!r} raised "
                                f"{type(error).__name__}{where}: {message}",
                                field="expectations") from error
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    if "expectations" not in namespace:
        raise InvalidValueError(
            f"expectations file {str(file)!r} defines no module-level list named "
            "'expectations'; set expectations = [tidal.datasets.expect.not_null('col'), ...]",
            field="expectations")
    found = namespace["expectations"]
    if not isinstance(found, (list, tuple)):
        raise InvalidValueError(
            f"'expectations' in {str(file)!r} must be a list of tidal.datasets.expect "
            f"expectations, got {type(found).__name__}", field="expectations")
    return list(found)


@app.command("validate", help=(
    "Check a dataset version against expectations and store the report with it.\n\n"
    "FILE is a Python file that defines a module-level list named 'expectations', built with "
    "tidal.datasets.expect, for example:\n\n"
    "    from tidal.datasets import expect\n\n"
    "    expectations = \\[expect.not_null('user_id'), expect.between('amount', 0, 10_000)]"
    "\n\n"
    "The file is run as Python code, like a test file. The exit code is 0 whether or not "
    "expectations fail, unless --fail is given: then it is 1 when any fails.\n\n" + REF_HELP))
def validate_dataset(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NAME[/VERSION]", help=REF_HELP,
                                       show_default=False)],
    expectations: Annotated[Path, typer.Option(
        "--expectations", "-e", metavar="FILE.py", show_default=False,
        help="Python file defining a list named 'expectations'.")],
    fail: Annotated[bool, typer.Option(
        "--fail", help="Exit with code 1 when any expectation fails.")] = False,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Check a dataset version against expectations."""
    parse_ref(ref)  # a malformed reference fails before the user's file runs
    rules = load_expectations(expectations)
    ws = open_workspace(ctx, workspace, artifacts)
    version = _get(ws, ref)
    report = version.validate(rules)
    if json:
        render.print_json(report.to_dict())
    else:
        _print_report(render.console(), report, fail)
    if fail and not report.passed:
        raise typer.Exit(1)


def _print_report(out: Console, report: ValidationReport, fail: bool) -> None:
    from rich.text import Text

    out.print(Text.assemble(("Validation of ", "bold"), (report.dataset, "bold magenta")))
    table = render.listing()
    table.add_column("Expectation", overflow="fold")
    table.add_column("Column", style="cyan", overflow="fold")
    table.add_column("Passed", justify="center", no_wrap=True)
    table.add_column("Failing", justify="right", no_wrap=True)
    table.add_column("Sample", overflow="fold")
    table.add_column("Detail", overflow="fold")
    for r in report.results:
        sample = ", ".join(render.format_value(v) if v is not None else "null"
                           for v in r.sample)
        mark = Text("✓", style="bold green") if r.passed else Text("✗", style="bold red")
        table.add_row(r.expectation, r.column or render.MISSING, mark,
                      f"{r.failing_count:,}" if not r.passed else "0",
                      sample or render.MISSING, r.detail)
    out.print(table)
    failed = len(report.failures)
    total = len(report.results)
    if report.passed:
        out.print(Text(f"passed: all {total} expectation{'s' if total != 1 else ''} hold",
                       style="bold green"))
    else:
        summary = Text(f"failed: {failed} of {total} expectation{'s' if total != 1 else ''} "
                       "failed", style="bold red")
        if not fail:
            summary.append("  (exit code 0; --fail exits 1 on failure)", style="dim")
        out.print(summary)
    out.print(Text(f"report stored with {report.dataset}", style="dim"))
