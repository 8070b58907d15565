"""Fixtures for the command line: a runner and a real SQLite workspace with known runs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tidal.cli.main import app
from tidal.store.workspace import close_all

#: Wide enough that tables show every column; JSON is what most tests parse.
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}

Invoke = Callable[..., Result]


@pytest.fixture(autouse=True)
def _fresh_workspaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No workspace is open or current across tests, and none leaks in from TIDAL_*."""
    for name in list(os.environ):
        if name.startswith("TIDAL_") and name != "TIDAL_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("TIDAL_SYSTEM_METRICS_INTERVAL", "0")
    monkeypatch.chdir(tmp_path)
    close_all()
    yield
    close_all()


@pytest.fixture
def cli() -> Invoke:
    """``cli("runs", "list", ...)``: run the tidal command in process, stderr kept apart."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
        return runner.invoke(app, list(args), env={**ENV, **(env or {})},
                             catch_exceptions=False)

    return invoke


@pytest.fixture
def ws_dir(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@dataclass(frozen=True)
class Populated:
    """What the ``populated`` workspace holds."""

    path: Path
    alpha: list[str]  # three runs of experiment "alpha", oldest first
    beta: str  # the one run of "beta"
    parent: str  # "sweep": the parent of the "gamma" children
    children: list[str]
    failed: str  # a failed run of "gamma"

    @property
    def all_ids(self) -> list[str]:
        return [*self.alpha, self.beta, self.parent, *self.children, self.failed]


@pytest.fixture
def populated(ws_dir: Path) -> Populated:
    """A workspace with experiments alpha (3 runs), beta (1) and gamma (a parent, two
    children and a failed run), then closed so that the command opens it itself."""
    import tidal

    ws = tidal.workspace(ws_dir)
    alpha = []
    for i, (model, lr, acc, loss) in enumerate([("rf", 0.1, 0.80, 0.50),
                                                ("lgbm", 0.05, 0.90, 0.30),
                                                ("lgbm", 0.01, 0.85, 0.40)]):
        with tidal.start_run("alpha", name=f"alpha-{i}", params={"model": model, "lr": lr},
                             tags={"team": "recs"}, workspace=ws, system_metrics=False) as run:
            for step in range(5):
                run.log_metric("loss", loss + (4 - step) * 0.1, step=step)
            run.log_metric("acc", acc)
            run.log_dict({"model": model}, "config.json")
        alpha.append(run.id)
    with tidal.start_run("beta", name="beta-0", params={"model": "linear"}, workspace=ws,
                         system_metrics=False) as run:
        run.log_metric("acc", 0.7)
        run.log_metric("rmse", float("nan"))
    beta = run.id
    with tidal.start_run("gamma", name="sweep", workspace=ws, system_metrics=False) as parent:
        children = []
        for depth in (3, 6):
            with tidal.start_run(name=f"depth-{depth}", params={"depth": depth},
                                 parent=parent, workspace=ws, system_metrics=False) as child:
                child.log_metric("acc", 0.6 + depth / 100)
            children.append(child.id)
    try:
        with tidal.start_run("gamma", name="broken", workspace=ws, system_metrics=False) as run:
            raise RuntimeError("the data was bad")
    except RuntimeError:
        pass
    failed = run.id
    tidal.flush()
    close_all()
    return Populated(ws_dir, alpha, beta, parent.id, children, failed)


def strict_json(text: str):
    """Parse JSON, refusing NaN and Infinity, which are not JSON."""
    def refuse(name: str) -> None:
        raise AssertionError(f"output holds {name}, which is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def assert_clean_error(result, code: int, *fragments: str) -> None:
    """A command failed as users should see it: one `error:` line on stderr, no traceback."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
