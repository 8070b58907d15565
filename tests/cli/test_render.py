"""Formatting and JSON helpers of the command line."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from tidal.cli import render
from tidal.cli.runs import metric_goal
from tidal.errors import (
    ConfigError,
    ExperimentNotFoundError,
    FilterSyntaxError,
    InvalidValueError,
    RunNotFoundError,
    StoreBusyError,
)


@pytest.mark.parametrize("seconds, text", [
    (None, "—"), (0.0, "0.00s"), (0.4234, "0.42s"), (12.34, "12.3s"), (59.96, "60.0s"),
    (245, "4m 05s"), (7380, "2h 03m"), (3 * 86400 + 4 * 3600 + 59, "3d 04h"),
    (float("nan"), "—"),
])
def test_format_duration(seconds, text):
    assert render.format_duration(seconds) == text


@pytest.mark.parametrize("size, text", [
    (None, "—"), (0, "0 B"), (512, "512 B"), (1536, "1.5 KiB"), (23.4 * 2**20, "23.4 MiB"),
    (3 * 2**30, "3.0 GiB"), (5 * 2**50, "5120.0 TiB"),
])
def test_format_bytes(size, text):
    assert render.format_bytes(size) == text


@pytest.mark.parametrize("usd, text", [
    (None, "—"), (0.0, "$0.000000"), (0.0000153, "$0.000015"), (0.01, "$0.01"),
    (1234.567, "$1,234.57"),
])
def test_format_cost(usd, text):
    assert render.format_cost(usd) == text


@pytest.mark.parametrize("value, text", [
    (None, "—"), (3.0, "3"), (0.123456789, "0.123457"), (float("nan"), "nan"),
    (float("inf"), "inf"), (float("-inf"), "-inf"), (7, "7"), (1e20, "1e+20"),
])
def test_format_number(value, text):
    assert render.format_number(value) == text


def test_format_timestamp_accepts_every_time_form():
    moment = datetime(2026, 3, 1, 14, 5, 9, tzinfo=UTC)
    local = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert render.format_timestamp(moment) == local
    assert render.format_timestamp(pd.Timestamp(moment)) == local
    assert render.format_timestamp(int(moment.timestamp() * 1000)) == local
    assert render.format_timestamp(None) == render.format_timestamp(pd.NaT) == "—"


def test_to_jsonable_gives_strict_json():
    @dataclass
    class Info:
        path: str
        size: int

    data = {
        "nan": float("nan"), "inf": float("-inf"), "when": datetime(2026, 1, 2, 3, 4, 5),
        "stamp": pd.Timestamp("2026-01-02T03:04:05Z"), "missing": pd.NaT,
        "np": [np.float64(0.5), np.int64(3), np.bool_(True)], "info": Info("a.csv", 3),
        ("tuple",): (1, 2),
    }
    out = render.to_jsonable(data)
    assert out == {
        "nan": None, "inf": None, "when": "2026-01-02T03:04:05+00:00",
        "stamp": "2026-01-02T03:04:05+00:00", "missing": None, "np": [0.5, 3, True],
        "info": {"path": "a.csv", "size": 3}, "('tuple',)": [1, 2],
    }
    text = render.dumps(data)
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == out


def test_dumps_without_orjson(monkeypatch: pytest.MonkeyPatch):
    import sys

    monkeypatch.setitem(sys.modules, "orjson", None)
    assert json.loads(render.dumps({"x": math.nan, "y": [1.5]})) == {"x": None, "y": [1.5]}


@pytest.mark.parametrize("error, code", [
    (InvalidValueError("bad"), 2),
    (FilterSyntaxError("bad", expression="x", position=0), 2),
    (ConfigError("bad"), 2),
    (RunNotFoundError("missing"), 1),
    (ExperimentNotFoundError("missing"), 1),
    (StoreBusyError("busy"), 1),
])
def test_exit_codes(error, code):
    assert render.exit_code_for(error) == code


def test_print_error_shows_brackets_as_written(capsys: pytest.CaptureFixture[str]):
    render.print_error("known experiments: ['a', 'b'] [bold]not markup[/bold]")
    assert capsys.readouterr().err == \
        "error: known experiments: ['a', 'b'] [bold]not markup[/bold]\n"


@pytest.mark.parametrize("key, goal", [
    ("accuracy", "max"), ("roc_auc", "max"), ("f1", "max"), ("log_loss", "min"),
    ("val/loss", "min"), ("rmse", "min"), ("fit_seconds", "min"), ("predict_ms_per_row", "min"),
    ("neg_log_loss", "max"), ("cost_usd", "min"), ("test_error", "min"), ("recall@10", "max"),
])
def test_metric_goal(key, goal):
    assert metric_goal(key) == goal
