"""``tidal loop``: apply loop policies, run their controllers (long-running or one tick from
cron) and read the timeline of what they decided."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, JsonOption, WorkspaceOption, open_workspace

if TYPE_CHECKING:
    from tidal.loop.records import Decision

app = typer.Typer(help="The closed loop: policies, controllers and their decisions.",
                  no_args_is_help=True)

#: Colour of each outcome in the timeline: good news green, bad red, the rest plain.
_STYLES = {"fired": "yellow", "trained": "cyan", "passed": "green", "done": "bold green",
           "started": "cyan", "rejected": "red", "failed": "bold red", "skipped": "dim",
           "cooldown": "dim", "idle": "dim"}


def decision_row(decision: Decision) -> tuple[str, ...]:
    """A decision as the cells of a timeline row: time, kind, outcome, model, summary."""
    style = _STYLES.get(decision.outcome, "")
    if decision.kind == "rollback":
        style = "bold red"
    outcome = f"[{style}]{decision.outcome}[/]" if style else decision.outcome
    return (decision.time.strftime("%Y-%m-%d %H:%M:%S"), decision.kind, outcome,
            decision.model_uri or render.MISSING, decision.summary)


def timeline(decisions: list[Decision], caption: str | None = None) -> Any:
    table = render.listing(caption)
    for name in ("time (UTC)", "decision", "outcome", "model"):
        table.add_column(name, no_wrap=True)
    table.add_column("why", overflow="fold")
    for decision in decisions:
        table.add_row(*decision_row(decision))
    return table


@app.command("apply")
def apply(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Policy file (.toml or .json).")],
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Create or replace a loop policy from a file; a running controller picks it up."""
    from tidal.loop.records import apply_policy

    ws = open_workspace(ctx, workspace, artifacts)
    policy = apply_policy(path, workspace=ws)
    if json:
        render.print_json(policy.to_dict())
        return
    render.console().print(f"applied loop policy [bold]{policy.name}[/] for endpoint "
                           f"{policy.endpoint} (model {policy.model}); run it with: tidal "
                           f"loop run {policy.name}")


@app.command("list")
def list_(
    ctx: typer.Context,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Every loop policy with its controller's phase."""
    from tidal.loop.records import list_policies, read_state

    ws = open_workspace(ctx, workspace, artifacts)
    rows = [(p, read_state(p.name, workspace=ws)) for p in list_policies(workspace=ws)]
    if json:
        render.print_json([{**p.to_dict(), "phase": s.phase, "challenger": s.challenger,
                            "step": s.step} for p, s in rows])
        return
    table = render.listing()
    for name in ("policy", "endpoint", "model", "triggers", "phase"):
        table.add_column(name)
    for policy, state in rows:
        phase = state.phase if state.step is None else \
            f"{state.phase} (step {state.step + 1}, v{state.challenger})"
        table.add_row(policy.name, policy.endpoint, policy.model,
                      ", ".join(t.kind for t in policy.triggers), phase)
    render.console().print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    policy: Annotated[str, typer.Argument(help="Policy name.")],
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """A policy's settings and where its controller is."""
    from tidal.loop.records import get_policy, read_state

    ws = open_workspace(ctx, workspace, artifacts)
    found = get_policy(policy, workspace=ws)
    state = read_state(policy, workspace=ws)
    data = {**found.to_dict(), "state": {
        "phase": state.phase, "challenger": state.challenger, "step": state.step,
        "last_retrain_at": state.last_retrain_at}}
    if json:
        render.print_json(data)
        return
    render.console().print_json(render.dumps(data))


@app.command("history")
def history(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    policy: Annotated[str | None, typer.Option("--policy", help="Only this policy.")] = None,
    last: Annotated[int | None, typer.Option("--last", min=1,
                                             help="Only the latest N decisions.")] = None,
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """The timeline of an endpoint's loop decisions, each with why."""
    from tidal.loop.records import history as read_history

    ws = open_workspace(ctx, workspace, artifacts)
    decisions = read_history(endpoint, policy=policy, workspace=ws)
    if last is not None:
        decisions = decisions[-last:]
    if json:
        render.print_json([d.to_dict() for d in decisions])
        return
    if not decisions:
        render.console().print(f"no loop decisions for endpoint {endpoint} yet")
        return
    render.console().print(timeline(decisions, caption=f"loop history of {endpoint}"))


@app.command("tick")
def tick(
    ctx: typer.Context,
    policy: Annotated[str, typer.Argument(help="Policy name.")],
    json: JsonOption = False,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Run one evaluation of a policy and exit (for cron)."""
    from tidal.loop.controller import tick as run_tick

    ws = open_workspace(ctx, workspace, artifacts)
    decisions = run_tick(policy, workspace=ws)
    if json:
        render.print_json([d.to_dict() for d in decisions])
        return
    if decisions:
        render.console().print(timeline(decisions))
    else:
        render.console().print("nothing to decide")


@app.command("run")
def run(
    ctx: typer.Context,
    policy: Annotated[str, typer.Argument(help="Policy name.")],
    lease_ttl: Annotated[float, typer.Option(
        "--lease-ttl", min=1.0, help="Seconds another controller must wait before taking "
                                     "over if this one dies.")] = 30.0,
    ticks: Annotated[int | None, typer.Option("--ticks", min=1,
                                              help="Stop after N ticks.")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=0, max=65535,
        help="Serve drift and performance gauges for Prometheus on 127.0.0.1:PORT.")] = None,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Run a policy's controller until SIGTERM or Ctrl-C (one per policy at a time)."""
    import signal
    import threading

    from tidal.loop.controller import Controller

    ws = open_workspace(ctx, workspace, artifacts)
    out = render.console()

    def show_decision(decision: Decision) -> None:
        time_text, kind, outcome, model, summary = decision_row(decision)
        out.print(f"{time_text}  [bold]{kind}[/] {outcome}  {model}  {summary}",
                  highlight=False)

    gauges = None
    if metrics_port is not None:
        from tidal.monitoring.gauges import MonitoringGauges

        gauges = MonitoringGauges()
        port = gauges.serve(metrics_port)
        out.print(f"gauges at http://127.0.0.1:{port}/metrics")
    controller = Controller(policy, workspace=ws, lease_ttl=lease_ttl,
                            on_decision=show_decision, gauges=gauges)
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM,
                                                                   signal.SIGINT)}
    out.print(f"loop controller for [bold]{policy}[/] (endpoint "
              f"{controller.policy.endpoint}), ticking every {controller.policy.interval}; "
              "stop with Ctrl-C or SIGTERM")
    try:
        controller.run(stop, ticks=ticks)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if gauges is not None:
            gauges.close()
    out.print("loop controller stopped")
