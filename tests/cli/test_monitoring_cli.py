"""``tidal monitor drift|performance|alerts`` as users type them, against a real workspace with
a prediction log, feedback, a registered dataset and alert events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import time_machine

from tests.cli.conftest import Invoke, assert_clean_error, strict_json
from tests.monitoring.test_log_window import answer, write_log
from tidal.ids import now_ms
from tidal.store.workspace import close_all

ROWS = 240
#: The clock every test here runs on: the log's last three hours must not cross midnight UTC,
#: where the window labels gain a date.
NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fixed_clock() -> Iterator[None]:
    """Data written "two hours ago" and ``--last 3h`` read against one known clock (ticking,
    so waits on the log writer still end)."""
    with time_machine.travel(NOW, tick=True):
        yield


def training(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(0, 1, rows), "city": rng.choice(["a", "b"], rows),
                         "label": rng.integers(0, 2, rows)})


@pytest.fixture
def w(ws_dir: Path) -> list[str]:
    """A closed workspace: dataset "train" (x, city, label); endpoint "web" with ROWS
    requests over the last two hours (x shifted by 3, a canary on every fourth, request 5
    failed, the first 100 labelled); alert events of rule "errors"."""
    import tidal
    from tidal.monitoring.alerts import AlertRule, Figure, evaluate
    from tidal.serving.feedback import record_feedback

    ws = tidal.workspace(ws_dir)
    tidal.datasets.register("train", training())
    rng = np.random.default_rng(1)
    start = now_ms() - 2 * 3_600_000
    records = []
    for i in range(ROWS):
        canary = i % 4 == 0
        records.append(answer(
            f"q{i}", start + i * 30_000, outputs=[] if i == 5 else [i % 2],
            inputs={"x": [float(rng.normal(3, 1))], "city": [str(rng.choice(["a", "b"]))]},
            error="RuntimeError: boom" if i == 5 else None, endpoint="web",
            route="models:/m/2" if canary else "models:/m@champion",
            version=2 if canary else 1, latency_ms=10.0 if canary else 4.0))
    write_log(ws, records)
    record_feedback("web", [{"request_id": f"q{i}", "label": 1} for i in range(100)])
    rule = AlertRule("errors", "error_rate", ">", 0.05)
    moment = datetime(2026, 3, 2, 10, tzinfo=UTC)
    for minute, value in enumerate([0.1, 0.2, 0.01, 0.3]):
        evaluate([rule], [Figure("error_rate", "web", value)],
                 now=moment + timedelta(minutes=minute))
    close_all()
    return ["-w", str(ws_dir)]


def test_drift_against_a_dataset_as_json_and_html(cli: Invoke, w, tmp_path: Path):
    from tidal.monitoring import drift
    from tidal.monitoring.log_window import read_window

    page = tmp_path / "out" / "drift.html"
    result = cli(*w, "monitor", "drift", "web", "--reference", "datasets:/train/1",
                 "--last", "3h", "--html", str(page), "--json")
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert data["reference"] == "datasets:/train/1" and data["window"]["rows"] == ROWS
    assert [c["column"] for c in data["columns"]] == ["x", "city"]  # label is not an input
    import tidal

    tidal.workspace(w[1])
    expected = drift(training(), read_window("web").inputs, ["x", "city"])
    assert data["drifted"] is True and data["drifted_share"] == expected.drifted_share
    for shown, column in zip(data["columns"], expected.columns, strict=True):
        assert (shown["statistic"], shown["psi"], shown["drifted"]) == (
            column.statistic, column.psi, column.drifted)
    assert data["html"] == str(page) and "Drift of web from datasets:/train/1" in \
        page.read_text()
    assert "HTML report written to" in result.stderr


def test_drift_against_a_parquet_file_as_a_table(cli: Invoke, w, tmp_path: Path):
    path = tmp_path / "reference.parquet"
    training().to_parquet(path)
    result = cli(*w, "monitor", "drift", "web", "-r", str(path), "--requests", "50",
                 "--column", "x")
    assert result.exit_code == 0, result.output
    assert "web: 50 logged rows against" in result.stdout and "(400 rows)" in result.stdout
    assert "dataset drifted: 1 of 1 columns (100%" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("x "))
    assert line.split()[-1] == "yes"


def test_drift_with_a_correction_for_the_columns_tested(cli: Invoke, w, tmp_path: Path):
    page = tmp_path / "drift.html"
    result = cli(*w, "monitor", "drift", "web", "-r", "datasets:/train/1", "--last", "3h",
                 "--correction", "bonferroni", "--html", str(page), "--json")
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert data["correction"] == "bonferroni"
    for column in data["columns"]:  # two columns tested, both with a p-value test (50 rows)
        assert column["adjusted"] == min(1.0, 2 * column["statistic"])
        assert column["drifted"] == (column["adjusted"] < column["threshold"])
    assert "adjusted for the number of columns tested (Bonferroni)" in page.read_text()
    table = cli(*w, "monitor", "drift", "web", "-r", "datasets:/train/1", "--last", "3h",
                "--correction", "bh")
    assert table.exit_code == 0, table.output
    assert "adjusted" in table.stdout and "p-values adjusted: bh" in table.stdout
    bad = cli(*w, "monitor", "drift", "web", "-r", "datasets:/train/1", "--correction", "holm")
    assert bad.exit_code != 0 and "correction must be one of none, bonferroni, bh" in \
        bad.output


def test_performance_per_window_route_and_version(cli: Invoke, w):
    result = cli(*w, "monitor", "performance", "web", "--last", "3h", "--window", "1h",
                 "--metric", "accuracy", "--json")
    assert result.exit_code == 0, result.output
    rows = strict_json(result.stdout)
    assert sum(r["requests"] for r in rows) == ROWS
    assert {(r["route"], r["model_version"]) for r in rows} == {("models:/m@champion", 1),
                                                              ("models:/m/2", 2)}
    assert sum(r["errors"] for r in rows) == 1
    assert {r["latency_p99_ms"] for r in rows} == {4.0, 10.0}
    labelled = [r for r in rows if r["labelled"]]
    assert sum(r["labelled"] for r in labelled) == 99  # 100 labels, one on the failed request
    for r in labelled:  # label 1 everywhere; the model answers i % 2
        assert r["accuracy"] == pytest.approx(0.0 if r["model_version"] == 2 else 2 / 3,
                                              abs=0.05)
    assert all(r["accuracy"] is None for r in rows if not r["labelled"])  # NaN is null

    table = cli(*w, "monitor", "performance", "web", "--window", "100", "--sliding", "50",
                "--overall")
    assert table.exit_code == 0, table.output
    assert "requests" in table.stdout and "p99 ms" in table.stdout
    counts = [line.split(" – ")[1].split()[1] for line in table.stdout.splitlines()
              if " – " in line]  # the cell after the window's end
    # Windows of 100 requests ending at 240, 190, 140, 90: the oldest is cut at the first.
    assert counts == ["90", "100", "100", "100"]


def test_a_performance_table_wider_than_the_terminal_keeps_every_column(cli: Invoke, w):
    result = cli(*w, "monitor", "performance", "web", "--last", "3h", "--window", "1h",
                 "--metric", "accuracy", "--metric", "f1", "--metric", "roc_auc")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "requests" in line)
    assert header.split() == ["window", "route", "version", "requests", "errors", "p50", "ms",
                              "p95", "ms", "p99", "ms", "labelled", "accuracy", "f1", "AUC"]
    assert any("models:/m@champion" in line for line in result.stdout.splitlines())


def test_performance_of_an_endpoint_without_traffic(cli: Invoke, w):
    result = cli(*w, "monitor", "performance", "quiet")
    assert result.exit_code == 0 and "quiet logged no requests" in result.stdout


def test_alerts_events_and_firing(cli: Invoke, w):
    result = cli(*w, "monitor", "alerts")
    assert result.exit_code == 0, result.output
    assert "3 alert events" in result.stdout and "log ok" in result.stdout
    events = json.loads(cli(*w, "monitor", "alerts", "--json").stdout)
    assert [e["kind"] for e in events] == ["firing", "resolved", "firing"]
    assert events[0]["message"] == "error_rate of web is 0.3 > 0.05"
    assert events[0]["at"] == "2026-03-02T10:03:00+00:00"
    only = json.loads(cli(*w, "monitor", "alerts", "--kind", "resolved", "--json").stdout)
    assert [e["value"] for e in only] == [0.01]
    firing = json.loads(cli(*w, "monitor", "alerts", "--firing", "--json").stdout)
    assert [(s["rule"], s["subject"], s["last_value"]) for s in firing] == [
        ("errors", "web", 0.3)]
    assert json.loads(cli(*w, "monitor", "alerts", "--rule", "other", "--json").stdout) == []


@pytest.mark.parametrize("args, code, fragment", [
    (["drift", "web", "-r", "train", "--last", "1x"], 2, "not a duration"),
    (["drift", "web", "-r", "train", "--requests", "0"], 2, "requests must be"),
    (["drift", "web", "-r", "train", "--column", "nope"], 2, "lack"),
    (["drift", "quiet", "-r", "train"], 2, "logged no inputs"),
    (["drift", "../web", "-r", "train"], 2, "endpoint name"),
    (["drift", "web", "-r", "nope/1"], 1, "no dataset named 'nope'"),
    (["drift", "web", "-r", "train/x"], 2, "version 'x'"),
    (["drift", "web", "-r", "missing.parquet"], 2, "no file matches"),
    (["performance", "web", "--window", "soon"], 2, "not a duration"),
    (["performance", "web", "--sliding", "5m"], 2, "--sliding needs --window"),
    (["performance", "web", "--window", "10", "--sliding", "5m"], 2, "same kind"),
    (["performance", "web", "--window", "5m", "--sliding", "10m"], 2, "must not exceed"),
    (["performance", "web", "--metric", "auc"], 2, "accepted: accuracy"),
    (["alerts", "--kind", "fired"], 2, "kind must be one of"),
    (["alerts", "--limit", "0"], 2, "limit must be"),
])
def test_bad_input_exits_with_a_clean_error(cli: Invoke, w, args, code, fragment):
    assert_clean_error(cli(*w, "monitor", *args), code, fragment)
