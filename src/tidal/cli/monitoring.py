"""``tidal monitor``: drift of an endpoint's traffic from a reference, its performance window
by window, and the alerts its rules sent."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, JsonOption, WorkspaceOption, open_workspace

if TYPE_CHECKING:
    import pandas as pd

    from tidal.monitoring.log_window import LogWindow
    from tidal.store.workspace import Workspace

app = typer.Typer(help="Monitoring: drift, performance and alerts of serving endpoints.",
                  no_args_is_help=True)

_FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")
#: Metric headings short enough that a table of every metric fits a terminal.
_HEADINGS = {"balanced_accuracy": "bal. acc.", "precision": "prec.", "roc_auc": "AUC",
             "log_loss": "log loss"}

LastOption = Annotated[str | None, typer.Option(
    "--last", metavar="DURATION", help="Only the log of this span before now, e.g. 1h, 30m, "
                                       "7d (default: the whole log).")]
RequestsOption = Annotated[int | None, typer.Option(
    "--requests", metavar="N", help="Only the latest N requests.")]


def _plain(value: Any) -> Any:
    """A cell shown as written, never read as Rich markup (names and messages come from
    users and data)."""
    from rich.text import Text

    return Text(render.format_value(value))


def _window(endpoint: str, last: str | None, requests: int | None, ws: Workspace,
            route: str | None = None) -> LogWindow:
    from tidal.durations import parse_duration
    from tidal.monitoring.log_window import read_window

    span = None if last is None else parse_duration(last, "--last")
    return read_window(endpoint, last=span, requests=requests, route=route, workspace=ws)


def _reference(reference: str, ws: Workspace) -> tuple[pd.DataFrame, str]:
    """The reference sample and how to name it: a Parquet/CSV path or URL, else a dataset
    reference (datasets:/NAME/VERSION, NAME/VERSION or NAME)."""
    import pyarrow as pa

    from tidal.data.uri import URI_PREFIX, parse_ref

    if not reference.startswith(URI_PREFIX) and (
            "://" in reference or reference.lower().endswith(_FILE_SUFFIXES)):
        from tidal.data.ingest import open_source

        source = open_source(reference)
        table = pa.Table.from_batches(list(source.batches), schema=source.schema)
        return table.to_pandas(), source.description
    from tidal.data.versions import get

    name, version = parse_ref(reference)
    found = get(name, version, workspace=ws)
    return found.to_pandas(), f"{URI_PREFIX}{found.name}/{found.version}"


@app.command("drift")
def drift_command(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint whose logged inputs are compared.")],
    reference: Annotated[str, typer.Option(
        "--reference", "-r", metavar="DATASET_OR_PATH",
        help="What the traffic is compared with: a dataset (datasets:/NAME/VERSION, "
             "NAME/VERSION, NAME) or a Parquet/CSV file or URL.")],
    last: LastOption = None,
    requests: RequestsOption = None,
    column: Annotated[list[str] | None, typer.Option(
        "--column", "-c", help="Compare only this column; repeatable (default: every "
                               "reference column the traffic has).")] = None,
    correction: Annotated[str, typer.Option(
        "--correction", metavar="none|bonferroni|bh",
        help="Adjust the tests' p-values for the number of columns tested: bonferroni (no "
             "false alarm on any column, at the level) or bh (false discovery rate).")]
    = "none",
    html: Annotated[str | None, typer.Option(
        "--html", metavar="PATH", help="Also write a self-contained HTML report here.")]
    = None,
    title: Annotated[str | None, typer.Option("--title", help="Title of the HTML report.")]
    = None,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Compare an endpoint's recent inputs with a reference sample, column by column."""
    from tidal.errors import InvalidValueError
    from tidal.monitoring.drift import drift
    from tidal.monitoring.html_report import write_drift_html

    ws = open_workspace(ctx, workspace, artifacts)
    base, described = _reference(reference, ws)
    window = _window(endpoint, last, requests, ws)
    current = window.inputs
    if current.empty:
        raise InvalidValueError(f"endpoint {endpoint!r} logged no inputs in this window; "
                                "widen --last or --requests, or check that it logs inputs "
                                "(log_sample > 0)", field="endpoint")
    names = column or [c for c in base.columns if c in current.columns]
    if not names:
        raise InvalidValueError(f"the reference ({', '.join(map(str, base.columns))}) and the "
                                f"logged inputs ({', '.join(map(str, current.columns))}) share "
                                "no column", field="reference")
    report = drift(base, current, names, correction=correction)
    written = None if html is None else write_drift_html(
        html, report, base, current, title=title or f"Drift of {endpoint} from {described}")
    if written is not None:
        render.error_console().print(f"HTML report written to {written}", markup=False)
    if json:
        render.print_json({"endpoint": endpoint, "reference": described,
                           "window": {"start": window.start, "end": window.end,
                                      "rows": len(current)},
                           **report.to_dict(), "html": written})
        return
    out = render.console()
    out.print(_plain(f"{endpoint}: {len(current)} logged rows against {described} "
                     f"({len(base)} rows)"))
    table = render.listing()
    corrected = report.correction != "none"
    headings = ("column", "type", "test", "statistic", *(("adjusted",) if corrected else ()),
                "threshold", "PSI", "drifted")
    for heading in headings:
        table.add_column(heading, justify="right" if heading in (
            "statistic", "adjusted", "threshold", "PSI") else "left")
    for c in report.columns:
        adjusted = (render.MISSING if c.adjusted is None
                    else render.format_number(c.adjusted, 4),) if corrected else ()
        table.add_row(_plain(c.column), c.kind, c.test, render.format_number(c.statistic, 4),
                      *adjusted, render.format_number(c.threshold, 4),
                      render.format_number(c.psi, 4),
                      "[bold red]yes[/]" if c.drifted else "[green]no[/]")
    render.print_whole(table)
    verdict = "[bold red]drifted[/]" if report.drifted else "[green]not drifted[/]"
    out.print(f"dataset {verdict}: {len(report.drifted_columns)} of {len(report.columns)} "
              f"columns ({100 * report.drifted_share:.0f}%; drifts at "
              f"{100 * report.drift_share:.0f}%"
              f"{'; p-values adjusted: ' + report.correction if corrected else ''})")


