"""The HTML drift report, read back with an HTML parser: one chart per column, the report's
own figures, every user string escaped, and nothing loaded from anywhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tidal.errors import InvalidValueError
from tidal.monitoring import drift
from tidal.monitoring.html_report import BINS, MAX_CATEGORIES, drift_html, write_drift_html

EVIL = '<img src=x onerror="alert(1)">'


class Page(HTMLParser):
    """Tags with their attributes, and the text inside each chart and table cell."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.charts: list[dict[str, str | None]] = []
        self.titles: dict[str, list[str]] = {}  # chart column -> <title> texts of its bars
        self.rows: list[dict[str, object]] = []
        self.text: list[str] = []
        self._chart: str | None = None
        self._in_title = False
        self._row: dict[str, object] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "svg":
            self.charts.append(attributes)
            self._chart = attributes.get("data-column") or "(predictions)"
            self.titles[self._chart] = []
        elif tag == "title" and self._chart is not None:
            self._in_title = True
        elif tag == "tr" and "data-column" in attributes:
            self._row = {"column": attributes["data-column"], "values": []}
            self.rows.append(self._row)
        elif tag == "td" and self._row is not None and "data-value" in attributes:
            self._row["values"].append(float(attributes["data-value"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        elif tag == "title":
            self._in_title = False
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title and self._chart is not None:
            self.titles[self._chart].append(data)


def samples(rows: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({
        "age": rng.normal(40, 8, rows), "income": rng.lognormal(10, 0.4, rows),
        "city": rng.choice(["paris", "lyon", "nice"], rows), EVIL: rng.random(rows),
        "member": rng.random(rows) > 0.5})
    current = pd.DataFrame({
        "age": rng.normal(48, 8, rows), "income": rng.lognormal(10, 0.4, rows),
        "city": rng.choice(["paris", "lyon", "nice", '"><script>x()</script>'], rows),
        EVIL: rng.random(rows), "member": rng.random(rows) > 0.2})
    return reference, current


def test_one_chart_per_column_showing_the_reports_figures():
    reference, current = samples()
    report = drift(reference, current)
    page = Page(drift_html(report, reference, current))

    assert [c["data-column"] for c in page.charts] == [c.column for c in report.columns]
    kinds = {c["data-column"]: c["class"] for c in page.charts}
    assert kinds == {"age": "chart histogram", "income": "chart histogram",
                     "city": "chart bars", EVIL: "chart histogram", "member": "chart bars"}
    assert [r["column"] for r in page.rows] == [c.column for c in report.columns]
    for row, column in zip(page.rows, report.columns, strict=True):
        assert row["values"] == [column.statistic, column.threshold, column.psi]
    text = "".join(page.text)
    assert f"{len(report.drifted_columns)} of 5 columns drifted" in text
    assert report.column("age").drifted and "age — drifted" in text


def test_histograms_draw_the_shares_of_both_samples():
    reference, current = samples()
    report = drift(reference, current, ["age"])
    page = Page(drift_html(report, reference, current))
    titles = page.titles["age"]
    assert len(titles) == 2 * BINS
    edges = np.histogram_bin_edges(np.concatenate([reference.age, current.age]), bins=BINS)
    for side, values in (("reference", reference.age), ("current", current.age)):
        shares = np.histogram(values, bins=edges)[0] / len(values)
        shown = [float(re.search(r"([\d.]+)%$", t).group(1)) for t in titles
                 if f": {side} " in t]
        assert shown == pytest.approx((100 * shares).round(1).tolist())
    heights = [float(a["height"]) for tag, a in page.tags if tag == "rect"]
    assert max(heights) == pytest.approx(180.0)  # the largest share fills the plot


def test_categories_show_their_shares_new_ones_and_the_rest_as_other():
    reference = pd.DataFrame({"code": [f"c{i:02d}" for i in range(30)] * 4})
    current = pd.DataFrame({"code": [f"c{i:02d}" for i in range(30)] * 3 + ["fresh"] * 30})
    report = drift(reference, current)
    page = Page(drift_html(report, reference, current))
    titles = page.titles["code"]
    assert titles[0] == "fresh"  # the largest share first
    assert "fresh (new)" in page.text
    assert titles[1:3] == ["fresh: reference 0.0%", "fresh: current 25.0%"]
    other = [t for t in titles if t.startswith("other (")]
    assert other[0] == f"other ({30 - MAX_CATEGORIES + 2} categories)"
    assert len([t for t in titles if ": reference " in t]) == MAX_CATEGORIES


def test_every_user_string_is_escaped():
    reference, current = samples()
    report = drift(reference, current)
    text = drift_html(report, reference, current, title="<script>alert('t')</script>")
    page = Page(text)
    tags = {tag for tag, _ in page.tags}
    assert "script" not in tags and "img" not in tags
    assert "<script" not in text and "<img" not in text
    data = "".join(page.text)
    assert "<script>alert('t')</script>" in data  # shown as text, not run
    assert EVIL in data and '"><script>x()</script>' in data


def test_the_page_is_self_contained_and_deterministic():
    reference, current = samples()
    report = drift(reference, current)
    text = drift_html(report, reference, current)
    page = Page(text)
    links = [a.get("href") for tag, a in page.tags if tag == "a"]
    assert links and all(re.fullmatch(r"#column-\d", link) for link in links)
    assert not any("src" in a for _, a in page.tags)
    assert not any(tag in ("script", "link", "iframe", "object", "img") for tag, _ in page.tags)
    assert "http" not in text and "url(" not in text and "@import" not in text
    assert drift_html(report, reference, current) == text
    # Arrow tables and dicts of columns draw the same page.
    assert drift_html(report, pa.Table.from_pandas(reference),
                      current.to_dict("list")) == text


def test_write_drift_html_writes_the_page_whole(tmp_path: Path):
    reference, current = samples(200)
    report = drift(reference, current)
    target = tmp_path / "reports" / "today" / "drift.html"
    assert write_drift_html(target, report, reference, current, title="Today") == target
    assert target.read_text(encoding="utf-8") == drift_html(report, reference, current,
                                                            title="Today")
    assert sorted(p.name for p in target.parent.iterdir()) == ["drift.html"]
    with pytest.raises(InvalidValueError, match="is a folder"):
        write_drift_html(tmp_path, report, reference, current)


def test_bad_input_is_refused():
    reference, current = samples(200)
    report = drift(reference, current)
    with pytest.raises(InvalidValueError, match="report must be a DriftReport"):
        drift_html(report.to_dict(), reference, current)
    with pytest.raises(InvalidValueError, match=r"current sample lacks column\(s\) \['age'\]"):
        drift_html(report, reference, current.drop(columns="age"))
    with pytest.raises(InvalidValueError, match="reference must be a pandas DataFrame"):
        drift_html(report, [1, 2, 3], current)
    with pytest.raises(InvalidValueError, match="title must be a string"):
        drift_html(report, reference, current, title=3)


def test_two_log_windows_also_show_the_predictions(workspace):
    from datetime import UTC, datetime, timedelta

    from tests.monitoring.test_log_window import BASE, answer, write_log
    from tidal.monitoring.log_window import read_window

    rng = np.random.default_rng(4)
    records = []
    for i in range(400):  # the second hour answers class 1 far more often
        later = i >= 200
        records.append(answer(f"r{i}", BASE + i * 18_000, outputs=[int(rng.random() < (
            0.8 if later else 0.3))], inputs={"x": [float(rng.normal(0, 1))]}))
    write_log(workspace, records)
    start, hour = datetime(2026, 3, 2, 10, tzinfo=UTC), timedelta(hours=1)
    first = read_window("ctr", start=start, end=start + hour)
    second = read_window("ctr", start=start + hour, end=start + 2 * hour)
    report = drift(first, second)
    assert report.prediction is not None and report.prediction.drifted
    text = drift_html(report, first, second)
    page = Page(text)
    assert [c.get("data-column") for c in page.charts] == ["x", None]
    assert page.charts[-1]["data-predictions"] == "true"
    verdict = next(a for tag, a in page.tags if tag == "p" and "predictions" in a["class"])
    assert float(verdict["data-statistic"]) == report.prediction.statistic
    assert float(verdict["data-psi"]) == report.prediction.psi
    assert "The model's predictions — drifted" in "".join(page.text)


def test_a_stored_profile_cannot_be_drawn(workspace):
    import tidal

    reference, current = samples(300)
    version = tidal.datasets.register("train", reference[["age", "city"]])
    report = drift(version.profile, current[["age", "city"]])
    with pytest.raises(InvalidValueError, match="reference is a stored profile"):
        drift_html(report, version.profile, current)
    assert Page(drift_html(report, version, current)).charts  # its rows can be
