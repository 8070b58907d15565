"""``tidal models export``: convert a registered model version to ONNX, check it against the
original on the version's input example, and register it as the model's next version.

The command is a plain function, ``export_command``, added to the ``models`` app as
``export``; it prints the new version, how far its outputs were from the source's against
the tolerance, and the stored size and single-row latency before and after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, WorkspaceOption, open_workspace
from tidal.errors import InvalidValueError

if TYPE_CHECKING:
    from rich.console import Console

    from tidal.models.export import ExportReport

#: Formats ``--format`` accepts.
FORMATS = ("onnx",)

REF_HELP = "NAME/VERSION, NAME@ALIAS or NAME/latest, optionally with models:/ in front."


def export_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NAME/VERSION", help=REF_HELP,
                                       show_default=False)],
    format: Annotated[str, typer.Option(
        "--format", metavar="FORMAT", show_default=False,
        help="The format to export to: onnx (the only one).")],
    quantize: Annotated[str | None, typer.Option(
        "--quantize", metavar="MODE", show_default=False,
        help="dynamic: store the weights of matrix products as int8 (smaller, usually "
             "faster; outputs checked within rtol=0.05, atol=0.05).")] = None,
    trust: Annotated[bool, typer.Option(
        "--trust", help="Load a source stored in a format that can run code (pickle, "
                        "scikit-learn types outside the trusted list).")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Export a model version to ONNX and register it as the model's next version.

    The converted graph is run on the version's input example next to the original; it is
    registered only when every output matches within the tolerance (by default rtol=1e-4,
    atol=1e-5 and equal labels), linked to the version it came from, its run and its
    training datasets.
    """
    from tidal.models.export import export_onnx
    from tidal.models.uri import parse_model_uri

    if format.strip().lower() not in FORMATS:
        raise InvalidValueError(f"format {format!r} is not one tidal models export writes; "
                                f"use --format {' or '.join(FORMATS)}", field="format")
    ref_uri = str(parse_model_uri(ref))  # a malformed reference fails before any lookup
    ws = open_workspace(ctx, workspace, artifacts)
    report = export_onnx(ref_uri, quantize=quantize, trust=trust, workspace=ws)
    if json:
        render.print_json(report.to_dict())
        return
    print_report(render.console(), report)


def _latency(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def print_report(out: Console, report: ExportReport) -> None:
    from rich.text import Text

    out.print(Text.assemble(("Exported ", "bold"), (report.source.uri, "bold magenta"), " → ",
                            (report.exported.uri, "bold magenta"),
                            (f"  onnx{', quantized (dynamic)' if report.quantize else ''}",
                             "dim")))
    table = render.listing(
        f"checked on the input example ({report.rows_compared} rows); latency: median of "
        "single-row predict calls")
    table.add_column("", style="cyan", no_wrap=True)
    table.add_column("Source", justify="right", overflow="fold")
    table.add_column("ONNX", justify="right", overflow="fold")
    table.add_column("Change", justify="right", no_wrap=True)
    table.add_row("version", report.source.uri, report.exported.uri, "")
    table.add_row("flavor", report.source.flavor, report.exported.flavor, "")
    before, after = report.size_before, report.size_after
    table.add_row("size", render.format_bytes(before), render.format_bytes(after),
                  f"{before / after:.1f}x smaller" if 0 < after <= before
                  else f"{after / before:.1f}x larger" if before else "")
    speed = report.speedup
    table.add_row("single-row latency", _latency(report.latency_before_s),
                  _latency(report.latency_after_s),
                  Text(f"{speed:.1f}x faster" if speed >= 1 else f"{1 / speed:.1f}x slower",
                       style="green" if speed >= 1 else "yellow"))
    table.add_row("max |difference|", "", f"{report.max_abs_diff:.3g}",
                  Text(f"within {report.tolerance}", style="green"))
    out.print(table)