def _size(text: str | None, option: str) -> timedelta | int | None:
    """A window size as typed: a whole number of requests ("500") or a duration ("15m")."""
    from tidal.durations import parse_duration
    from tidal.ids import parse_count

    if text is None:
        return None
    stripped = text.strip()
    count = parse_count(stripped)
    return count if count is not None else parse_duration(stripped, option)


def _figure(value: Any) -> str:
    """A figure to four significant digits; NaN (not computable there) as a dash."""
    return render.MISSING if render.is_missing(value) else render.format_number(value, 4)


def _span(start: Any, end: Any) -> str:
    """``2026-03-02 10:00:00 – 10:15:00``: the end's date only when it differs."""
    first, last = render.format_timestamp(start), render.format_timestamp(end)
    return f"{first} – {last[11:] if last[:10] == first[:10] else last}"


def _performance_table(frame: pd.DataFrame, metrics: list[str]) -> Any:
    table = render.listing()
    grouped = [c for c in ("route", "model_version") if c in frame.columns]
    table.add_column("window", min_width=19)  # wraps after the start past print_whole's limit
    for name in grouped:
        table.add_column("version" if name == "model_version" else name, overflow="fold")
    for heading in ("requests", "errors", "p50 ms", "p95 ms", "p99 ms", "labelled",
                    *(_HEADINGS.get(m, m) for m in metrics)):
        table.add_column(heading, justify="right", min_width=len(heading))
    for row in frame.to_dict("records"):
        cells = [_span(row["start"], row["end"]), *(_plain(row[name]) for name in grouped),
                 str(row["requests"]), f"{100 * row['error_rate']:.1f}%",
                 *(_figure(row[f"latency_p{q}_ms"]) for q in (50, 95, 99)),
                 str(row["labelled"]), *(_figure(row[m]) for m in metrics)]
        table.add_row(*cells)
    return table


