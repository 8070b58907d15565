"""``tidal deploy``, ``tidal endpoints`` and ``tidal serve``'s refusals, as users type them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.cli.conftest import Invoke, assert_clean_error
from tidal.store.workspace import close_all


@pytest.fixture
def w(ws_dir: Path) -> list[str]:
    """models:/ctr/1 and /2 (alias champion on 1) in a closed workspace."""
    import tidal

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 2)), columns=["a", "b"])
    tidal.workspace(ws_dir)
    for c in (1.0, 0.1):
        model = LogisticRegression(C=c).fit(frame, (frame.a > 0).astype(int))
        tidal.models.register("ctr", model, input_example=frame.head(5), run=False)
    tidal.models.set_alias("ctr", "champion", 1)
    close_all()
    return ["-w", str(ws_dir)]


def test_deploy_canary_shadow_then_rollback(cli: Invoke, w):
    first = cli(*w, "deploy", "web", "--route", "ctr@champion=90", "--route", "ctr/2=10",
                "--max-batch-size", "32")
    assert first.exit_code == 0, first.output
    assert "web revision 1" in first.stdout and "90.0%" in first.stdout
    assert "models:/ctr@champion" in first.stdout and "up to 32 rows" in first.stdout
    second = cli(*w, "deploy", "web", "--route", "ctr/2=100", "--shadow", "ctr/1", "--json")
    data = json.loads(second.stdout)
    assert data["revision"] == 2 and data["shadows"] == ["models:/ctr/1"]
    assert data["max_batch_size"] == 32  # kept from revision 1
    back = json.loads(cli(*w, "deploy", "web", "--rollback", "--json").stdout)
    assert back["action"] == "rollback" and [r["uri"] for r in back["routes"]] == [
        "models:/ctr@champion", "models:/ctr/2"]
    listed = json.loads(cli(*w, "endpoints", "list", "--json").stdout)
    assert [(e["name"], e["revision"]) for e in listed] == [("web", 3)]
    shown = cli(*w, "endpoints", "show", "web")
    assert shown.exit_code == 0 and "revision 3 (rollback" in shown.stdout
    history = cli(*w, "endpoints", "history", "web")
    assert history.exit_code == 0 and "3 revisions" in history.stdout


def test_deploy_refuses_bad_input_with_exit_2(cli: Invoke, w):
    assert_clean_error(cli(*w, "deploy", "web", "--route", "ctr/1=ten"), 2, "URI=WEIGHT")
    assert_clean_error(cli(*w, "deploy", "web", "--route", "ctr/1=50", "--rollback"), 2,
                       "--rollback restores")
    assert_clean_error(cli(*w, "deploy", "web", "--shadow", "ctr/2", "--no-shadow"), 2,
                       "not both")
    assert_clean_error(cli(*w, "deploy", "web", "--route", "ctr/1", "--max-batch-size", "0"),
                       2, "max_batch_size")
    assert_clean_error(cli(*w, "deploy", "web", "--route", "ctr@nope"), 1, "alias")
    assert_clean_error(cli(*w, "deploy", "web", "--rollback"), 1, "does not exist")
    assert_clean_error(cli(*w, "endpoints", "show", "web"), 1, "does not exist")


def test_serve_refuses_a_public_address_without_a_token(cli: Invoke, w, tmp_path: Path):
    cli(*w, "deploy", "web", "--route", "ctr/1")
    assert_clean_error(cli(*w, "serve", "web", "--host", "0.0.0.0"), 2, "bearer token")
    short = tmp_path / "token"
    short.write_text("short")
    assert_clean_error(cli(*w, "serve", "web", "--token-file", str(short)), 2, "at least 16")
    assert_clean_error(cli(*w, "serve", "web", "--max-body-bytes", "10"), 2, "max-body-bytes")
    assert_clean_error(cli(*w, "serve", "web", "--workers", "0"), 2, "workers")
    assert_clean_error(cli(*w, "serve", "web", "--model-threads", "0"), 2,
                       "model threads must be an integer from 1 to 1024")
    assert_clean_error(cli(*w, "serve", "web", "--port", "70000"), 2, "port must be")
    assert_clean_error(cli(*w, "serve", "web", "--log-level", "loud"), 2, "log level")
    assert_clean_error(cli(*w, "serve", "nope"), 1, "does not exist")


@pytest.mark.parametrize(("option", "bad"), [
    ("--header-timeout", "0"), ("--header-timeout", "nan"), ("--body-timeout", "-1"),
    ("--idle-timeout", "99999"), ("--max-connections", "0"),
    ("--max-rows-per-request", "0")])
def test_serve_refuses_bad_limits_naming_the_option(cli: Invoke, w, option: str, bad: str):
    cli(*w, "deploy", "web", "--route", "ctr/1")
    assert_clean_error(cli(*w, "serve", "web", option, bad), 2, option)


def test_serve_limit_defaults_are_the_server_settings_defaults():
    import inspect

    from tidal.cli.serving import serve
    from tidal.serving.app import ServerSettings

    defaults = ServerSettings()
    parameters = inspect.signature(serve).parameters
    for name in ("header_timeout", "body_timeout", "idle_timeout", "max_connections",
                 "max_rows_per_request", "max_body_bytes", "reload_interval"):
        assert parameters[name].default == getattr(defaults, name), name
