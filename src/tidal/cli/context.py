"""What the root options hand down to every command: where the workspace is.

The workspace is opened on the first command that asks for it, never for ``--help``, so that
help and usage errors cost no database connection and no heavy import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tidal.store.workspace import Workspace


WORKSPACE_HELP = ("Workspace folder, SQLite file or postgresql:// URL (default: TIDAL_HOME or "
                  "TIDAL_DB_URL, then tidal.toml, then ./.tidal).")
ARTIFACTS_HELP = ("Artifact store: a folder or an fsspec URL such as s3://bucket/prefix "
                  "(default: TIDAL_ARTIFACTS, then tidal.toml, then the workspace's "
                  "artifacts folder).")

#: ``--workspace`` and ``--artifacts`` on a command: the same as on the root, and they win
#: over it, so that ``tidal -w DIR runs list`` and ``tidal runs list -w DIR`` both work.
WorkspaceOption = Annotated[str | None, typer.Option(
    "--workspace", "-w", metavar="PATH_OR_URL", help=WORKSPACE_HELP,
    rich_help_panel="Workspace")]
ArtifactsOption = Annotated[str | None, typer.Option(
    "--artifacts", metavar="PATH_OR_URL", help=ARTIFACTS_HELP, rich_help_panel="Workspace")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@dataclass
class CliState:
    """The root options: ``--workspace`` and ``--artifacts`` as given (None: the default)."""

    uri: str | None = None
    artifacts: str | None = None
    _workspace: Workspace | None = field(default=None, repr=False)

    def workspace(self) -> Workspace:
        """Open the workspace (once) and make it the current one."""
        if self._workspace is None:
            import tidal

            self._workspace = tidal.workspace(self.uri, self.artifacts)
        return self._workspace

    def command_prefix(self) -> str:
        """``tidal`` plus the root options that were given, for follow-up commands to copy."""
        import shlex

        parts = ["tidal"]
        if self.uri is not None:
            parts += ["-w", shlex.quote(self.uri)]
        if self.artifacts is not None:
            parts += ["--artifacts", shlex.quote(self.artifacts)]
        return " ".join(parts)


def state_of(ctx: typer.Context) -> CliState:
    """The root options of this invocation (defaults when a sub-app is run on its own)."""
    return ctx.ensure_object(CliState)


def open_workspace(ctx: typer.Context, uri: str | None = None,
                   artifacts: str | None = None) -> Workspace:
    """The workspace of this invocation; a command's own options override the root's."""
    state = state_of(ctx)
    if uri is not None:
        state.uri = uri
    if artifacts is not None:
        state.artifacts = artifacts
    return state.workspace()
