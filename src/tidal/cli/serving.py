"""``tidal deploy``, ``tidal serve`` and ``tidal endpoints``: routes in the metadata store, the
server that answers with them, and what they were over time."""

from __future__ import annotations

from typing import Annotated

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, JsonOption, WorkspaceOption, open_workspace

app = typer.Typer(help="Serving endpoints: their routes and the history of their changes.",
                  no_args_is_help=True)


def _print_endpoint(endpoint: object, *, json: bool) -> None:
    data = endpoint.to_dict()  # type: ignore[attr-defined]
    if json:
        render.print_json(data)
        return
    out = render.console()
    total = sum(r["weight"] for r in data["routes"])
    out.print(f"[bold]{data['name']}[/] revision {data['revision']} ({data['action']}, "
              f"mode {data['mode']})")
    table = render.listing()
    table.add_column("route")
    table.add_column("share", justify="right")
    for route in data["routes"]:
        table.add_row(route["uri"], f"{100 * route['weight'] / total:.1f}%")
    for uri in data["shadows"]:
        table.add_row(uri, "shadow")
    out.print(table)
    feature_service = data["feature_service"] or render.MISSING
    out.print(f"batching: up to {data['max_batch_size']} rows, waiting up to "
              f"{data['max_wait_ms']:g} ms; inputs logged: {100 * data['log_sample']:g}%; "
              f"feature service: {feature_service}")


