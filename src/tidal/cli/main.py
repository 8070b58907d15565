"""The ``tidal`` command: a Typer app whose commands parse, call the public API and render.

Every :class:`~tidal.errors.TidalError` a command raises is shown as one red ``error:`` line
on stderr (no traceback) and ends the command with exit code 2 when the input was wrong
(a bad value, filter or setting) or 1 otherwise (a run or experiment that does not exist...).
Commands import pandas, SQLAlchemy and scikit-learn only when they run, so ``tidal --help``
starts fast.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from tidal.cli import (
    datasets,
    demo,
    experiments,
    features,
    gc,
    loop,
    models,
    monitoring,
    pipeline,
    predict,
    runs,
    scheduler,
    serving,
)
from tidal.cli.context import ARTIFACTS_HELP, WORKSPACE_HELP, CliState
from tidal.cli.render import fail
from tidal.errors import TidalError


class TidalGroup(TyperGroup):
    """The root group: turns Tidal errors raised anywhere below it into clean exits."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TidalError as error:
            raise fail(error) from None


app = typer.Typer(
    name="tidal",
    cls=TidalGroup,
    help="Tidal: track experiments, compare runs and close the MLOps loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(experiments.app, name="experiments")
app.add_typer(runs.app, name="runs")
app.add_typer(datasets.app, name="datasets")
app.add_typer(features.app, name="features")
app.add_typer(models.app, name="models")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(serving.app, name="endpoints")
app.add_typer(loop.app, name="loop")
app.add_typer(monitoring.app, name="monitor")
app.command("demo")(demo.demo)
app.command("scheduler")(scheduler.scheduler)
app.command("deploy")(serving.deploy)
app.command("serve")(serving.serve)
app.command("predict")(predict.predict)
app.command("gc")(gc.gc)


def _version(value: bool) -> None:
    if value:
        from tidal import __version__

        typer.echo(f"tidal {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    workspace: Annotated[str | None, typer.Option(
        "--workspace", "-w", metavar="PATH_OR_URL", help=WORKSPACE_HELP)] = None,
    artifacts: Annotated[str | None, typer.Option(
        "--artifacts", metavar="PATH_OR_URL", help=ARTIFACTS_HELP)] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print Tidal's version and exit.")] = False,
) -> None:
    ctx.obj = CliState(workspace, artifacts)


def run() -> None:
    """Entry point of the ``tidal`` script."""
    app(prog_name="tidal")


if __name__ == "__main__":
    run()
