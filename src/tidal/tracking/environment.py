"""Where a run ran: git commit and dirty flag, Python version, a digest of installed packages.

Each is computed once per process (and per working directory for git): starting thousands of
runs in one process must not start thousands of ``git`` subprocesses.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass

from tidal.ids import digest_bytes


@dataclass(frozen=True)
class GitState:
    commit: str | None
    dirty: bool | None


@functools.lru_cache(maxsize=16)
def git_state(directory: str) -> GitState:
    """The commit checked out in ``directory`` and whether the tree has changes; None outside
    git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=directory, capture_output=True,
                                  text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return GitState(None, None)
    status = git("status", "--porcelain", "--untracked-files=no")
    return GitState(commit, None if status is None else bool(status))


@functools.lru_cache(maxsize=1)
def packages_digest() -> str:
    """A digest of every installed distribution's name and version, sorted."""
    from importlib import metadata

    names = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}"
                    for d in metadata.distributions()})
    return digest_bytes("\n".join(names).encode())


def python_version() -> str:
    return platform.python_version()


def user_name() -> str | None:
    for variable in ("TIDAL_USER", "USER", "USERNAME", "LOGNAME"):
        if os.environ.get(variable):
            return os.environ[variable]
    return None


def host_name() -> str:
    return socket.gethostname()


def source() -> str:
    """The entry point of this process: the script or ``-m`` module, else the interpreter."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else sys.executable
    return os.path.abspath(argv0) if os.path.exists(argv0) else argv0