def deploy(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name (created if new).")],
    route: Annotated[list[str] | None, typer.Option(
        "--route", "-r", metavar="URI=WEIGHT",
        help="A live route and its share, e.g. ctr@champion=90; repeat for canary or A/B. "
             "Replaces all live routes.")] = None,
    shadow: Annotated[list[str] | None, typer.Option(
        "--shadow", metavar="URI", help="A version that gets a copy of the traffic; its "
                                        "answers are logged, never returned. Repeatable.")]
    = None,
    no_shadow: Annotated[bool, typer.Option("--no-shadow", help="Remove the shadows.")]
    = False,
    mode: Annotated[str | None, typer.Option(
        "--mode", help="canary (split at random by weight) or ab (sticky by the request's "
                       "key).")] = None,
    max_batch_size: Annotated[int | None, typer.Option(
        "--max-batch-size", help="Rows per predict call when requests are batched (1: no "
                                 "batching).")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(
        "--max-wait-ms", help="How long a batch may wait to fill (0: only what arrived while "
                              "the model was busy).")] = None,
    feature_service: Annotated[str | None, typer.Option(
        "--feature-service", help="Join online features of this service before predicting "
                                  "('' removes it).")] = None,
    log_sample: Annotated[float | None, typer.Option(
        "--log-sample", help="Share of requests whose inputs are logged (0-1).")] = None,
    rollback: Annotated[bool, typer.Option(
        "--rollback", help="Restore the routes and settings before the current revision.")]
    = False,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Create or change an endpoint's routes; running servers switch within seconds."""
    from tidal.errors import InvalidValueError
    from tidal.models.uri import SCHEME
    from tidal.serving import endpoints

    ws = open_workspace(ctx, workspace, artifacts)
    if rollback:
        changes = [route, shadow, mode, max_batch_size, max_wait_ms, feature_service,
                   log_sample]
        if no_shadow or any(c is not None for c in changes):
            raise InvalidValueError("--rollback restores a whole earlier revision; give it "
                                    "alone", field="rollback")
        _print_endpoint(endpoints.rollback(endpoint, workspace=ws), json=json)
        return
    if shadow and no_shadow:
        raise InvalidValueError("give --shadow or --no-shadow, not both", field="shadow")

    def uri(text: str) -> str:
        return text if text.startswith(SCHEME) else SCHEME + text

    routes = None if not route else [uri(r) for r in route]
    shadows = [] if no_shadow else (None if not shadow else [uri(s) for s in shadow])
    extra = {} if feature_service is None else {"feature_service": feature_service or None}
    result = endpoints.deploy(endpoint, routes, shadow=shadows, mode=mode,
                              max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                              log_sample=log_sample, workspace=ws, **extra)
    _print_endpoint(result, json=json)


def serve(
    ctx: typer.Context,
    endpoint_names: Annotated[list[str] | None, typer.Argument(
        metavar="[ENDPOINT]...", help="Endpoints to serve (default: all, new ones included).")]
    = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to bind; anything but loopback needs --token-file.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p")] = 8080,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.")] = 1,
    model_threads: Annotated[int | None, typer.Option(
        "--model-threads", metavar="N",
        help="Threads each worker's models may use (OpenMP, BLAS); default: the CPUs divided "
             "among the workers. OMP_NUM_THREADS and the like, when set, win.")] = None,
    token_file: Annotated[str | None, typer.Option(
        "--token-file", help="File holding the bearer token requests must carry.")] = None,
    max_body_bytes: Annotated[int, typer.Option(
        "--max-body-bytes", help="Largest request body accepted.")] = 4 * 1024 * 1024,
    reload_interval: Annotated[float, typer.Option(
        "--reload-interval", metavar="SECONDS", help="How often routes are re-read.")] = 2.0,
    trust: Annotated[bool, typer.Option(
        "--trust", help="Allow models stored as pickles (river, pyfunc) to load.")] = False,
    no_log: Annotated[bool, typer.Option(
        "--no-log", help="Do not write the prediction log.")] = False,
    header_timeout: Annotated[float, typer.Option(
        "--header-timeout", metavar="SECONDS",
        help="Time from a request's first byte to the end of its headers; slower clients get "
             "408 and are disconnected.")] = 10.0,
    body_timeout: Annotated[float, typer.Option(
        "--body-timeout", metavar="SECONDS",
        help="Longest wait between two pieces of a request's body before disconnecting.")]
    = 30.0,
    idle_timeout: Annotated[float, typer.Option(
        "--idle-timeout", metavar="SECONDS",
        help="How long a connection may stay open without a request.")] = 75.0,
    max_connections: Annotated[int, typer.Option(
        "--max-connections", metavar="N",
        help="Connections each worker serves at once; beyond, requests get 503.")] = 1000,
    max_rows_per_request: Annotated[int, typer.Option(
        "--max-rows-per-request", metavar="N",
        help="Most rows in one request; larger requests get 413.")] = 10_000,
    quarantine_after: Annotated[int, typer.Option(
        "--quarantine-after", metavar="N",
        help="With several workers: crashes of one endpoint's model (a kill by the OOM "
             "killer, or a crash not pinned on it) that quarantine the endpoint; a segfault "
             "in the model's own thread quarantines it at once.")] = 2,
    quarantine_window: Annotated[float, typer.Option(
        "--quarantine-window", metavar="SECONDS",
        help="The window in which --quarantine-after crashes are counted.")] = 600.0,
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Answer predictions over HTTP (Open Inference Protocol v2, /predict) until stopped."""
    from tidal.errors import InvalidValueError
    from tidal.serving.app import ServerSettings
    from tidal.serving.server import read_token
    from tidal.serving.server import serve as run_server

    if max_body_bytes < 1024 or reload_interval <= 0:
        raise InvalidValueError("--max-body-bytes must be at least 1024 and --reload-interval "
                                "positive", field="max_body_bytes")
    try:
        settings = ServerSettings(
            max_body_bytes=max_body_bytes, reload_interval=reload_interval, trust=trust,
            log_predictions=not no_log, header_timeout=header_timeout,
            body_timeout=body_timeout, idle_timeout=idle_timeout,
            max_connections=max_connections, max_rows_per_request=max_rows_per_request)
    except InvalidValueError as error:  # named as the option the user typed
        option = f"--{(error.field or '').replace('_', '-')}"
        raise InvalidValueError(f"{option}: {error.message}", field=error.field) from None
    ws = open_workspace(ctx, workspace, artifacts)
    token = None if token_file is None else read_token(token_file)
    run_server(endpoint_names or None, host=host, port=port, workers=workers,
               model_threads=model_threads, token=token, settings=settings, workspace=ws,
               log_level=log_level, quarantine_after=quarantine_after,
               quarantine_window=quarantine_window,
               announce=lambda line: render.error_console().print(line, markup=False))


@app.command("list")
def list_endpoints(ctx: typer.Context, json: JsonOption = False,
                   workspace: WorkspaceOption = None, artifacts: ArtifactsOption = None) -> None:
    """Every endpoint with its live routes and shares."""
    from tidal.serving.endpoints import list_endpoints as all_endpoints

    found = all_endpoints(workspace=open_workspace(ctx, workspace, artifacts))
    if json:
        render.print_json([e.to_dict() for e in found])
        return
    table = render.listing(f"{len(found)} endpoint{'s' if len(found) != 1 else ''}")
    for column in ("endpoint", "revision", "mode", "routes", "shadows"):
        table.add_column(column)
    for e in found:
        total = sum(r.weight for r in e.config.routes)
        routes = ", ".join(f"{r.uri} {100 * r.weight / total:.0f}%" for r in e.config.routes)
        table.add_row(e.name, str(e.revision), e.config.mode, routes,
                      ", ".join(e.config.shadows) or render.MISSING)
    render.console().print(table)


@app.command("show")
def show(ctx: typer.Context, endpoint: str, json: JsonOption = False,
         workspace: WorkspaceOption = None, artifacts: ArtifactsOption = None) -> None:
    """An endpoint's current routes and settings."""
    from tidal.serving.endpoints import get_endpoint

    _print_endpoint(get_endpoint(endpoint, workspace=open_workspace(ctx, workspace, artifacts)),
                    json=json)


@app.command("history")
def history(ctx: typer.Context, endpoint: str, json: JsonOption = False,
            workspace: WorkspaceOption = None, artifacts: ArtifactsOption = None) -> None:
    """Every revision of an endpoint, newest first: who changed what, when."""
    from tidal.serving.endpoints import endpoint_history

    revisions = endpoint_history(endpoint, workspace=open_workspace(ctx, workspace, artifacts))
    if json:
        render.print_json([r.to_dict() for r in revisions])
        return
    table = render.listing(f"{endpoint}: {len(revisions)} revisions")
    for column in ("revision", "action", "when", "by", "routes", "shadows"):
        table.add_column(column)
    for r in revisions:
        routes = ", ".join(f"{x.uri}={x.weight:g}" for x in r.config.routes)
        table.add_row(str(r.revision), r.action, render.format_timestamp(r.created_at),
                      r.created_by or render.MISSING, routes,
                      ", ".join(r.config.shadows) or render.MISSING)
    render.console().print(table)