@app.command("performance")
def performance_command(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint whose prediction log is read.")],
    last: LastOption = None,
    requests: RequestsOption = None,
    route: Annotated[str | None, typer.Option("--route", help="Only this route.")] = None,
    window: Annotated[str | None, typer.Option(
        "--window", metavar="SIZE", help="Cut the log into windows of a duration (15m) or a "
                                         "number of requests (500); default: one window.")]
    = None,
    sliding: Annotated[str | None, typer.Option(
        "--sliding", metavar="STEP", help="Sliding windows starting STEP apart (same kind as "
                                          "--window); default: tumbling.")] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", "-m", help="A model metric to compute on labelled rows; repeatable "
                               "(default: those that fit the labels).")] = None,
    overall: Annotated[bool, typer.Option(
        "--overall", help="One row per window for the whole endpoint, not per route and "
                          "version.")] = False,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Requests, error rate, latency and model metrics of an endpoint, window by window."""
    from tidal.errors import InvalidValueError
    from tidal.models.gates import METRICS
    from tidal.monitoring.performance import check_metrics, window_performance

    check_metrics(metric or None)
    size, step = _size(window, "--window"), _size(sliding, "--sliding")
    if step is not None and size is None:
        raise InvalidValueError("--sliding needs --window", field="sliding")
    ws = open_workspace(ctx, workspace, artifacts)
    log = _window(endpoint, last, requests, ws, route)
    frame = window_performance(log, size=size, step=step, metrics=metric or None,
                               by=() if overall else ("route", "model_version"))
    if json:
        render.print_json(frame.to_dict("records"))
        return
    out = render.console()
    if frame.empty:
        out.print(_plain(f"{endpoint} logged no requests in this window"))
        return
    metrics = [c for c in frame.columns if c in METRICS]
    render.print_whole(_performance_table(frame, metrics))
    if frame["labelled"].sum() == 0:
        out.print("[dim]no labels yet: send feedback to see model metrics[/]")


def _outcomes(actions: list[dict[str, Any]]) -> str:
    parts = []
    for action in actions:
        if action.get("ok"):
            parts.append(f"{action['action']} ok")
        elif "outcome" in action:
            parts.append(f"{action['action']} {action['outcome']}")
        else:
            parts.append(f"{action['action']} failed: {action.get('error', '?')}")
    return ", ".join(parts) or render.MISSING


@app.command("alerts")
def alerts_command(
    ctx: typer.Context,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule's alerts.")] = None,
    subject: Annotated[str | None, typer.Option(
        "--subject", help="Only alerts about this subject, e.g. 'web'.")] = None,
    kind: Annotated[str | None, typer.Option(
        "--kind", help="Only firing, repeat or resolved events.")] = None,
    firing: Annotated[bool, typer.Option(
        "--firing", help="List the alerts firing now instead of the events.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Most events listed.")] = 50,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Alert events, newest first: what fired, repeated or resolved, and what it notified."""
    from tidal.monitoring.alerts import list_alert_events, list_alert_states

    ws = open_workspace(ctx, workspace, artifacts)
    if firing:
        states = [s for s in list_alert_states(rule=rule, firing=True, workspace=ws)
                  if subject is None or s.subject == subject]
        if json:
            render.print_json(states)
            return
        table = render.listing(f"{len(states)} alerts firing")
        for heading in ("rule", "subject", "since", "value", "notices"):
            table.add_column(heading, overflow="fold")
        for s in states:
            table.add_row(_plain(s.rule), _plain(s.subject), render.format_timestamp(s.fired_at),
                          _figure(s.last_value), str(s.notifications))
        render.console().print(table)
        return
    events = list_alert_events(rule=rule, subject=subject, kind=kind, limit=limit,
                               workspace=ws)
    if json:
        render.print_json(events)
        return
    table = render.listing(f"{len(events)} alert events")
    table.add_column("time", no_wrap=True)
    for heading in ("rule", "subject", "kind", "message", "actions"):
        table.add_column(heading, overflow="fold")
    styles = {"firing": "bold red", "repeat": "red", "resolved": "green"}
    for e in events:
        table.add_row(render.format_timestamp(e.at), _plain(e.rule), _plain(e.subject),
                      f"[{styles[e.kind]}]{e.kind}[/]", _plain(e.message),
                      _plain(_outcomes(e.actions)))
    render.console().print(table)
